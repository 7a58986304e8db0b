"""The trainable model of each fine-tune method, one small function per method, and how each saves.

Every builder takes the loaded model, the method's settings block from the stage key (`lora` for
lora/dora/qlora, `ia3`, `prompt` for prompt/prefix tuning, none for full), the PEFT task type
(CAUSAL_LM or SEQ_CLS) and whether to checkpoint activations, and returns the model to train:

- lora: low-rank adapters (LoraConfig) on `target_modules`;
- dora: the same with use_dora (weight-decomposed LoRA: a learned magnitude per output feature);
- ia3: learned scaling vectors (IA3Config) on target (and feedforward) modules;
- prompt_tuning: `num_virtual_tokens` learned input embeddings before every input;
- prefix_tuning: `num_virtual_tokens` learned keys and values in every layer;
- full: nothing added, every weight unfrozen;
- bottleneck: bottleneck adapters after attention and/or feed-forward outputs (bottleneck.py);
- qlora: LoRA on a base model loaded in 4-bit nf4 (models.load_causal_lm(quantize="nf4")), after
  peft.prepare_model_for_kbit_training. CUDA only: bitsandbytes is never imported on CPU (the loader
  refuses first, and the config check stops such a run at parse time).

For encoders (SEQ_CLS) PEFT adds the `classifier` head to modules_to_save (trained and saved in
full with the adapter); so are weights the checkpoint lacked (models.load_classifier:
head_new_modules, e.g. a BERT pooler), which would otherwise be initialized afresh, from another
seed, when the adapter is loaded.

Saving (save_trained): PEFT methods write PEFT's format (adapter_config.json +
adapter_model.safetensors; qlora adds quantization.json, how its base was loaded); bottleneck its
own (bottleneck_config.json + bottleneck_model.safetensors, bottleneck.save); full writes the
whole model as safetensors (config.json + model.safetensors; an encoder also its head.json, a
mean-pooling head its classifier.safetensors). models.load_causal_lm / load_classifier tell the
two apart (artifact_kind).

Prompt-learning models (prompt and prefix tuning) put their virtual tokens before the input in
PEFT's forward; loss.py and inference.py call the base model directly (to run the LM head on a few
positions only), so with_virtual_tokens adds them the same way there: virtual tokens at positions
0..n-1, the text from position n on, every text token attending to all of them.
"""

import json
import shutil
from pathlib import Path

import torch

from .common import PipelineError
from .finetune_methods import METHOD_SETTINGS, bottleneck_settings
from .models import DTYPES

QUANTIZATION_FILE = "quantization.json"
NF4 = {
    "load_in_4bit": True,
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_compute_dtype": "bfloat16",
}


# ---------------------------------------------------------------- shared steps


def _modules_to_save(model, task_type):
    # PEFT saves an encoder's head itself (classifier, score); these are weights the checkpoint lacked
    return (list(getattr(model, "head_new_modules", [])) or None) if task_type in ("SEQ_CLS", "TOKEN_CLS") else None


def _check_targets(model, targets, what):
    missing = [
        t for t in targets if not any(n.split(".")[-1] == t or n.endswith("." + t) for n, _ in model.named_modules())
    ]
    if missing:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise PipelineError(
            f"{what} {missing} are not in this model; its linear layers are: {', '.join(names)}; "
            f"fix the list in the fine-tune's config"
        )


def _checkpointing(model, gradient_checkpointing, input_grads=True):
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if input_grads:
            model.enable_input_require_grads()


# ---------------------------------------------------------------- one builder per method


def lora_model(model, lora_cfg, task_type, gradient_checkpointing=False, use_dora=False):
    from peft import LoraConfig, get_peft_model

    _check_targets(model, lora_cfg["target_modules"], "LoRA target_modules")
    _checkpointing(model, gradient_checkpointing)
    config = LoraConfig(
        task_type=task_type,
        r=lora_cfg["r"],
        lora_alpha=lora_cfg["alpha"],
        lora_dropout=lora_cfg["dropout"],
        target_modules=list(lora_cfg["target_modules"]),
        modules_to_save=_modules_to_save(model, task_type),
        use_dora=use_dora,
    )
    return get_peft_model(model, config)


def dora_model(model, lora_cfg, task_type, gradient_checkpointing=False):
    return lora_model(model, lora_cfg, task_type, gradient_checkpointing, use_dora=True)


