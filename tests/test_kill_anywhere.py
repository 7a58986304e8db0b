"""A run killed anywhere ends as if it had not been; a full disk fails in one line.

The shared finished tiny run (conftest.tiny_run: emotion classification, LoRA) gets a generation
task (Alpaca, IA3) added. The reference is that config run once, uninterrupted. The killed run
starts from a copy of the reference with the run folders of both fine-tunes removed (emotion LoRA
and Alpaca IA3: the fine-tunes, their predictions, generations, perplexities and scores, the
figures and the report run again) and:

1. runs with a small tmpfs mounted over the emotion fine-tune's checkpoint folder: the fine-tune
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
import signal
import subprocess
import sys
import time
from fnmatch import fnmatch
from pathlib import Path

import pytest

import tiny
from conftest import skip_or_fail_in_ci
from watch import Watch

# the fine-tunes whose outputs are removed from the killed run's copy: they and what reads them rerun
FT = "emotion/tiny_llama/lora-s0"
FINETUNES = [FT, "alpaca/tiny_llama/ia3-s0"]
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


def command(work):
    args, env = tiny.snakemake_call(work, TARGET)
    return [sys.executable, "-m", "snakemake", *args], env


def run(work, out, trigger=None):
    """Run the command on work in a process group of its own; when trigger(path, is_dir) returns a
    delay for a path that appears, SIGKILL the group that many seconds later. (return code, the
    path that triggered a kill or None, Snakemake's output)."""
    cmd, env = command(work)
    fired, t0 = [], time.monotonic()
    with open(out, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def on_path(path, is_dir):
            delay = trigger(path, is_dir) if trigger and not fired else None
            if delay is not None:
                fired.append(path)
                time.sleep(delay)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended within the delay: no kill
                    fired.clear()

        watch = Watch(work, ["results", "checkpoints"], on_path)
        try:
            rc = proc.wait(timeout=900)
        finally:
            watch.stop()
        wait_for_group(proc.pid)
    print(f"{Path(out).name}: rc {rc} after {time.monotonic() - t0:.1f} s")
    return rc, (fired[0] if fired else None), Path(out).read_text()


def wait_for_group(pgid, timeout=30):
    """Until no live process of the process group is left (the killed jobs have exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                left.append(stat.parent.name)
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still alive: {left}")


def jobs(output):
    """(outputs of the jobs Snakemake started, outputs of those it logged as finished) of one run."""
    started, finished, current = {}, set(), None
    for line in output.splitlines():
        s = line.strip()
        if s.startswith("output:") and current is None:
            current = [p.strip() for p in s[len("output:") :].split(",")]
        elif s.startswith("jobid:") and current is not None:
            started[s.split()[1]], current = current, None
        elif s.startswith("Finished jobid:"):
            finished.add(s.split()[2])
    done = {p for j in finished if j in started for p in started[j]}
    return {p for ps in started.values() for p in ps}, done


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


def torn(work):
    """What a kill left mid-write: temporary files and folders, checkpoints without their marker."""
    tmp = [p for p in work.rglob("*.tmp") if ".snakemake" not in p.parts]
    unmarked = [p for p in (work / "checkpoints").rglob("step-*") if p.is_dir() and not (p / "COMPLETE").exists()]
    return sorted(str(p.relative_to(work)) for p in {*tmp, *unmarked})


def files(work):
    return {str(p.relative_to(work)): p.read_bytes() for p in sorted((work / "results").rglob("*")) if p.is_file()}


def mount_tmpfs(folder, size="4k"):
    """Mount a tmpfs of `size` over folder: None, or why it could not."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.decode().strip() or done.returncode}"


def unmount(folder):
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def full_disk_run(work, out):
    """The killed run's first run, with a full disk under the emotion fine-tune's checkpoints."""
    folder = work / "checkpoints" / FT
    before = files(work)
    why = mount_tmpfs(folder)
    if why:
        return {"skipped": why}
    try:
        rc, _, output = run(work, out)
        log = (work / f"logs/finetune/{FT}.log").read_text()
    finally:
        unmount(folder)
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
    kills, finished_before = [], jobs(disk.get("output", ""))[1]
    long = os.environ.get("KILL_PROFILE") == "long"
    triggers = [(name, stage_trigger(*rest)) for name, *rest in STAGES]
    cycle, comparisons = 0, []
    while True:
        for i, (name, trigger) in enumerate(triggers):
            rc, path, output = run(killed, base / f"run-{cycle}-{i}.out", trigger)
            started, done = jobs(output)
            kills.append(
                {"stage": name, "path": path, "rc": rc, "redone": started & finished_before, "torn": torn(killed)}
            )
            finished_before |= done
            if path is None:
                break
        rc, path, output = run(killed, base / f"run-{cycle}-end.out")
        started, _ = jobs(output)
        assert rc == 0 and path is None, output[-3000:]
        kills.append({"stage": "end", "path": None, "rc": rc, "redone": started & finished_before})
        comparisons.append(compare(ref, killed))
        if not long or sum(k["path"] is not None for k in kills) >= 20:
            break
        cycle += 1  # the long profile: a fresh copy, killed at random moments
        shutil.rmtree(killed)
        killed = killed_copy(ref, base / f"killed-{cycle}", config)
        triggers = [(f"random {cycle}.{i}", nth_path_trigger(1000 * cycle + i)) for i in range(8)]
        finished_before = set()
    for k in kills:
        print(f"kill at {k['stage']}: {k['path']} (rc {k['rc']}); left: {k.get('torn')}")
    return ref, killed, disk, kills, comparisons


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
    _, _, _, kills, comparisons = runs
    landed = [k for k in kills if k["path"] is not None]
    assert [k["stage"] for k in landed[: len(STAGES)]] == [s[0] for s in STAGES]
    assert all(k["rc"] != 0 for k in landed)
    for c in comparisons:
        assert c["differ"] == [] and c["adapters"] >= 6 and c["metrics"] >= 6, c


def test_no_temporary_file_is_left_and_checkpoints_are_gone(runs):
    _, killed, _, _, _ = runs
    assert not [p for p in (killed / "results").rglob("*") if p.name.startswith(".") and p.name.endswith(".tmp")]
    assert not [p for p in (killed / "checkpoints").rglob("*") if p.is_file()]


def test_no_finished_job_ran_again(runs):
    _, _, _, kills, _ = runs
    assert all(not k["redone"] for k in kills), [k for k in kills if k["redone"]]


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
    started, _ = jobs(disk["output"])
    # only outputs of the jobs the run started (Snakemake removes them first) changed
    assert not [p for p in changed if not any(p == s or p.startswith(s + "/") for s in started)], changed
    assert not [p for p in disk["after"] if Path(p).name.endswith(".tmp")]
