"""Metrics for generated text and the decoding settings that produce it.

- corpus_bleu: sacrebleu corpus BLEU (0-100), one reference per hypothesis.
- rouge_l: per-example ROUGE-L F-measure (rouge_score, Porter stemmer).
- bertscore_f1: per-example BERTScore F1 from a local encoder folder (works offline).
- perplexity: perplexity of each reference given its prompt under a causal LM; the loss
  counts only reference tokens (prompt and padding are labelled -100). Under an encoder-decoder
  model (T5, BART) the prompt is the encoder input and every token of the reference, tokenized as
  training labels are (with the tokenizer's EOS), is scored by the decoder.
- bootstrap_ci / bootstrap_corpus_bleu_ci: {"mean", "low", "high"}, a percentile bootstrap
  interval over examples; corpus BLEU is recomputed on every resample from per-sentence
  n-gram counts.
- validate_decoding / expand_grid / to_generate_kwargs: checks on a named decoding setting,
  a grid of settings expanded into named points (topk50_nb5_t1), and the kwargs for
  model.generate. Temperature 0 means greedy decoding.
"""

import math

import numpy as np
import torch

from .batching import collate, collate_seq2seq
from .loss import answer_token_nll
from .prompting import prompt_ids
from .stats import bootstrap_indices, interval


def _check_pairs(hyps, refs):
    hyps, refs = list(hyps), list(refs)
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        raise ValueError("no hypotheses to score")
    return hyps, refs


# -----------------------------------------------------------------------------
# BLEU, ROUGE-L, BERTScore


def corpus_bleu(hyps, refs) -> float:
    import sacrebleu

    hyps, refs = _check_pairs(hyps, refs)
    return float(sacrebleu.corpus_bleu(hyps, [refs]).score)


def rouge_l(hyps, refs) -> list:
    from rouge_score import rouge_scorer

    hyps, refs = _check_pairs(hyps, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [float(scorer.score(r, h)["rougeL"].fmeasure) for h, r in zip(hyps, refs)]  # score(target, prediction)


def bertscore_f1(hyps, refs, model_type, num_layers, batch_size=16, device="cpu") -> list:
    """model_type is a local model folder (e.g. the MiniLM one) or a hub id. num_layers must be
    given: bert_score only knows default layers for hub names in its own table. No baseline
    rescaling (bert_score has no baseline file for a local folder). Beware: bert_score picks
    T5EncoderModel for any model_type containing "t5", so keep that out of the folder path."""
    import bert_score

    hyps, refs = _check_pairs(hyps, refs)
    model_type = str(model_type)
    _, _, f1 = bert_score.score(
        hyps,
        refs,
        model_type=model_type,
        num_layers=num_layers,
        lang=None,
        batch_size=batch_size,
        device=device,
        rescale_with_baseline=False,
        idf=False,
        verbose=False,
    )
    return [float(x) for x in f1]


# -----------------------------------------------------------------------------
# perplexity


def _pad_id(tokenizer):
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("tokenizer has neither a pad token nor an eos token")
    return pad


def encode_prompt_reference(tokenizer, prompt, reference):
    """Token ids of prompt + reference and how many of them are prompt. The two are tokenized
    separately (the prompt as for generation: with the tokenizer's special tokens, e.g. BOS,
    unless a chat template already wrote the BOS; the reference without), so the
    prompt/reference boundary is exact. Put any separator in the prompt."""
    p = prompt_ids(tokenizer, prompt)
    r = tokenizer(reference, add_special_tokens=False)["input_ids"]
    return p + r, len(p)


def encode_source_target(tokenizer, prompt, reference):
    """An encoder-decoder example: {input_ids: the prompt as generation encodes it (with the
    tokenizer's special tokens), labels: the reference with the tokenizer's special tokens (T5's and
    BART's EOS)}, what a seq2seq fine-tune trains on."""
    return {"input_ids": prompt_ids(tokenizer, prompt), "labels": tokenizer(reference)["input_ids"]}


def _seq2seq_nll(model, encoded, batch_size, pad, dev):
    """Summed NLL and token count of every example's labels (encode_source_target), by the decoder."""
    nll, ntok = [], []
    for start in range(0, len(encoded), batch_size):
        t = {k: v.to(dev) for k, v in collate_seq2seq(encoded[start : start + batch_size], pad).items()}
        logits = model(**t).logits.float()
        keep = t["labels"] != -100
        tok_nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), t["labels"].clamp(min=0), reduction="none")
        nll += (tok_nll * keep).sum(1).tolist()
        ntok += keep.sum(1).tolist()
    return nll, ntok


