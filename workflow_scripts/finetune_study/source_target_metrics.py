"""Metrics for "source -> target" tasks (summarization, translation) with one or more references per item.

Every item has one hypothesis (str) and a list of 1+ references (list of str); the number of
references may differ between items.

- sentences: split a text into sentences on newlines and on whitespace after . ! ? (and the
  Arabic-script ؟ and ۔); used for ROUGE-Lsum and the lead baseline.
- rouge_scores: per-item ROUGE-1/2/L/Lsum F-measure (rouge_score, Porter stemmer), the max over
  the item's references, each metric on its own (rouge_score's score_multi).
- bleu_chrf: sacreBLEU corpus BLEU and chrF++ with a variable number of references (missing
  references are None in sacrebleu's reference streams), and their signature strings.
- sufficient_stats / bootstrap_corpus: per-item sacrebleu statistics, and a percentile bootstrap
  of corpus BLEU / chrF++ recomputed from the summed statistics of each resample.
- bootstrap_mean: percentile bootstrap of a per-item mean (generation_metrics.bootstrap_ci).
- paired_bootstrap / paired_bootstrap_corpus / paired_bootstrap_mean: two systems on the same
  items, {"diff", "low", "high", "p"} with diff = a - b and ner_metrics' two-sided bootstrap p.
- bertscore_f1_multi: per-item BERTScore F1, the max over the item's references.
- copy_baseline / lead_baseline: the source itself, and its first sentences up to the mean
  reference length.
- bleu_tokenizer: the sacreBLEU tokenizer for a target language (13a unless the table says otherwise).

Intervals are {"mean", "low", "high"} ("mean" is the full-data point estimate) and use
stats.bootstrap_indices' draws, so one seed gives the same resamples for every metric here and
in generation_metrics.

Beware: rouge_score's default tokenizer keeps only [a-z0-9] and drops every other character, so
ROUGE of non-Latin text (Persian, Arabic, ...) is 0; use BLEU / chrF++ / BERTScore for those.
"""

import numpy as np

from .generation_metrics import bertscore_f1, bootstrap_ci
from .stats import _multiplicities, bootstrap_indices, interval
from .target_baselines import copy_baseline, lead_baseline, sentences  # noqa: F401 (callers use them here)
from .tasks.source_target import BLEU_TOKENIZE, bleu_tokenizer  # noqa: F401 (the table lives with the task type)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
CORPUS_METRICS = ("bleu", "chrf")


def _check_items(hyps, refs_list):
    """Lists of hypotheses and of reference lists (each a non-empty list of strings)."""
    hyps = list(hyps)
    refs_list = [[refs] if isinstance(refs, str) else list(refs) for refs in refs_list]
    if len(hyps) != len(refs_list):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs_list)} reference lists")
    if not hyps:
        raise ValueError("no hypotheses to score")
    for i, refs in enumerate(refs_list):
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"item {i} needs a non-empty list of reference strings, got {refs!r}")
    if not all(isinstance(h, str) for h in hyps):
        raise ValueError("every hypothesis must be a string")
    return hyps, refs_list


# -----------------------------------------------------------------------------
# sentences, ROUGE


# -----------------------------------------------------------------------------
# BLEU, chrF++: corpus scores, per-item statistics, bootstrap


def rouge_scores(hyps, refs_list) -> dict:
    """{"rouge1", "rouge2", "rougeL", "rougeLsum"}: per-item F-measure lists. For each metric on its
    own, the item's score is that of its best reference by F-measure (rouge_score's score_multi;
    ties go to the first reference). Texts are scored with their sentences joined by "\\n": that is
    where rougeLsum splits, and the other metrics' tokenizer treats the newline as a space."""
    from rouge_score import rouge_scorer

    hyps, refs_list = _check_items(hyps, refs_list)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
    out = {k: [] for k in ROUGE_TYPES}
    for hyp, refs in zip(hyps, refs_list):
        best = scorer.score_multi(["\n".join(sentences(r)) for r in refs], "\n".join(sentences(hyp)))
        for k in ROUGE_TYPES:
            out[k].append(float(best[k].fmeasure))
    return out


def reference_streams(refs_list) -> list:
    """sacrebleu's reference streams: stream j holds every item's j-th reference, None where an item
    has fewer (sacrebleu drops None references of an item; an empty string would count as one)."""
    k = max(len(refs) for refs in refs_list)
    return [[refs[j] if j < len(refs) else None for refs in refs_list] for j in range(k)]


def _metric(metric_name, tokenize):
    from sacrebleu.metrics import BLEU, CHRF

    if metric_name == "bleu":
        return BLEU(tokenize=tokenize)
    if metric_name == "chrf":
        return CHRF(word_order=2)  # chrF++; character-based, so tokenize does not apply
    raise ValueError(f"unknown corpus metric {metric_name!r}, expected one of {CORPUS_METRICS}")


def bleu_chrf(hyps, refs_list, tokenize="13a") -> dict:
    """{"bleu", "chrf", "bleu_signature", "chrf_signature"}: sacreBLEU corpus BLEU and chrF++ (0-100);
    the signatures say nrefs:var when items have different numbers of references."""
    hyps, refs_list = _check_items(hyps, refs_list)
    streams = reference_streams(refs_list)
    out = {}
    for name in CORPUS_METRICS:
        metric = _metric(name, tokenize)
        out[name] = float(metric.corpus_score(hyps, streams).score)
        out[f"{name}_signature"] = str(metric.get_signature())
    return out


