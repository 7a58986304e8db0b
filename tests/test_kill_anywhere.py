"""A run killed anywhere ends as if it had not been; a full disk fails in one line.

The shared finished tiny run (conftest.tiny_run: emotion classification, LoRA) gets a generation
task (Alpaca, IA3) added. The reference is that config run once, uninterrupted. The killed run
starts from a copy of the reference with the Alpaca IA3 fine-tune's run folder and the report
removed (so the fine-tune, its generations, perplexity and scores, the figures and the report run
again; KILL_PROFILE=long removes the emotion LoRA fine-tune's too, so its predictions and scores
run again as well) and:

1. runs with a small tmpfs mounted over the Alpaca fine-tune's checkpoint folder: the fine-tune
   stops with one `Error:` line naming the checkpoint, no traceback, and every earlier result
   stays byte-identical (skipped, with the reason, where mount is not permitted; failed under CI);
2. with the space freed, is SIGKILLed (Snakemake's whole process group, from outside) once per
   stage (a fine-tune's checkpoint write, a fine-tune between checkpoints, a prediction or
   generation chunk, a metrics file's write, the report's write), each kill the moment the stage's
   first file appears (watch.py, inotify) plus a delay drawn from a recorded seed, and resumed each
   time with the same command: `snakemake --cores 2 results/report.html` (the parse removes the
   stale lock, incomplete outputs rerun).

Then metrics.csv (less its two measured-cost columns), every metrics file, prediction and
generation file and every adapter file are byte-identical to the reference's, no temporary file
(`.<name>.<random>.tmp`, common.temporary_names) is left under results/, and no job that Snakemake
had logged as finished before a kill ran again. KILL_PROFILE=long adds cycles of kills at random
seeded moments (the Nth file to appear, N and a delay drawn from the seed) until at least 20 kills,
each cycle resumed to the end and compared in the same way."""

import csv
import os
import random
import shutil
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest

import kills
import tiny
from conftest import skip_or_fail_in_ci

# the fine-tunes whose outputs are removed from the killed run's copy: they and what reads them rerun
FT = "alpaca/tiny_llama/ia3-s0"
LONG = os.environ.get("KILL_PROFILE") == "long"
# CI's budget holds one of them, the generation fine-tune (the classification rows are compared too,
# but not rebuilt); the long profile removes both
FINETUNES = [FT, "emotion/tiny_llama/lora-s0"] if LONG else [FT]
# (stage, the paths that trigger the kill: the first to appear, of either fine-tune or any prediction
# job, so each kill finds its stage still to run whatever order the jobs took; is it a folder;
# largest delay in seconds; seed)
STAGES = [
    ("checkpoint write", ("checkpoints/*/step-*.tmp",), True, 0.0, 1),
    ("fine-tune mid-step", ("checkpoints/*/step-*/COMPLETE",), False, 0.05, 2),
    ("prediction chunk", ("checkpoints/predict/*", "checkpoints/generate/*"), True, 0.2, 3),
    ("metrics write", ("results/*/.metrics.json.*.tmp",), False, 0.0, 4),
    ("report write", ("results/.*.tmp",), False, 0.0, 5),
]
COST_COLUMNS = {"finetune_time_s", "finetune_peak_rss_mib"}  # measured wall time and memory
VOLATILE_LOG_KEYS = {"train_seconds", "train_tokens_per_second", "resumed_from"}
TARGET = "results/report.html"


def kill_config(config):
    c = tiny.edited(config, lambda c: None)
    c["tasks"]["alpaca"] = {
        "type": "generation",
        "files": {"train": "alpaca/alpaca_data_1k.json"},
        "sample": {"train": 16, "validation": 4, "test": 6},
        "prompt_style": "alpaca",
        "models": ["tiny_llama"],
        "finetune": {
            "tiny_llama": {
                "method": "ia3",
                "training": {
                    "max_steps": 6,
                    "batch_size": 8,
                    "max_length": 128,
                    "eval_every": 3,
                    "checkpoint_every": 1,
                },
            }
        },
        "decodings": {"greedy": {"max_new_tokens": 6}},
        "bootstrap": 50,
    }
    return c


def stage_trigger(patterns, is_dir, delay, seed):
    rng = random.Random(seed)
    return lambda path, d: rng.uniform(0, delay) if d == is_dir and any(fnmatch(path, p) for p in patterns) else None


def nth_path_trigger(seed):
    """The long profile: kill at the Nth file or folder to appear, plus a delay up to 0.5 s."""
    rng = random.Random(seed)
    n, delay, count = rng.randint(1, 60), rng.uniform(0, 0.5), [0]

    def trigger(path, is_dir):
        count[0] += 1
        return delay if count[0] == n else None

    return trigger


def files(work):
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "results").rglob("*")) if p.is_file()}


def full_disk_run(work, out):
    """The killed run's first run, with a full disk under the emotion fine-tune's checkpoints."""
    folder = work / "checkpoints" / FT
    before = files(work)
    why = kills.mount_tmpfs(folder)
    if why:
        return {"skipped": why}
    try:
        rc, _, output = kills.run(work, out, TARGET)
        log = (work / f"logs/finetune/{FT}.log").read_text()
    finally:
        kills.unmount(folder)
    return {"rc": rc, "output": output, "log": log, "before": before, "after": files(work)}


