"""What a run was built from: content hashes of data files and weights, the resume key of a
fine-tune's checkpoints, and the provenance record every model stage writes beside its outputs.
"""

import hashlib
from pathlib import Path

from .hashing import short_hash


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(model_dir, adapter=None):
    """Fingerprints of a model's (and adapter's) safetensors: content hashes up to 256 MiB, else
    name, size and mtime (hashing many GB per job would cost minutes)."""
    files = sorted(Path(model_dir).glob("*.safetensors")) + sorted(Path(model_dir).glob("head.json"))
    if adapter:
        files += sorted(Path(adapter).glob("*.safetensors"))
    return [
        file_digest(f) if f.stat().st_size < 2**28 else f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in files
    ]


def resume_key(settings, code, data_files, model_dir) -> str:
    """Identity of a fine-tune's result: its settings, its code, the content of its data splits and
    its base weights. Checkpoints are stored under this key, so a changed input never resumes."""
    return short_hash(
        {
            "settings": settings,
            "code": code,
            "data": [file_digest(p) for p in data_files],
            "weights": weights_fingerprint(model_dir),
        }
    )


def provenance(code, data=None, model_dir=None, adapter=None, dtype=None, device=None):
    """The hashes a run's outputs were built from (12 hex digits each), and the dtype its model
    computed in and the device it ran on (models.device_name), for the report."""
    out = {"code": code}
    if dtype:
        out["dtype"] = dtype
    if device:
        out["device"] = device
    if data:
        out["data"] = {k: file_digest(p)[:12] for k, p in data.items()}
    if model_dir:
        out["model"] = short_hash(weights_fingerprint(model_dir))
    if adapter:
        out["adapter"] = short_hash(weights_fingerprint(adapter))
    return out
