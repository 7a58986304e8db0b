"""Encoder-decoder language models (AutoModelForSeq2SeqLM: T5, FLAN-T5, mT5, BART, Marian): the
source text goes into the encoder and the decoder writes the target. Fine-tuned with the model's own
cross-entropy on the target tokens (PEFT task type SEQ_2_SEQ_LM; loss.py), examples padded, never
packed (batching.collate_seq2seq)."""

STAGE_KEYS = ()
# qlora is left out (4-bit loading is written for causal LMs only); prompt and prefix tuning put
# their virtual tokens on the encoder side through PEFT's own seq2seq forward and generate
METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "full", "bottleneck")
PACKING = False
GENERATES = True
ADDED_MODULES = {"lm_head"}  # tied to the embeddings in T5 and BART: often not in the safetensors
AUTO_CLASS = "AutoModelForSeq2SeqLM"
HEAD = False
ZERO_SHOT_LABEL = "zero-shot"


def load(model_dir, spec, *, labels=None, seed=0, adapter=None, quantize=None, task_type="SEQ_2_SEQ_LM"):
    from .. import models

    if quantize:
        raise ValueError("encoder-decoder models are not loaded quantized")
    return models.load_seq2seq_lm(model_dir, spec, adapter=adapter)
