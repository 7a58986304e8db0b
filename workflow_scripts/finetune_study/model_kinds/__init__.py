"""The model kinds (a model's `type:` in the config), and the interface each one provides.

A model kind is one module, model_kinds/<name>.py, standard library only at import (its loader
imports torch when called). Which task types take which model kinds is said by the task types
(tasks/<name>.py: MODEL_KINDS) and checked at parse time (config.py). Adding a model kind: write
its module, add it to schemas/config.schema.yaml's model type enum and to MODEL_KINDS here, and
name it in the MODEL_KINDS of the task types that take it.
"""

from . import causal_lm, encoder, seq2seq

# the registry. Imported statically (the modules are small): every stage that loads a model has
# every kind's code in its fingerprint, never less than it runs.
KINDS = {"causal_lm": causal_lm, "encoder": encoder, "seq2seq": seq2seq}
MODEL_KINDS = tuple(KINDS)

INTERFACE = {
    "STAGE_KEYS": "model settings (beyond type and trust_remote_code) that later stages' keys hold",
    "METHODS": "the fine-tune methods (finetune_methods.METHODS) this kind takes",
    "PACKING": "whether its training examples can be packed into rows",
    "GENERATES": "whether it writes text (decoding settings apply to it)",
    "ADDED_MODULES": "module names a task adds on top of the checkpoint (never in its safetensors)",
    "AUTO_CLASS": "the transformers Auto class prepare_model loads it with",
    "HEAD": "whether prepare_model records a classification head for it (head.json)",
    "ZERO_SHOT_LABEL": "how figures and tables name its run without fine-tuning",
    "load": "(model_dir, spec, *, labels, seed, adapter, quantize, task_type) -> the model, for training or "
    "inference (task_type: the PEFT task type it trains with, which picks an encoder's head)",
}


def get(name):
    if name not in MODEL_KINDS:
        raise KeyError(f"unknown model kind '{name}' (known: {', '.join(MODEL_KINDS)})")
    return KINDS[name]
