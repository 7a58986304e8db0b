"""What is on disk or on the hub for a model, read without torch: whether a safetensors file is whole
(its header against its length) and whether a hub model can be served from the cache or the hub.
The lowest layer of the checks: models.py (job time) and preflight.py (parse time) both use it."""

import json
from pathlib import Path

from .common import PipelineError

HUB_CHECK_ENV = "LORA_WF_HUB_CHECK"  # "0": the jobs reach the hub from elsewhere; do not check it here


def safetensors_header(path):
    """(header dict, header length) of a safetensors file; raises ValueError when it cannot be one."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ValueError(f"its header says {n} bytes but the file holds {size}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"unreadable header ({e})") from None
    if not isinstance(header, dict):
        raise ValueError("unreadable header (not a JSON object)")
    return header, n


def safetensors_problem(path):
    """Why a safetensors file is truncated or corrupt (a phrase), or None when it is whole."""
    try:
        header, n = safetensors_header(path)
        size = Path(path).stat().st_size
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return str(e)
    if 8 + n + end != size:
        return f"{size} bytes where its header describes {8 + n + end}: truncated or corrupt"
    return None


def check_folder_weights(folder, fix):
    """Raise PipelineError naming the first truncated safetensors file in `folder`."""
    for f in sorted(Path(folder).glob("*.safetensors")):
        problem = safetensors_problem(f)
        if problem:
            raise PipelineError(f"{f}: {problem}; {fix}")


def hub_cache_folder(hub_id):
    """The cached snapshot folder of a hub model (its config.json's folder), or None."""
    from huggingface_hub import try_to_load_from_cache

    hit = try_to_load_from_cache(hub_id, "config.json")
    return Path(hit).parent if isinstance(hit, str) else None


def offline_reason():
    """Why a hub model that is not cached cannot load here, when the hub is switched off."""
    from huggingface_hub import constants

    return f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and offline mode is on (HF_HUB_OFFLINE)"


def hub_problem(hub_id):
    """Why a hub model cannot be served from the cache or the hub (a phrase), or None."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url, is_offline_mode

    if hub_cache_folder(hub_id) is not None:
        return None
    if is_offline_mode():
        return offline_reason()
    try:
        get_hf_file_metadata(hf_hub_url(hub_id, "config.json"), timeout=10)  # one request, nothing downloaded
    except Exception as e:  # noqa: BLE001 (any reason the hub cannot serve it is reported as such)
        text = str(e).strip()
        return f"the hub cannot serve it ({text.splitlines()[0] if text else type(e).__name__})"
    return None


def hub_error(hub_id, reason):
    return (
        f"model hub_id '{hub_id}': {reason}; run once with network access to download it, or set use_hub: false "
        f"and give the model a local source: (path, package or gguf_package)"
    )
