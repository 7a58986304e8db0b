"""How big a fine-tune's optimizer step is and what runs it, decided from the config alone: the
token-sized step (training.tokens_per_step), the parse-time checks of training.kernels,
tokens_per_step, compile and gradient_checkpointing, and the rule of gradient_checkpointing: auto.

- token_step: with `tokens_per_step`, one optimizer step is tokens_per_step / pack_length packed
  rows of pack_length tokens (pack_length null: max_length), run as `gradient_accumulation`
  micro-batches of rows / gradient_accumulation rows each. Both divisions must be exact.
- problem: why a fine-tune's training block cannot run as written (a sentence naming the key and
  the fix), or None.
- checkpointing_decision: gradient_checkpointing: auto, given one step's measured peak memory.

Standard library only: it runs at Snakemake parse time (config.py) and in the jobs (batching.py,
training_options.py).
"""

import importlib.util

from . import model_kinds, sharding, training_grid
from .finetune_methods import METHODS

# gradient_checkpointing: auto turns checkpointing on when one step without it (its peak memory
# plus AdamW's two float32 moments of every trained parameter) takes more than this share of the
# GPU's memory, or runs out of it
AUTO_CHECKPOINT_SHARE = 0.85


def pack_length(training):
    """Tokens per packed row: pack_length, else max_length."""
    return training.get("pack_length") or training.get("max_length") or 2048


def token_step(training):
    """{rows, micro_rows, pack_length} of a token-sized step, None without tokens_per_step; a
    ValueError names what does not divide."""
    tokens = training.get("tokens_per_step")
    if not tokens:
        return None
    length, accumulation = pack_length(training), training.get("gradient_accumulation", 1)
    if tokens % length or tokens < length:
        raise ValueError(
            f"tokens_per_step: {tokens} is not a whole number of packed rows of {length} tokens "
            f"(pack_length); make it a multiple of {length}"
        )
    rows = tokens // length
    if rows % accumulation:
        raise ValueError(
            f"tokens_per_step: {rows} rows of {length} tokens do not split into gradient_accumulation "
            f"{accumulation} equal micro-batches; make the rows a multiple of {accumulation}"
        )
    return {"rows": rows, "micro_rows": rows // accumulation, "pack_length": length}


def kernels_problem(cuda):
    """Why training.kernels: liger cannot run where the jobs run (cuda: whether they have a CUDA
    GPU, backends.cuda_available), or None. Liger's kernels are Triton kernels for CUDA: on a CPU
    they import but fail at their first call, so a CPU is refused here rather than left to fail."""
    if not cuda:
        return (
            "liger kernels need a CUDA GPU (no nvidia-smi on PATH; set LORA_WF_CUDA=1 if the jobs run "
            "on GPU nodes), or set kernels: none"
        )
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel is not installed (pip install -e '.[liger]'), or set kernels: none"
    return None


def problem(training, *, packs, distributed, cuda, kind):
    """Why this training block cannot run (`key: sentence`, the key relative to the training block),
    or None. packs: whether the model kind and method pack examples; distributed: more than one
    process; cuda: whether the jobs have a CUDA GPU; kind: the model kind."""
    if training.get("tokens_per_step"):
        if not (packs and training.get("packing")):
            return (
                "tokens_per_step: a token-sized step is made of packed rows; set packing: true "
                "(causal LMs with a method that packs), or remove tokens_per_step and use batch_size"
            )
        if distributed:
            return "tokens_per_step: one process only; remove it and use batch_size for a distributed fine-tune"
        if training.get("max_length", 0) > pack_length(training):
            return (
                f"tokens_per_step: max_length {training['max_length']} is longer than a packed row "
                f"({pack_length(training)} tokens); raise pack_length or lower max_length"
            )
        try:
            token_step(training)
        except ValueError as e:
            return str(e)
    if training.get("gradient_checkpointing") == "auto" and distributed:
        return "gradient_checkpointing: auto measures one process's step; set true or false for a distributed fine-tune"
    if training.get("kernels", "none") != "none":
        if kind != "causal_lm":
            return f"kernels: liger kernels are for causal LMs; this model is an {kind}, set kernels: none"
        why = kernels_problem(cuda)
        if why:
            return f"kernels: {why}"
    if training.get("compile") and kind != "causal_lm":
        return f"compile: compiles a causal LM's decoder stack; this model is an {kind}, set compile: false"
    return None


def checkpointing_decision(setting, device_type, peak_bytes=None, total_bytes=None, oom=False):
    """(on, reason) for gradient_checkpointing `setting` (true, false or "auto"). auto: off where
    the device is not CUDA (no memory is measured there); on CUDA, on when one step without
    checkpointing ran out of memory (oom) or took more than AUTO_CHECKPOINT_SHARE of total_bytes
    (peak_bytes: its peak plus the optimizer state), else off."""
    if setting is not None and setting != "auto":
        return bool(setting), "set in the config"
    if device_type != "cuda":
        return False, f"auto on {device_type}: off (memory is measured on CUDA only)"
    if oom:
        return True, "auto: one step without checkpointing ran out of GPU memory"
    gib, limit = peak_bytes / 2**30, AUTO_CHECKPOINT_SHARE * total_bytes / 2**30
    if peak_bytes > AUTO_CHECKPOINT_SHARE * total_bytes:
        return True, f"auto: one step without checkpointing needs {gib:.1f} GiB, over {limit:.1f} GiB"
    return False, f"auto: one step without checkpointing needs {gib:.1f} GiB, within {limit:.1f} GiB"


def fine_tune_problem(ft, model, dist, cuda):
    """problem() for every grid point of a fine-tune entry, as the rest of its error line
    (`[.grid point P].training.<key>: ...`), or None. cuda: a function saying whether the model's
    jobs have a CUDA GPU (backends.cuda_available), asked only when kernels are set."""
    kind = model_kinds.get(model["type"])
    packs = kind.PACKING and METHODS[ft["method"]]["packing"]
    for name, point in training_grid.expand(ft).items():
        training = point["training"]
        found = problem(
            training,
            packs=packs,
            distributed=sharding.is_distributed(dist),
            cuda=training.get("kernels", "none") != "none" and cuda(),
            kind=model["type"],
        )
        if found:
            return f"{'.grid point ' + name if name else ''}.training.{found}"
    return None