def ia3_model(model, ia3_cfg, task_type, gradient_checkpointing=False):
    from peft import IA3Config, get_peft_model

    targets, feedforward = ia3_cfg.get("target_modules"), ia3_cfg.get("feedforward_modules")
    if targets:
        _check_targets(model, targets, "IA3 target_modules")
    _checkpointing(model, gradient_checkpointing)
    config = IA3Config(
        task_type=task_type,
        target_modules=list(targets) if targets else None,
        feedforward_modules=list(feedforward) if feedforward is not None else None,
        modules_to_save=_modules_to_save(model, task_type),
    )
    return get_peft_model(model, config)


def prompt_tuning_model(model, prompt_cfg, task_type, gradient_checkpointing=False):
    from peft import PromptTuningConfig, PromptTuningInit, get_peft_model

    _checkpointing(model, gradient_checkpointing, input_grads=False)  # the virtual tokens carry the gradient
    config = PromptTuningConfig(
        task_type=task_type,
        num_virtual_tokens=prompt_cfg["num_virtual_tokens"],
        prompt_tuning_init=PromptTuningInit.RANDOM,
    )
    return get_peft_model(model, config)


def prefix_tuning_model(model, prompt_cfg, task_type, gradient_checkpointing=False):
    from peft import PrefixTuningConfig, get_peft_model

    _checkpointing(model, gradient_checkpointing, input_grads=False)
    config = PrefixTuningConfig(task_type=task_type, num_virtual_tokens=prompt_cfg["num_virtual_tokens"])
    return get_peft_model(model, config)


def full_model(model, _settings, task_type, gradient_checkpointing=False):
    """Every weight trained (the optimizer keeps two float32 moments per weight: about 3x the model's
    memory besides activations). The weights train in the model's dtype."""
    _checkpointing(model, gradient_checkpointing, input_grads=False)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def bottleneck_model(model, bottleneck_cfg, task_type, gradient_checkpointing=False):
    """Bottleneck adapters (bottleneck.py) after the attention and/or feed-forward outputs, the base
    frozen, an encoder's head trained in full."""
    from . import bottleneck

    _checkpointing(model, gradient_checkpointing)
    return bottleneck.bottleneck_model(model, bottleneck_settings(bottleneck_cfg), task_type)


def qlora_model(model, lora_cfg, task_type, gradient_checkpointing=False):
    """LoRA on a model loaded in 4-bit (models.load_causal_lm(..., quantize="nf4"), CUDA only):
    prepare_model_for_kbit_training casts norms and the LM head to float32 and sets up activation
    checkpointing, then LoRA as usual (its weights float32)."""
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
    )
    return lora_model(model, lora_cfg, task_type, gradient_checkpointing=False)


BUILDERS = {
    "lora": lora_model,
    "dora": dora_model,
    "ia3": ia3_model,
    "prompt_tuning": prompt_tuning_model,
    "prefix_tuning": prefix_tuning_model,
    "full": full_model,
    "qlora": qlora_model,
    "bottleneck": bottleneck_model,
}


def trainable_model(model, finetune, task_type, gradient_checkpointing=False):
    """The model to train for a stage key's `finetune` block ({"method", <its settings block>}; no
    method means lora). Whatever it trains is float32 (master weights: LoRA and the other methods'
    parameters, heads, prompt embeddings) on base weights of any dtype, unless the key's
    master_dtype (a `full` fine-tune with an explicit dtype) says otherwise."""
    method = finetune.get("method", "lora")
    block = METHOD_SETTINGS[method]
    model = BUILDERS[method](model, finetune[block] if block else None, task_type, gradient_checkpointing)
    master = DTYPES[finetune.get("master_dtype", "float32")]
    for p in model.parameters():
        if p.requires_grad and p.is_floating_point() and p.dtype != master:
            p.data = p.data.to(master)
    return model


def parameter_counts(model):
    """{"trainable", "total", "trainable_share"}: parameters with requires_grad against all of the
    model's parameters (adapters included; a 4-bit weight counts as its unpacked size)."""

    def n(p):
        k = p.numel()
        if p.__class__.__name__ == "Params4bit":  # two 4-bit values per stored byte
            k *= 2 * getattr(getattr(p, "quant_storage", None), "itemsize", 1)
        return k

    trainable = sum(n(p) for p in model.parameters() if p.requires_grad)
    total = sum(n(p) for p in model.parameters())
    return {"trainable": trainable, "total": total, "trainable_share": trainable / total if total else None}


# ---------------------------------------------------------------- saving


