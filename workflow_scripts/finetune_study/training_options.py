"""What training.train sets up on the model before its first step, from the training block:

- kernels: liger: Liger's Triton kernels patched into the model instance (RMSNorm, RoPE, SwiGLU;
  liger_kernel's _apply_liger_kernel_to_instance) and its fused linear cross-entropy as the
  answer-token loss (loss.answer_token_nll calls it on the hidden states and the LM head's
  weight, so the logits are never materialised). CUDA only; config.py refuses it elsewhere.
- gradient_checkpointing: true, false or auto (step_sizes.checkpointing_decision): on CUDA auto
  runs one forward and backward pass of the largest micro-batch without checkpointing, without
  an optimizer step and with the RNG state restored afterwards (so the run is the one an explicit
  setting gives), and turns checkpointing on when that step's peak memory plus the optimizer
  state is over the share of the GPU, or runs out of memory.
- compile: torch.compile of the causal LM's decoder stack (nn.Module.compile, in place: the
  parameter names, so checkpoints and saved adapters, do not change), COMPILE_BACKEND.

prepare() applies them in that order and returns what it did, for the train log's provenance.
"""

import torch

from . import adapters, step_sizes
from .loss import autocast, batch_loss

COMPILE_BACKEND = "inductor"  # torch.compile's default


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def apply_liger(model):
    """Patch Liger's kernels into the model (its own class's kernels, with the fused linear
    cross-entropy taken over by loss.answer_token_nll) and mark the model for the fused loss."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss, _apply_liger_kernel_to_instance
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    base = _base(model)
    kind = base.config.model_type
    if kind not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise ValueError(f"training.kernels: liger has no kernels for model type {kind!r}; set kernels: none")
    if not isinstance(getattr(base, "lm_head", None), torch.nn.Linear):
        raise ValueError(
            "training.kernels: liger fuses a plain linear LM head; this model's is adapted, set kernels: none"
        )
    _apply_liger_kernel_to_instance(
        model=base, rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
    )
    base.fused_linear_cross_entropy = LigerFusedLinearCrossEntropyLoss(
        reduction="none", softcap=getattr(base.config, "final_logit_softcapping", None)
    )
    return {"kernels": "liger", "model_type": kind}


def enable_checkpointing(model):
    """Gradient checkpointing on a built trainable model, as adapters.trainable_model sets it."""
    base = _base(model)
    base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not adapters.virtual_tokens(model):
        base.enable_input_require_grads()


def measure_step(model, stream, task_type, device, compute_dtype):
    """(peak bytes, the GPU's total bytes, ran out of memory) of one forward and backward pass of
    the stream's largest micro-batch on CUDA, the peak plus AdamW's two float32 moments of every
    trained parameter. No optimizer step; gradients cleared and the RNG state restored afterwards."""
    _, tensors = stream.get(stream.largest())
    batch = {k: v.to(device) for k, v in tensors.items()}
    rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state_all()
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    loss = None
    try:
        with autocast(device, compute_dtype):
            loss = batch_loss(model, batch, task_type)
        loss.backward()
        torch.cuda.synchronize(device)
        peak, oom = torch.cuda.max_memory_allocated(device), False
    except torch.OutOfMemoryError:
        peak, oom = None, True
    finally:
        del loss, batch
        model.zero_grad(set_to_none=True)
        torch.set_rng_state(rng)
        torch.cuda.set_rng_state_all(cuda_rng)
        torch.cuda.empty_cache()
    state = 8 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = torch.cuda.get_device_properties(device).total_memory
    return (None if oom else peak + state), total, oom


def decide_checkpointing(model, setting, device_type, measure):
    """{setting, enabled, reason} of gradient_checkpointing `setting`; auto on CUDA calls
    measure() -> (peak bytes, total bytes, out of memory) (measure_step) and turns checkpointing on
    where step_sizes.checkpointing_decision says so. true is set by the model's builder already."""
    peak = total = None
    oom = False
    if setting == "auto" and device_type == "cuda":
        peak, total, oom = measure()
    on, reason = step_sizes.checkpointing_decision(setting, device_type, peak, total, oom)
    if setting == "auto" and on:
        enable_checkpointing(model)
    print(f"gradient checkpointing {'on' if on else 'off'} ({reason})")
    return {"setting": setting, "enabled": on, "reason": reason}


def compile_backbone(model):
    """torch.compile the decoder stack the causal-LM loss runs (loss.answer_token_nll), in place."""
    backbone = getattr(_base(model), "model", None)
    if backbone is None:
        raise ValueError("training.compile: this model has no decoder stack (.model) to compile; set compile: false")
    backbone.compile(backend=COMPILE_BACKEND)
    return backbone


def prepare(model, stream, cfg, task_type, device, compute_dtype):
    """Kernels, gradient checkpointing (auto decided here), compile: applied to the model in that
    order; returns what was done, for the train log."""
    done = {"kernels": cfg.get("kernels", "none"), "compile": bool(cfg.get("compile"))}
    if done["kernels"] == "liger":
        done.update(apply_liger(model))
    device = torch.device(device)
    done["gradient_checkpointing"] = decide_checkpointing(
        model,
        cfg.get("gradient_checkpointing", False),
        device.type,
        lambda: measure_step(model, stream, task_type, device, compute_dtype),
    )
    if done["compile"]:
        compile_backbone(model)
        done["compile_backend"] = COMPILE_BACKEND
    return done
