"""Attention in float32 while a bfloat16 model trains: the `training.attention_dtype` setting.

Under `dtype: auto` on a CPU with native bf16, torch's CPU flash-attention kernel is about twice as
slow in bfloat16 as in float32, backward pass included (2026-12-03, Intel Xeon with AMX: the
forward and backward of one SmolLM2 layer's attention, batch 8 x 110 tokens, 15 ms in bf16 against
7.6 ms with q/k/v cast to float32). So a bf16 LoRA fine-tune spends a quarter of its time there.

`attention_dtype` (training block) chooses what the attention of a fine-tune computes in:
- `compute`: the stage's own dtype (the model's resolved `dtype`);
- `float32`: query, key and value cast to float32 (autocast off inside), the output cast back to
  the model's dtype: the matmuls of the projections stay bf16;
- `auto` (the default): float32 where the fine-tune computes in bfloat16 on a CPU (no GPU requested
  and none on the machine), `compute` elsewhere (a GPU's bf16 flash attention is the fast one).

resolve() runs at parse time (standard library only); its answer is part of the fine-tune's key
(keys.finetune_settings) whenever it differs from the compute dtype, so a float32 stage, or a bf16
one on a GPU, keeps the key it had. use_float32_attention() switches the transformers models
inside a loaded model from `sdpa` to the registered `sdpa_float32`, the same kernel on float32
inputs (a float mask and T5's position bias cast up too); a model whose attention is not sdpa
keeps its own, which the training log says.
"""

from . import precision

NAME = "sdpa_float32"


def resolve(requested: str, model: dict) -> str:
    """The dtype name a fine-tune's attention computes in, for a validated model entry: 'float32' or
    the model's resolved dtype (see the module docstring)."""
    compute = precision.model_dtype(model)
    if requested == "compute":
        return compute
    if requested == "float32":
        return "float32"
    gpus = model.get("resources", {}).get("gpus", 0)
    on_cpu = gpus == 0 and not precision.machine_has_gpu()
    return "float32" if on_cpu and compute == "bfloat16" else compute


def _sdpa_float32(module, query, key, value, attention_mask, **kwargs):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    # an additive position bias (T5) joins the mask inside sdpa_attention_forward: float32 as well
    kwargs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in kwargs.items()}
    with torch.autocast(query.device.type, enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs
        )
    return out.to(query.dtype), weights


def register():
    """Make `sdpa_float32` a transformers attention implementation (its masks are sdpa's). Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, _sdpa_float32)
    AttentionMaskInterface.register(NAME, sdpa_mask)


def _transformers_models(model):
    """The transformers models inside a loaded model: itself, a PEFT model's base, the encoder of a
    mean-pooling head (heads.MeanPoolingClassifier), outermost first."""
    from transformers import PreTrainedModel

    return [m for m in model.modules() if isinstance(m, PreTrainedModel)]


def implementation(model):
    """The attention implementation a loaded model runs ('sdpa', NAME, 'eager', ...; None for a
    model with no transformers model inside)."""
    inner = _transformers_models(model)
    return getattr(inner[0].config, "_attn_implementation", None) if inner else None


def use_float32_attention(model):
    """Switch the model's sdpa attention to float32 (NAME); a model whose attention is not sdpa keeps
    its own. Returns the implementation it now runs."""
    for inner in _transformers_models(model):
        if getattr(inner.config, "_attn_implementation", None) == "sdpa":
            register()
            inner.set_attn_implementation(NAME)
    return implementation(model)