def sufficient_stats(metric_name, hyps, refs_list, tokenize="13a"):
    """(stats [n, k] int64, score): per-item sacrebleu statistics (BLEU: lengths and n-gram counts
    against the item's references; chrF++: those of the item's best reference) and the function
    from summed statistics [k] to the corpus score; score(stats.sum(0)) is the corpus score."""
    hyps, refs_list = _check_items(hyps, refs_list)
    metric = _metric(metric_name, tokenize)
    per_item = np.array(metric._extract_corpus_statistics(hyps, reference_streams(refs_list)), dtype=np.int64)

    def score(summed):
        return float(metric._compute_score_from_stats([int(x) for x in summed]).score)

    return per_item, score


def _weighted_sums(weights, per_item):
    """[R, k]: per-item statistics summed with each resample's multiplicities; integer counts stay
    integers (exact: float64 holds these sums exactly)."""
    sums = weights @ per_item
    return np.rint(sums).astype(per_item.dtype) if np.issubdtype(per_item.dtype, np.integer) else sums


def _resampled_sums(per_item, n_resamples, seed):
    """[R, k]: summed statistics of each resample of the items."""
    return _weighted_sums(_multiplicities(bootstrap_indices(len(per_item), n_resamples, seed)), per_item)


def bootstrap_corpus(metric_name, hyps, refs_list, tokenize="13a", n_resamples=1000, seed=0, alpha=0.05) -> dict:
    """{"mean", "low", "high"}: corpus BLEU or chrF++ of the full set and the percentile interval of
    the corpus score recomputed on items resampled with replacement (from summed per-item
    statistics, which equals scoring the resampled lists and needs no re-tokenizing)."""
    per_item, score = sufficient_stats(metric_name, hyps, refs_list, tokenize)
    resampled = [score(s) for s in _resampled_sums(per_item, n_resamples, seed)]
    return interval(score(per_item.sum(0)), resampled, alpha)


def bootstrap_mean(values, n_resamples=1000, seed=0, alpha=0.05) -> dict:
    """{"mean", "low", "high"} of a per-item metric (ROUGE, BERTScore): generation_metrics.bootstrap_ci."""
    return bootstrap_ci(values, n_resamples=n_resamples, seed=seed, alpha=alpha)


# -----------------------------------------------------------------------------
# paired bootstrap: two systems on the same items


def _paired_result(full, diffs, alpha):
    """{"diff", "low", "high", "p"} with ner_metrics.paired_bootstrap's two-sided p:
    p = min(1, 2 * min(share of resampled differences <= 0, share >= 0))."""
    diffs = np.asarray(diffs, dtype=float)
    p = min(1.0, 2 * min(float(np.mean(diffs <= 0)), float(np.mean(diffs >= 0))))
    out = interval(full, diffs, alpha)
    return {"diff": out["mean"], "low": out["low"], "high": out["high"], "p": p}


def paired_bootstrap(stats_a, stats_b, score, n_resamples=1000, seed=0, alpha=0.05) -> dict:
    """{"diff", "low", "high", "p"}: score(a) - score(b) on all items, the percentile (1 - alpha)
    interval of the difference over resampled items (both systems on the same draws), and the
    two-sided bootstrap p (see _paired_result); a system against itself gets diff 0 and p = 1.
    stats_a, stats_b: per-item statistics [n, k] of the two systems on the same items; score: summed
    statistics [k] -> the metric (sufficient_stats gives both for BLEU and chrF++)."""
    a, b = np.asarray(stats_a), np.asarray(stats_b)
    if a.shape != b.shape or a.ndim != 2 or len(a) == 0:
        raise ValueError(f"paired bootstrap needs [n, k] statistics of the same items, got {a.shape} and {b.shape}")
    weights = _multiplicities(bootstrap_indices(len(a), n_resamples, seed))
    diffs = [score(x) - score(y) for x, y in zip(_weighted_sums(weights, a), _weighted_sums(weights, b))]
    return _paired_result(score(a.sum(0)) - score(b.sum(0)), diffs, alpha)


def paired_bootstrap_corpus(
    metric_name, hyps_a, hyps_b, refs_list, tokenize="13a", n_resamples=1000, seed=0, alpha=0.05
) -> dict:
    """paired_bootstrap of corpus BLEU or chrF++: system a minus system b on the same references."""
    stats_a, score = sufficient_stats(metric_name, hyps_a, refs_list, tokenize)
    stats_b, _ = sufficient_stats(metric_name, hyps_b, refs_list, tokenize)
    return paired_bootstrap(stats_a, stats_b, score, n_resamples, seed, alpha)


def paired_bootstrap_mean(values_a, values_b, n_resamples=1000, seed=0, alpha=0.05) -> dict:
    """paired_bootstrap of a per-item mean (ROUGE, BERTScore): mean(a) - mean(b) on the same items,
    computed on the resampled values directly (same draws as paired_bootstrap)."""
    a, b = np.asarray(values_a, dtype=float), np.asarray(values_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(
            f"paired values must be two non-empty 1-d sequences of one length, got {a.shape} and {b.shape}"
        )
    idx = bootstrap_indices(len(a), n_resamples, seed)
    return _paired_result(a.mean() - b.mean(), a[idx].mean(1) - b[idx].mean(1), alpha)


# -----------------------------------------------------------------------------
# BERTScore


def bertscore_f1_multi(hyps, refs_list, model_type, num_layers, batch_size=16, device="cpu") -> list:
    """Per-item BERTScore F1, the max over the item's references: bert_score.score takes a list of
    reference lists (of any lengths), scores every (hypothesis, reference) pair and keeps the max of
    P, R and F1 separately. Same settings and pitfalls as generation_metrics.bertscore_f1 (local
    folder, num_layers required, no baseline rescaling, no "t5" in the folder path)."""

    hyps, refs_list = _check_items(hyps, refs_list)
    # bert_score.score takes a list of reference lists as it takes a list of references
    return bertscore_f1(hyps, refs_list, model_type, num_layers, batch_size=batch_size, device=device)
