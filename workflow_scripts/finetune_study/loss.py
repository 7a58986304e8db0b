"""Training loss: cross-entropy on the answer tokens only, the LM head run where it is needed.

- answer_token_nll: NLL of every answer token (label != -100) of a padded or packed batch. The LM
  head runs on those positions only, in checkpointed chunks of LOSS_CHUNK, so the full-vocabulary
  logits of the prompt are never computed and those of long answers never held all at once.
  Reference perplexity (generation_metrics) uses it too. With training.kernels: liger the LM head
  and the cross-entropy are one fused kernel instead (Liger's fused linear cross-entropy, set on
  the model by training_options), which never materialises the logits at all. A prompt-learning model's virtual tokens
  (prompt or prefix tuning) are put before the batch here (adapters.with_virtual_tokens), as in
  inference, and their positions are dropped from the output.
- batch_loss: the loss of the task type a fine-tune trains (LOSSES, keyed by PEFT's task type, as
  finetune.py chooses it from the task and the model kind): that mean for causal LMs (CAUSAL_LM),
  the model's own cross-entropy for encoder classifiers (SEQ_CLS) and token-classification heads
  (TOKEN_CLS: over each word's first sub-word), and an encoder-decoder model's own cross-entropy
  on its decoder's target tokens (SEQ_2_SEQ_LM: labels -100 on padding; the model shifts the labels
  right into its decoder inputs itself). It is never inferred from the labels' shape; a batch
  whose labels do not have the shape its loss reads is an error.
- autocast: the mixed precision every loss is computed under (training and its auto-checkpointing
  measurement): matmuls in the model's resolved dtype, float32 master weights and loss.
"""

import torch

from . import adapters


def autocast(device, compute_dtype):
    """Mixed precision: matmuls in compute_dtype (the model's resolved dtype), float32 master weights
    and loss; a no-op in float32."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=compute_dtype, enabled=compute_dtype != torch.float32)


LOSS_CHUNK = 2048  # answer positions per LM-head chunk


def _head_nll(head, hidden, targets, cap):
    logits = head(hidden).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


def answer_token_nll(model, batch, chunk=LOSS_CHUNK):
    """NLL of every answer token (label != -100) of a padded (attention_mask) or packed
    (position_ids) batch, and the batch row of each. The LM head runs on those positions only,
    `chunk` at a time; with more than one chunk each chunk's logits are recomputed in the backward
    pass (checkpointing), so memory holds one chunk's fp32 logits, not every answer token's.
    Models without a .model/.lm_head split get their full logits instead."""
    from torch.utils.checkpoint import checkpoint

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = getattr(base, "model", None), getattr(base, "lm_head", None)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    keep = targets != -100
    rows = keep.nonzero()[:, 0]
    shift, run = 0, model
    if adapters.virtual_tokens(model):  # prompt/prefix tuning: the virtual tokens go first, their outputs are dropped
        inputs, shift = adapters.with_virtual_tokens(model, inputs)
        run = base
    # use_cache=False: no KV cache here, and transformers only reads packed position ids as
    # sequence boundaries when there is none
    if backbone is None or head is None:
        logits = run(**inputs, use_cache=False).logits[:, shift:][:, :-1][keep]
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none"), rows
    hidden = backbone(**inputs, use_cache=False).last_hidden_state[:, shift:][:, :-1][keep]
    targets, cap = targets[keep], getattr(base.config, "final_logit_softcapping", None)
    fused = getattr(base, "fused_linear_cross_entropy", None)  # training.kernels: liger (training_options)
    if fused is not None:
        return fused(head.weight, hidden, targets, head.bias), rows
    if len(targets) <= chunk:
        return _head_nll(head, hidden, targets, cap), rows
    return torch.cat(
        [
            checkpoint(_head_nll, head, hidden[i : i + chunk], targets[i : i + chunk], cap, use_reentrant=False)
            for i in range(0, len(targets), chunk)
        ]
    ), rows


def causal_answer_loss(model, batch, chunk=LOSS_CHUNK):
    """Mean cross-entropy on the answer tokens only (answer_token_nll): the vocabulary projection
    of every prompt token is skipped, so less compute and memory."""
    nll, _ = answer_token_nll(model, batch, chunk)
    return nll.sum() / max(len(nll), 1)


def sequence_classification_loss(model, batch):
    """The classifier's own cross-entropy over one label per example."""
    return model(**batch).loss


def token_classification_loss(model, batch):
    """The token head's own cross-entropy over the tagged sub-words (labels -100 elsewhere)."""
    return model(**batch).loss


def seq2seq_loss(model, batch):
    """The encoder-decoder model's own mean cross-entropy over the target tokens (labels != -100).
    A prompt- or prefix-tuned model's virtual tokens go in through PEFT's seq2seq forward."""
    return model(**batch).loss


def _causal_targets(labels):
    return int((labels[:, 1:] != -100).sum())


def _one_per_example(labels):
    return labels.numel()


def _tagged_tokens(labels):
    return int((labels != -100).sum())


# PEFT task type -> (loss, what it averages over, the labels' dimensions: per token or per example)
LOSSES = {
    "CAUSAL_LM": (causal_answer_loss, _causal_targets, 2),
    "SEQ_CLS": (sequence_classification_loss, _one_per_example, 1),
    "TOKEN_CLS": (token_classification_loss, _tagged_tokens, 2),
    "SEQ_2_SEQ_LM": (seq2seq_loss, _tagged_tokens, 2),
}


def _loss_of(task_type, batch):
    if task_type not in LOSSES:
        raise ValueError(f"no training loss for task type {task_type!r} (known: {', '.join(LOSSES)})")
    loss, count, dims = LOSSES[task_type]
    if batch["labels"].dim() != dims:
        raise ValueError(f"{task_type} loss reads {dims}-D labels, got shape {tuple(batch['labels'].shape)}")
    return loss, count


def batch_loss(model, batch, task_type):
    """The training loss of `task_type` (LOSSES) on one batch."""
    return _loss_of(task_type, batch)[0](model, batch)


def n_loss_tokens(batch, task_type):
    """How many targets batch_loss averages over: answer tokens (CAUSAL_LM), examples (SEQ_CLS),
    tagged sub-words (TOKEN_CLS) or target tokens (SEQ_2_SEQ_LM)."""
    return _loss_of(task_type, batch)[1](batch["labels"])
