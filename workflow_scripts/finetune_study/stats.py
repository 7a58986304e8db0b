"""Uncertainty and significance for classification results.

- classification_bootstrap: accuracy, macro F1 and weighted F1 on the full data with percentile
  bootstrap intervals ({"mean", "low", "high"}; "mean" is the full-data point estimate). All
  resamples are scored at once: per-resample item multiplicities times one-hot gold/pred matrices
  give per-class TP / support / predicted counts.
- mcnemar: exact two-sided McNemar test for two systems scored on the same items.
- paired_bootstrap_diff: accuracy of system b minus system a, with a paired percentile interval.
- mean_sd / aggregate_seeds: mean and sample standard deviation over seeds.

Conventions follow metrics.classification_metrics: a pred of None (unparsed) or outside the label
set counts as wrong and is nobody's prediction; F1 uses zero_division=0 and weighted F1 weights
by gold support. bootstrap_indices and interval are the resampling primitives that
generation_metrics' intervals use too (same seed, same draws; numpy's linear quantiles).
"""

import math

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "weighted_f1")


def bootstrap_indices(n, n_resamples, seed):
    """[n_resamples, n] item indices drawn with replacement; the same seed gives the same draws."""
    if n < 1:
        raise ValueError("bootstrap needs at least one item")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def interval(mean, resampled, alpha):
    """{"mean", "low", "high"}: the point estimate and the percentile (1 - alpha) interval of the resamples."""
    low, high = np.quantile(resampled, [alpha / 2, 1 - alpha / 2])
    return {"mean": float(mean), "low": float(low), "high": float(high)}


def _interval(mean, resampled, level):
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return interval(mean, resampled, 1 - level)


def _multiplicities(idx):
    """[R, n] item index draws -> [R, n] how often each item is drawn in each resample."""
    r, n = idx.shape
    flat = (idx + n * np.arange(r)[:, None]).ravel()
    return np.bincount(flat, minlength=r * n).reshape(r, n).astype(float)


def _scores(weights, gold_1h, pred_1h, correct):
    """Metrics for each row of item weights [R, n]: dict of [R] arrays."""
    n = weights.sum(1)
    support = weights @ gold_1h  # [R, L] gold count per class
    predicted = weights @ pred_1h  # [R, L] predicted count per class
    tp = weights @ (gold_1h * correct[:, None])
    denom = support + predicted  # 2TP + FP + FN
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": (weights @ correct) / n,
        "macro_f1": f1.mean(1),
        "weighted_f1": (f1 * support).sum(1) / support.sum(1),
    }


def classification_bootstrap(gold, pred, labels, n_resamples=1000, seed=0, level=0.95) -> dict:
    """{"accuracy", "macro_f1", "weighted_f1"}, each {"mean", "low", "high"}: the full-data value and
    the percentile bootstrap interval over items resampled with replacement."""
    gold, pred, labels = list(gold), list(pred), list(labels)
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ValueError("no predictions to score")
    unknown = sorted({g for g in gold if g not in labels})
    if unknown:
        raise ValueError(f"gold labels {unknown} are not in the label set {labels}")
    index = {lab: i for i, lab in enumerate(labels)}
    g = np.array([index[x] for x in gold])
    p = np.array([index.get(x, len(labels)) if x is not None else len(labels) for x in pred])  # L = nobody's
    eye = np.eye(len(labels) + 1)[:, : len(labels)]
    gold_1h, pred_1h = eye[g], eye[p]
    correct = (g == p).astype(float)
    full = _scores(np.ones((1, len(g))), gold_1h, pred_1h, correct)
    boot = _scores(_multiplicities(bootstrap_indices(len(g), n_resamples, seed)), gold_1h, pred_1h, correct)
    return {k: _interval(full[k][0], boot[k], level) for k in CLASSIFICATION_METRICS}


def _paired(correct_a, correct_b):
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired correctness must be two 1-d sequences of one length, got {a.shape} and {b.shape}")
    return a, b


def mcnemar(correct_a, correct_b) -> dict:
    """Exact two-sided McNemar test on paired per-item correctness: b = items only system a gets
    right, c = items only system b gets right, p = min(1, 2 * P(X <= min(b, c))) with
    X ~ Binomial(b + c, 1/2); p = 1 when the systems never disagree. {"b", "c", "n", "p"}."""
    a, b_ = _paired(correct_a, correct_b)
    b = int((a & ~b_).sum())
    c = int((~a & b_).sum())
    m = b + c
    if m == 0:
        p = 1.0
    else:
        tail = sum(math.comb(m, i) for i in range(min(b, c) + 1))  # exact integers
        p = min(1.0, 2 * tail / 2**m)
    return {"b": b, "c": c, "n": int(len(a)), "p": float(p)}


def paired_bootstrap_diff(correct_a, correct_b, n_resamples=1000, seed=0, level=0.95) -> dict:
    """{"mean", "low", "high"}: accuracy of b minus accuracy of a on the same items, and its
    percentile bootstrap interval (items resampled, each keeping both systems' results)."""
    a, b = _paired(correct_a, correct_b)
    diff = b.astype(float) - a.astype(float)
    idx = bootstrap_indices(len(diff), n_resamples, seed)
    return _interval(diff.mean(), diff[idx].mean(1), level)


def mean_sd(values) -> dict:
    """{"mean", "sd", "n", "values"}: sd is the sample standard deviation (ddof=1), None for one value."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_sd of no values")
    arr = np.array(values)
    sd = float(arr.std(ddof=1)) if len(values) > 1 else None
    return {"mean": float(arr.mean()), "sd": sd, "n": len(values), "values": values}


def aggregate_seeds(metrics_list) -> dict:
    """Per-seed classification metrics dicts -> {metric: mean_sd} for accuracy, macro_f1, weighted_f1."""
    metrics_list = list(metrics_list)
    if not metrics_list:
        raise ValueError("no per-seed metrics to aggregate")
    return {k: mean_sd([m[k] for m in metrics_list]) for k in CLASSIFICATION_METRICS}
