"""The sha256 digests of a prepared model folder (finetune_study/weight_digests.py): recorded by
prepare_model, checked at parse time and by the jobs that load the folder, each file hashed once
while its stat stays the same.

- In-process, on a hand-made folder: the recorded digests are the files' sha256; a folder is hashed
  once, then a second parse and two jobs (models.check_weights) only stat it; a touched file is
  rehashed alone; a flipped bit under the file's old mtime is named, at parse and in the job.
- Which command lines rebuild a prepared folder by force, so that the parse does not check it.
- On a copy of the finished tiny run: one bit flipped in a prepared model.safetensors (same length)
  stops `snakemake -n` with one line before any job, results/ unchanged; the fix the line names
  (--forcerun prepare_model) rebuilds the folder with a new manifest, and the next parse hashes
  nothing it wrote; a folder prepared before digests existed (no manifest) gets one on first sight,
  with one line, and is not rebuilt.
"""

import hashlib
import json
import os
from pathlib import Path

import pytest

import tiny
from finetune_study import weight_digests
from finetune_study.common import PipelineError

FLIPPED = (
    "{path}: its content no longer matches the sha256 recorded in {folder}/weight_digests.json when the "
    "model was prepared; delete {folder}/ so prepare_model rebuilds it, or rerun with --forcerun prepare_model"
)


def safetensors_bytes(n=64):
    """A valid safetensors file of one float32 tensor of n values (header, then n * 4 bytes)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + bytes(range(256)) * (n // 64)


@pytest.fixture
def hashed(monkeypatch):
    """The names of the files weight_digests hashes, in order."""
    calls, real = [], weight_digests.file_sha256
    monkeypatch.setattr(weight_digests, "file_sha256", lambda p: calls.append(Path(p).name) or real(p))
    return calls


def test_a_folder_is_hashed_once_and_jobs_only_stat_it(tmp_path, monkeypatch, hashed):
    from finetune_study import models

    monkeypatch.chdir(tmp_path)  # jobs read the stamps of their working directory
    folder = Path("results/models/m")
    folder.mkdir(parents=True)
    files = {"model.safetensors": safetensors_bytes(), "config.json": b"{}", "tokenizer.json": b'{"v": 1}'}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / ".snakemake_timestamp").write_bytes(b"")  # Snakemake's, touched after the job: not recorded
    manifest = weight_digests.record(folder)
    assert manifest["files"] == {n: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()}
    hashed.clear()
    assert weight_digests.verify(folder) == sorted(files)  # first sight: every file, once
    assert weight_digests.verify(folder) == []  # the next parse: stat only
    models.check_weights(str(folder))  # two jobs load it: stat only
    models.check_weights(str(folder))
    assert hashed == sorted(files)
    st = os.stat(folder / "config.json")
    os.utime(folder / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same content
    assert weight_digests.verify(folder) == ["config.json"]
    assert weight_digests.verify(folder) == []

    weights = folder / "model.safetensors"
    data = bytearray(files["model.safetensors"])
    data[-1] ^= 0x01  # one bit of the last tensor value: the header still describes the length
    st = os.stat(weights)
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # its old mtime back: the ctime still moved
    line = FLIPPED.format(path=weights, folder=folder)
    with pytest.raises(PipelineError) as job:
        models.check_weights(str(folder))
    assert str(job.value) == line
    with pytest.raises(PipelineError) as parse:
        weight_digests.check_prepared(folder, weight_digests.STAMPS)
    assert str(parse.value) == line
    (folder / "tokenizer.json").unlink()
    weights.write_bytes(files["model.safetensors"])
    with pytest.raises(PipelineError, match=r"tokenizer.json: missing, though .*weight_digests.json records it"):
        weight_digests.verify(folder)


CLI = str(Path("site-packages/snakemake/__main__.py"))  # sys.argv[0] of `python -m snakemake`
FORCED = {
    "a dry run": (["-n"], set()),
    "--forcerun prepare_model": (["results/models/a", "--forcerun", "prepare_model"], {"a", "b"}),
    "-R of one folder": (["-n", "-R", "results/models/b/"], {"b"}),
    "-f of one folder": (["-f", "results/models/a"], {"a"}),
    "one folder as a target, not forced": (["results/models/a"], set()),
    "-F in a word of short options": (["-nF"], {"a", "b"}),
    "-R of another rule": (["-R", "finetune"], set()),
    "a cluster job of prepare_model": (["--force", "--target-jobs", "prepare_model:model=b", "--cores", "1"], {"b"}),
    "a cluster job of another rule": (["--force", "--target-jobs", "predict:model=a,task=t,method=zeroshot"], set()),
}


@pytest.mark.parametrize("case", list(FORCED))
def test_the_folders_a_command_line_rebuilds_by_force_are_not_checked(case):
    argv, expected = FORCED[case]
    assert weight_digests.forced_models(["a", "b"], weight_digests.command_line([CLI, *argv])) == expected


def test_a_command_line_that_is_not_snakemakes_forces_nothing():
    assert weight_digests.command_line(["pytest", "-f", "results/models/a"]) is None


def tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_a_flipped_bit_stops_the_run_and_the_fix_it_names_rebuilds_the_folder(tiny_run, tmp_path):
    work, _ = tiny.copy_run(tiny_run, tmp_path)
    bert, llama = Path("results/models/tiny_bert"), Path("results/models/tiny_llama")
    recorded = (work / llama / "weight_digests.json").read_text()
    (work / llama / "weight_digests.json").unlink()  # a folder prepared before digests were recorded
    weights = work / bert / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x10
    weights.write_bytes(bytes(data))
    before = tree(work / "results")

    proc = tiny.snakemake(work, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Job stats" not in out and "Traceback" not in out
    assert [x for x in out.splitlines() if x.startswith("Error: ")] == [
        "Error: " + FLIPPED.format(path=bert / "model.safetensors", folder=bert)
    ]
    assert tree(work / "results") == before

    tiny.snakemake(work, str(bert), "--forcerun", "prepare_model")
    now = weights.read_bytes()
    manifest = tiny.read_json(work / bert / "weight_digests.json")["files"]
    assert (
        manifest["model.safetensors"]["sha256"] == hashlib.sha256(now).hexdigest() != hashlib.sha256(data).hexdigest()
    )
    stamp = weight_digests.stamp_path(work / bert, work / weight_digests.STAMPS)
    written = stamp.stat().st_mtime_ns

    proc = tiny.snakemake(work, "-n")
    assert stamp.stat().st_mtime_ns == written  # the parse hashed nothing prepare_model had hashed
    n = len(list((work / llama).glob("[!.]*"))) - 1
    assert (
        f"{llama}: prepared before weight digests were recorded; recorded the sha256 of its {n} files as they "
        f"are now in {llama}/weight_digests.json"
    ) in proc.stderr.splitlines()
    assert (work / llama / "weight_digests.json").read_text() == recorded
    planned = tiny.job_counts(proc)
    assert "prepare_model" not in planned and planned.get("finetune") == 1  # only tiny_bert's stages rerun
