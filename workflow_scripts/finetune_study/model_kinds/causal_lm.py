"""Causal language models (AutoModelForCausalLM): they answer prompts, by generating or by the
likelihood of each label, and are fine-tuned with the loss on the answer tokens."""

from ..finetune_methods import FINETUNE_METHODS

STAGE_KEYS = ("chat_template",)
METHODS = FINETUNE_METHODS
PACKING = True
GENERATES = True
ADDED_MODULES = {"lm_head"}
AUTO_CLASS = "AutoModelForCausalLM"  # how prepare_model loads and saves it
HEAD = False  # no classification head to detect
ZERO_SHOT_LABEL = "zero-shot"


def load(model_dir, spec, *, labels=None, seed=0, adapter=None, quantize=None, task_type="CAUSAL_LM"):
    from .. import models

    return models.load_causal_lm(model_dir, spec, adapter=adapter, quantize=quantize)
