"""Encoders with a classification head (a CLS pooler, or mean pooling for sentence-transformers
checkpoints; heads.py): one label per text, trained with cross-entropy over the head's logits."""

ADDED_MODULES = {"classifier", "score", "pre_classifier"}
STAGE_KEYS = ()
# prompt and prefix tuning and qlora are for causal LMs
METHODS = ("lora", "dora", "ia3", "full")
PACKING = False
GENERATES = False
AUTO_CLASS = "AutoModel"  # the bare encoder; its head is chosen at load time (heads.py)
HEAD = True  # prepare_model records which head fits the checkpoint (head.json)
ZERO_SHOT_LABEL = "untrained head"


def load(model_dir, spec, *, labels=None, seed=0, adapter=None, quantize=None):
    from .. import models

    if quantize:
        raise ValueError("encoders are not loaded quantized")
    return models.load_classifier(model_dir, spec, labels, seed=seed, adapter=adapter)
