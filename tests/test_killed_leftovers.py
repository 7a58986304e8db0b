"""What a process killed with SIGKILL leaves behind, and what the next run does with it: the
temporary file or folder of an atomic write killed before its rename is removed by the next write
of the same output; Snakemake's lock is removed by the next parse once no Snakemake of the
directory is alive, never while one is; a full disk during a checkpoint write is one DiskFull naming
the checkpoint, with the torn copy removed. The whole pipeline under kills and a full disk:
test_kill_anywhere.py."""

import os
import signal
import subprocess
import sys

import pytest
import torch

from finetune_study import checkpoints, common, stale_locks


def killed_while_writing(path, body):
    """Start a child that writes `path` with body() (an atomic write) and SIGKILL it inside the
    write, after the temporary file has its content and before the rename."""
    code = (
        "import os, signal, sys\n"
        "from finetune_study import common\n"
        "os.replace = lambda a, b: os.kill(os.getpid(), signal.SIGKILL)\n"  # dies where the rename was
        f"{body}\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=path.parent, capture_output=True)
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()


def test_a_killed_atomic_write_leaves_a_temporary_file_that_the_next_write_removes(tmp_path):
    out = tmp_path / "metrics.json"
    killed_while_writing(out, "common.write_json('metrics.json', {'a': 1})")
    left = common.temporary_names(out)
    assert not out.exists() and len(left) == 1 and left[0].read_text() == '{\n  "a": 1\n}\n'
    other = tmp_path / ".predictions.jsonl.abc.tmp"  # another output's leftover: not this write's
    other.write_text("x")
    common.write_json(out, {"a": 2})
    assert common.read_json(out) == {"a": 2} and common.temporary_names(out) == [] and other.exists()


def test_a_killed_folder_write_is_removed_by_the_next_one(tmp_path):
    out = tmp_path / "adapter"
    killed_while_writing(out, "with common.atomic_dir('adapter') as d:\n    (d / 'w.bin').write_bytes(b'1')")
    assert not out.exists() and [p.name for p in common.temporary_names(out)][0].startswith(".adapter.")
    with common.atomic_dir(out) as d:
        (d / "w.bin").write_bytes(b"2")
    assert (out / "w.bin").read_bytes() == b"2" and common.temporary_names(out) == []


def lock_files(d):
    (d / "locks").mkdir(parents=True, exist_ok=True)
    for name in ("0.input.lock", "0.output.lock"):
        (d / "locks" / name).write_text("results/report.html\n")
    return sorted((d / "locks").iterdir())


def test_a_dead_snakemakes_lock_is_removed_a_live_ones_never(tmp_path):
    d = tmp_path / ".snakemake"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert stale_locks.clear_stale(d, pid=other.pid) == []  # it parses, then locks
        locks = lock_files(d)
        assert stale_locks.clear_stale(d) == []  # it still runs: its lock stays
        assert sorted((d / "locks").iterdir()) == locks
    finally:
        other.kill()
        other.wait()
    assert stale_locks.clear_stale(d) == locks  # killed: the next parse removes its lock
    assert list((d / "locks").iterdir()) == []


def test_a_lock_nobody_recorded_is_left_to_unlock(tmp_path):
    d = tmp_path / ".snakemake"
    locks = lock_files(d)
    assert stale_locks.clear_stale(d) == [] and sorted((d / "locks").iterdir()) == locks


class Saved:
    """An optimizer's or scheduler's part of a checkpoint: its state_dict."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return self.state


def test_a_full_disk_during_a_checkpoint_write_names_it_and_removes_the_torn_copy(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(folder)], capture_output=True).returncode:
        from conftest import skip_or_fail_in_ci

        skip_or_fail_in_ci("cannot mount a tmpfs (not root, or no mount permission)")
    try:
        model = torch.nn.Linear(64, 64)  # 16 KiB of weights: more than the disk holds
        opt = sched = Saved({"state": {}})  # what save_checkpoint asks of them (torch.optim imports take seconds)
        with pytest.raises(common.DiskFull) as e:
            checkpoints.save_checkpoint(folder, 1, model, None, opt, sched, {"step": 1})
        assert str(e.value).startswith(f"{folder}/step-00000001: no space left on device; free space")
        assert list(folder.iterdir()) == []
    finally:
        subprocess.run(["umount", str(folder)], check=True)