def save_trained(model, folder, method, base_dir):
    """Write what a fine-tune trained into `folder` (see the module docstring), safetensors only."""
    folder = Path(folder)
    if method == "bottleneck":  # its own two files (bottleneck.py); the base stays where it is
        from . import bottleneck

        bottleneck.save(model, folder)
        return
    model.save_pretrained(folder, safe_serialization=True)
    _sort_saved_sets(model, folder)
    if method == "full":
        head = Path(base_dir) / "head.json"  # an encoder's head choice travels with its weights
        if head.is_file():
            shutil.copy2(head, folder / head.name)
    if method == "qlora":
        (folder / QUANTIZATION_FILE).write_text(json.dumps(NF4, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _sort_saved_sets(model, folder):
    """PEFT keeps target_modules (and IA3's feedforward_modules) as sets and writes them to
    adapter_config.json in set order, which changes with Python's string hashing from one process to
    the next: sorted, the same fine-tune gives the same bytes in every run. (PEFT reads them back as
    sets: the order means nothing.)"""
    for name, cfg in (getattr(model, "peft_config", None) or {}).items():
        sets = [k for k, v in cfg.to_dict().items() if isinstance(v, set)]
        path = Path(folder) / ("" if name == "default" else name) / "adapter_config.json"
        if not sets or not path.is_file():
            continue
        saved = json.loads(path.read_text(encoding="utf-8"))
        for k in sets:
            if isinstance(saved.get(k), list):
                saved[k] = sorted(saved[k])
        path.write_text(json.dumps(saved, indent=2, sort_keys=True), encoding="utf-8")  # PEFT's own layout


# ---------------------------------------------------------------- virtual tokens of prompt learning


def _prompt_learning_config(model):
    cfg = getattr(model, "active_peft_config", None)
    return cfg if getattr(cfg, "is_prompt_learning", False) else None


def virtual_tokens(model):
    """How many virtual tokens a prompt- or prefix-tuned PEFT model puts before every input (else 0)."""
    cfg = _prompt_learning_config(model)
    return cfg.num_virtual_tokens if cfg else 0


def with_virtual_tokens(model, inputs):
    """Inputs for model.get_base_model() that include a prompt-learning model's virtual tokens, and
    how many positions they add in front of the output (prompt tuning: n, prefix tuning: 0, its
    tokens are past keys and values). inputs: input_ids with an attention_mask (2D 0/1, or an
    additive 4D (B, 1, T, T) mask) and optional position_ids; the virtual tokens take positions
    0..n-1 and the text's positions are shifted by n."""
    cfg = _prompt_learning_config(model)
    n = cfg.num_virtual_tokens
    ids = inputs["input_ids"]
    b, t = ids.shape
    mask, pos = inputs.get("attention_mask"), inputs.get("position_ids")
    if mask is None:
        raise ValueError(f"{cfg.peft_type}: an attention mask is needed (packed batches cannot take virtual tokens)")
    out = {}
    if mask.dim() == 2:
        mask = torch.cat([torch.ones((b, n), dtype=mask.dtype, device=mask.device), mask], 1)
    if cfg.peft_type == "PREFIX_TUNING":
        out["input_ids"] = ids
        out["past_key_values"] = model.get_prompt(b, max_cache_len=n + t)
        if mask.dim() == 4:  # every text token sees every prefix token
            mask = torch.cat([torch.zeros((b, 1, t, n), dtype=mask.dtype, device=mask.device), mask], -1)
        shift = 0
    elif cfg.peft_type == "PROMPT_TUNING":
        embeds = model.get_base_model().get_input_embeddings()(ids)
        out["inputs_embeds"] = torch.cat([model.get_prompt(batch_size=b).to(embeds.dtype), embeds], 1)
        if mask.dim() == 4:  # virtual tokens attend causally among themselves; text tokens see them all
            full = torch.full((b, 1, n + t, n + t), torch.finfo(mask.dtype).min, dtype=mask.dtype, device=mask.device)
            full[:, :, :n, :n] = full[:, :, :n, :n].triu(1)
            full[:, :, n:, :n] = 0
            full[:, :, n:, n:] = mask
            mask = full
        if pos is not None:
            pos = torch.cat([torch.arange(n, device=pos.device).expand(b, n), pos + n], 1)
        shift = n
    else:
        raise ValueError(f"prompt-learning method {cfg.peft_type} is not supported here")
    if pos is not None and cfg.peft_type == "PREFIX_TUNING":
        pos = pos + n
    out["attention_mask"] = mask
    if pos is not None:
        out["position_ids"] = pos
    return out, shift