@torch.no_grad()
def perplexity(model, tokenizer, prompts, references, batch_size=8) -> dict:
    """Per-example perplexity exp(mean NLL of the reference tokens) and the corpus perplexity
    exp(total NLL / total reference tokens). The first token of a sequence has no prediction, so
    with an empty prompt and no BOS the reference's first token is not scored. An encoder-decoder
    model scores every reference token, its EOS included (encode_source_target)."""
    prompts, references = _check_pairs(prompts, references)
    model.eval()
    dev = next(model.parameters()).device
    pad = _pad_id(tokenizer)
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):  # T5, BART (inference.is_encoder_decoder)
        encoded = [encode_source_target(tokenizer, p, r) for p, r in zip(prompts, references)]
        nll, ntok = _seq2seq_nll(model, encoded, batch_size, pad, dev)
        return _perplexities(nll, ntok)
    encoded = [encode_prompt_reference(tokenizer, p, r) for p, r in zip(prompts, references)]
    nll, ntok = [], []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        t = collate([{"input_ids": ids, "labels": [-100] * n_prompt + ids[n_prompt:]} for ids, n_prompt in batch], pad)
        t = {k: v.to(dev) for k, v in t.items()}
        tok_nll, rows = answer_token_nll(model, t)  # LM head on reference positions only
        nll += torch.zeros(len(batch), device=dev).index_add_(0, rows, tok_nll).tolist()
        ntok += (t["labels"][:, 1:] != -100).sum(1).tolist()
    return _perplexities(nll, ntok)


def _perplexities(nll, ntok):
    empty = [i for i, n in enumerate(ntok) if n == 0]
    if empty:
        raise ValueError(f"references {empty[:10]} have no tokens to score (empty reference?)")
    return {
        "per_example": [math.exp(loss / n) for loss, n in zip(nll, ntok)],
        "corpus": math.exp(sum(nll) / sum(ntok)),
        "n_tokens": int(sum(ntok)),
    }


# -----------------------------------------------------------------------------
# bootstrap confidence intervals

# the resampling primitives are shared with the classification intervals (stats.py)


def bootstrap_ci(per_example_values, n_resamples=1000, seed=0, alpha=0.05) -> dict:
    """{"mean", "low", "high"}: the sample mean and a percentile bootstrap (1 - alpha) interval."""
    values = np.asarray(per_example_values, dtype=float)
    idx = bootstrap_indices(len(values), n_resamples, seed)
    return interval(values.mean(), values[idx].mean(axis=1), alpha)


def bootstrap_corpus_bleu_ci(hyps, refs, n_resamples=200, seed=0, alpha=0.05) -> dict:
    """{"mean", "low", "high"}: corpus BLEU of the full set and a percentile bootstrap interval from
    corpus BLEU recomputed on resampled examples. Each resample sums sacrebleu's per-sentence
    n-gram counts (what sacrebleu's own significance tests do), which equals corpus_bleu on the
    resampled lists without re-tokenizing."""
    from sacrebleu.metrics import BLEU

    hyps, refs = _check_pairs(hyps, refs)
    bleu = BLEU()
    stats = np.array(bleu._extract_corpus_statistics(hyps, [refs]), dtype=np.int64)
    full = bleu._compute_score_from_stats(stats.sum(0).tolist()).score
    idx = bootstrap_indices(len(hyps), n_resamples, seed)
    scores = [bleu._compute_score_from_stats(stats[i].sum(0).tolist()).score for i in idx]
    return interval(full, scores, alpha)
