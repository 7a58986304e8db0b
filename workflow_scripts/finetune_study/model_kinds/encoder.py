"""Encoders with a head: a classification head for one label per text (a CLS pooler, or mean pooling
for sentence-transformers checkpoints; heads.py), or a token-classification head for one tag per
word (task_type TOKEN_CLS: a Linear layer on every sub-word). Trained with cross-entropy over the
head's logits."""

ADDED_MODULES = {"classifier", "score", "pre_classifier"}  # heads of both kinds
STAGE_KEYS = ()
# prompt and prefix tuning and qlora are for causal LMs
METHODS = ("lora", "dora", "ia3", "full", "bottleneck")
PACKING = False
GENERATES = False
AUTO_CLASS = "AutoModel"  # the bare encoder; its head is chosen at load time (heads.py)
HEAD = True  # prepare_model records which head fits the checkpoint (head.json)
ZERO_SHOT_LABEL = "untrained head"


def load(model_dir, spec, *, labels=None, seed=0, adapter=None, quantize=None, task_type="SEQ_CLS"):
    from .. import models

    if quantize:
        raise ValueError("encoders are not loaded quantized")
    if task_type == "TOKEN_CLS":
        return models.load_token_classifier(model_dir, spec, labels, seed=seed, adapter=adapter)
    return models.load_classifier(model_dir, spec, labels, seed=seed, adapter=adapter)
