"""Resumable training checkpoints: written atomically, marked COMPLETE last, found by latest_checkpoint.

A checkpoint folder step-<n> holds the trainable weights (safetensors), the best validation
weights so far, and trainer_state.pt (optimizer, scheduler, RNG states, step, log and
early-stopping state). It is written to step-<n>.tmp, fsynced, renamed into place and then marked
with COMPLETE: a folder without the marker (a crash mid-write) is never resumed. Only tensors and
plain values are stored, and trainer_state.pt is loaded with torch.load(weights_only=True).
"""
import os
import random
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

MARKER = "COMPLETE"


def trainable_state(model):
    return {n: p.detach().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def latest_checkpoint(ckpt_dir):
    """Newest checkpoint folder with its COMPLETE marker; half-written ones are ignored."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / MARKER).exists() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def save_checkpoint(ckpt_dir, step, model, best_weights, optimizer, scheduler, state, keep=2):
    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"step-{step:08d}"
    tmp = ckpt_dir / f"step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    if best_weights is not None:
        save_file(best_weights, tmp / "best.safetensors")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng, **state},
               tmp / "trainer_state.pt")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    (final / MARKER).write_text(f"{step}\n")
    for old in sorted(p for p in ckpt_dir.glob("step-*") if (p / MARKER).exists())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path, model, optimizer, scheduler):
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
