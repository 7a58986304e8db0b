"""Resumable training checkpoints: written atomically, marked COMPLETE last, found by latest_checkpoint.

A checkpoint folder step-<n> holds the trainable weights (safetensors), the best validation
weights so far, and trainer_state.pt (optimizer, scheduler, RNG states, step, log and
early-stopping state). It is written to step-<n>.tmp, fsynced, renamed into place and then marked
with COMPLETE: a folder without the marker (a crash mid-write) is never resumed. Only tensors and
plain values are stored, and trainer_state.pt is loaded with torch.load(weights_only=True). A
full disk removes the torn copy and ends the job with one line naming the checkpoint (DiskFull). The
run's cumulative counters (tokens, training seconds) go to counters.json, plain JSON numbers, so a
resumed run's throughput and padding figures cover the whole run (read_counters).

Checkpoints live in checkpoint_dir/<run>/<resume key>/. After a fine-tune succeeds,
remove_after_success deletes its run folder's other resume keys (superseded settings, code, data or
weights) and, unless asked to keep it, its own.
"""

import json
import os
import random
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .common import DiskFull, naming_full_disk

MARKER = "COMPLETE"
COUNTERS = "counters.json"
KEY_NAME = re.compile(r"[0-9a-f]{12}")  # keys.resume_key: 12 hex digits


def is_sharded(t):
    """Whether a tensor is an FSDP shard (a DTensor)."""
    return type(t).__name__ == "DTensor"


def trainable_state(model):
    """{name: copy} of the trained parameters, on the CPU; an FSDP shard (a DTensor) is copied where
    it lives, as this process's shard."""
    return {
        n: (p.detach().clone() if is_sharded(p) else p.detach().cpu().clone().contiguous())
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def latest_checkpoint(ckpt_dir):
    """Newest checkpoint folder with its COMPLETE marker; half-written ones are ignored."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / MARKER).exists() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def save_checkpoint(ckpt_dir, step, model, best_weights, optimizer, scheduler, state, keep=2, counters=None):
    """Write checkpoint step-<n> atomically (see the module docstring) and keep the newest `keep`.
    counters: plain numbers of the run so far, written to counters.json."""
    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"step-{step:08d}"
    tmp = ckpt_dir / f"step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with naming_full_disk(final):  # a full disk: one line naming the checkpoint, not a traceback
            tmp.mkdir(parents=True)
            save_file(trainable_state(model), tmp / "trainable.safetensors")
            if best_weights is not None:
                save_file(best_weights, tmp / "best.safetensors")
            rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
            if torch.cuda.is_available():
                rng["cuda"] = torch.cuda.get_rng_state_all()
            with open(tmp / "trainer_state.pt", "wb") as f:  # a file object: a write error keeps its errno
                torch.save(
                    {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng, **state},
                    f,
                )
            if counters is not None:
                (tmp / COUNTERS).write_text(json.dumps(counters))
            publish(tmp, final, step, keep)
    except DiskFull:
        shutil.rmtree(tmp, ignore_errors=True)  # give back the space the torn copy took
        raise


def publish(tmp, final, step, keep):
    """Make a written checkpoint folder `tmp` the complete checkpoint `final`: fsync every file,
    rename it into place, mark it COMPLETE, keep the newest `keep` complete ones of its folder."""
    for f in [p for p in tmp.rglob("*") if p.is_file()]:
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    (final / MARKER).write_text(f"{step}\n")
    for old in sorted(p for p in final.parent.glob("step-*") if (p / MARKER).exists())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path, model, optimizer, scheduler):
    """Restore weights, optimizer, scheduler and RNG from checkpoint `path`; returns (the rest of the
    trainer state, the best weights or None)."""
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    for n, t in weights.items():
        params[n].data.copy_(t)
    st = torch.load(path / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(st.pop("optimizer"))
    scheduler.load_state_dict(st.pop("scheduler"))
    rng = st.pop("rng")
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    best = load_file(path / "best.safetensors") if (path / "best.safetensors").exists() else None
    return st, best


def read_counters(path):
    """The counters saved with checkpoint `path`: numbers by name ({} for none). Plain JSON, and
    anything that is not a number is dropped."""
    f = Path(path) / COUNTERS
    if not f.is_file():
        return {}
    data = json.loads(f.read_text())
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def remove_after_success(ckpt_dir, keep_own=False):
    """After the run whose checkpoints are in ckpt_dir (checkpoint_dir/<run>/<resume key>) succeeded:
    delete the other resume-key folders of its run folder, left by superseded settings, code, data or
    weights that will never be resumed, and ckpt_dir itself unless keep_own. Only folders named like
    a resume key are touched; nothing outside the run folder is. Returns the removed folders."""
    ckpt_dir = Path(ckpt_dir)
    run_dir = ckpt_dir.parent
    doomed = (
        [
            d
            for d in sorted(run_dir.iterdir())
            if d != ckpt_dir and KEY_NAME.fullmatch(d.name) and d.is_dir() and not d.is_symlink()
        ]
        if run_dir.is_dir()
        else []
    )
    if not keep_own and ckpt_dir.is_dir():
        doomed.append(ckpt_dir)
    for d in doomed:
        shutil.rmtree(d, ignore_errors=True)
    return doomed