@pytest.fixture(scope="module")
def runs(tiny_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("kill")
    ref, config = tiny.copy_run(tiny_run, base / "ref")
    tiny.write_config(ref, kill_config(config))
    t0 = time.monotonic()
    tiny.snakemake(ref, TARGET)
    print(f"reference run: {time.monotonic() - t0:.1f} s")
    killed = killed_copy(ref, base / "killed", config)
    disk = full_disk_run(killed, base / "disk.out")
    events, finished_before = [], kills.jobs(disk.get("output", ""))[1]
    triggers = [(name, stage_trigger(*rest)) for name, *rest in STAGES]
    cycle, comparisons = 0, []
    while True:
        for i, (name, trigger) in enumerate(triggers):
            rc, path, output = kills.run(killed, base / f"run-{cycle}-{i}.out", TARGET, trigger)
            started, done = kills.jobs(output)
            events.append(
                {"stage": name, "path": path, "rc": rc, "redone": started & finished_before, "torn": kills.torn(killed)}
            )
            finished_before |= done
            if path is None:
                break
        rc, path, output = kills.run(killed, base / f"run-{cycle}-end.out", TARGET)
        started, _ = kills.jobs(output)
        assert rc == 0 and path is None, output[-3000:]
        events.append({"stage": "end", "path": None, "rc": rc, "redone": started & finished_before})
        comparisons.append(compare(ref, killed))
        if not LONG or sum(k["path"] is not None for k in events) >= 20:
            break
        cycle += 1  # the long profile: a fresh copy, killed at random moments
        shutil.rmtree(killed)
        killed = killed_copy(ref, base / f"killed-{cycle}", config)
        triggers = [(f"random {cycle}.{i}", nth_path_trigger(1000 * cycle + i)) for i in range(8)]
        finished_before = set()
    for k in events:
        print(f"kill at {k['stage']}: {k['path']} (rc {k['rc']}); left: {k.get('torn')}")
    return ref, killed, disk, events, comparisons


def killed_copy(ref, dest, config):
    """The copy of the finished reference the killed run starts from, the FINETUNES' run folders
    (adapter, training log, predictions or generations, scores) and the report removed: Snakemake
    reruns a removed file only when something that is built reads it."""
    killed, _ = tiny.copy_run((None, ref, config), dest)
    for run in FINETUNES:
        shutil.rmtree(killed / "results" / run)
    for name in ("report.html", "metrics.csv"):
        (killed / "results" / name).unlink()
    return killed


def compare(ref, killed):
    """Paths whose bytes differ between the reference and the killed run (see the module docstring)."""
    a, b = files(ref), files(killed)
    differ = sorted(p for p in set(a) | set(b) if p.endswith(("metrics.json", ".jsonl")) and a.get(p) != b.get(p))
    differ += sorted(p for p in set(a) | set(b) if "/adapter/" in p and a.get(p) != b.get(p))
    if table(a["results/metrics.csv"]) != table(b["results/metrics.csv"]):
        differ.append("results/metrics.csv")
    for p in sorted(p for p in a if p.endswith("train_log.json")):
        if a[p] != b.get(p) and train_log(a[p]) != train_log(b.get(p, b"{}")):
            differ.append(p)
    return {"differ": differ, "adapters": sum("/adapter/" in p for p in a), "metrics": sum("metrics" in p for p in a)}


def table(data):
    rows = list(csv.reader(data.decode().splitlines()))
    keep = [i for i, c in enumerate(rows[0]) if c not in COST_COLUMNS]
    return [[r[i] for i in keep] for r in rows]


def train_log(data):
    import json

    return {k: v for k, v in json.loads(data).items() if k not in VOLATILE_LOG_KEYS}


def test_every_stage_was_killed_and_resumed_to_identical_results(runs):
    _, _, _, events, comparisons = runs
    landed = [k for k in events if k["path"] is not None]
    assert [k["stage"] for k in landed[: len(STAGES)]] == [s[0] for s in STAGES]
    assert all(k["rc"] != 0 for k in landed)
    for c in comparisons:
        assert c["differ"] == [] and c["adapters"] >= 6 and c["metrics"] >= 6, c


def test_no_temporary_file_is_left_and_checkpoints_are_gone(runs):
    _, killed, _, _, _ = runs
    assert not [p for p in (killed / "results").rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert not [p for p in (killed / "checkpoints").rglob("*") if p.is_file()]


def test_no_finished_job_ran_again(runs):
    _, _, _, events, _ = runs
    assert all(not k["redone"] for k in events), [k for k in events if k["redone"]]


def test_a_full_disk_stops_the_job_with_one_line_and_keeps_earlier_results(runs):
    _, _, disk, _, _ = runs
    if "skipped" in disk:
        skip_or_fail_in_ci(disk["skipped"])
    assert disk["rc"] != 0
    errors = [line for line in disk["output"].splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and f"checkpoints/{FT}/" in errors[0] and "no space left on device" in errors[0], errors
    assert "Traceback" not in disk["output"] and "Traceback" not in disk["log"]
    assert disk["log"].splitlines()[-1] == errors[0]
    changed = [p for p, data in disk["before"].items() if disk["after"].get(p) != data]
    started, _ = kills.jobs(disk["output"])
    # only outputs of the jobs the run started (Snakemake removes them first) changed
    assert not [p for p in changed if not any(p == s or p.startswith(s + "/") for s in started)], changed
    assert not [p for p in disk["after"] if Path(p).name.endswith(".tmp")]
