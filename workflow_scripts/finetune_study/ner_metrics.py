"""Entity-level scores of named-entity predictions, with bootstrap intervals over sentences.

Two ways to match an entity:
- strict spans (strict_counts): a predicted entity is right when its type, start and end all equal
  a gold entity's, entities read from IOB2 tags by conll.spans (seqeval's strict mode, scheme=IOB2;
  seqeval_scores computes the same with seqeval itself). For taggers only.
- (type, text) pairs (pair_counts): per sentence, the multiset of (type, normalized text) pairs
  predicted against the gold one; a pair predicted twice matches at most as many gold copies. A
  prompted LLM answers with pairs, without positions; tag_pairs turns a tagger's tags into pairs
  so that every run can be scored this way too.

Both give per-sentence counts, an int array [n_sentences, len(types) + 1, 3] of (true positives,
predicted, gold) per type; the last row holds predictions of a type not in `types` (nobody's gold,
so never right: they lower precision only). scores micro-averages over all rows (zero_division 0),
bootstrap resamples sentences (percentile intervals; "mean" is the full-data value), and
paired_bootstrap gives the F1 of one system minus another's on the same resampled sentences.
"""

import warnings
from collections import Counter

import numpy as np

from . import conll, stats
from .conll import tag_pairs  # noqa: F401 (the pairs a tagger is scored on, part of this module's interface)

TP, PREDICTED, GOLD = 0, 1, 2  # the last axis of the counts


def _index(types):
    return {t: i for i, t in enumerate(types)}


def _gold_row(index, kind, i):
    if kind not in index:
        raise ValueError(f"sentence {i}: gold entity type {kind!r} is not one of the types {list(index)}")
    return index[kind]


def _same_length(gold, pred):
    if len(gold) != len(pred):
        raise ValueError(f"{len(gold)} gold sentences but {len(pred)} predicted")


def strict_counts(gold_tags, pred_tags, types):
    """[n, len(types) + 1, 3] (tp, predicted, gold) per sentence and type, exact (type, start, end)
    span matches; row len(types) counts predicted spans of other types."""
    _same_length(gold_tags, pred_tags)
    index, other = _index(types), len(types)
    counts = np.zeros((len(gold_tags), len(types) + 1, 3), dtype=np.int64)
    for i, (gold, pred) in enumerate(zip(gold_tags, pred_tags)):
        if len(gold) != len(pred):
            raise ValueError(f"sentence {i}: {len(gold)} gold tags but {len(pred)} predicted")
        g, p = set(conll.spans(gold)), set(conll.spans(pred))
        for kind, _, _ in g:
            counts[i, _gold_row(index, kind, i), GOLD] += 1
        for kind, _, _ in p:
            counts[i, index.get(kind, other), PREDICTED] += 1
        for kind, _, _ in g & p:
            counts[i, index[kind], TP] += 1
    return counts


def normalize_text(text):
    """Lowercased, runs of whitespace made one space, stripped."""
    return " ".join(text.lower().split())


def pair_counts(gold_pairs, pred_pairs, types):
    """[n, len(types) + 1, 3] as strict_counts, for lists of (type, text) pairs per sentence matched
    as multisets of (type, normalize_text(text))."""
    _same_length(gold_pairs, pred_pairs)
    index, other = _index(types), len(types)
    counts = np.zeros((len(gold_pairs), len(types) + 1, 3), dtype=np.int64)
    for i, (gold, pred) in enumerate(zip(gold_pairs, pred_pairs)):
        g = Counter((kind, normalize_text(text)) for kind, text in gold)
        p = Counter((kind, normalize_text(text)) for kind, text in pred)
        for (kind, _), c in g.items():
            counts[i, _gold_row(index, kind, i), GOLD] += c
        for (kind, _), c in p.items():
            counts[i, index.get(kind, other), PREDICTED] += c
        for (kind, _), c in (g & p).items():
            counts[i, index[kind], TP] += c
    return counts


def _divide(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.divide(a, b, out=np.zeros(np.broadcast(a, b).shape), where=b > 0)


def _micro(totals):
    """[..., 3] (tp, predicted, gold) totals -> {"precision", "recall", "f1"}, arrays of [...]."""
    tp, pred, gold = totals[..., TP], totals[..., PREDICTED], totals[..., GOLD]
    return {"precision": _divide(tp, pred), "recall": _divide(tp, gold), "f1": _divide(2 * tp, pred + gold)}


def _check(counts, types=None):
    counts = np.asarray(counts)
    if counts.ndim != 3 or counts.shape[2] != 3 or (types is not None and counts.shape[1] != len(types) + 1):
        want = f"[n, {len(types) + 1}, 3]" if types is not None else "[n, types + 1, 3]"
        raise ValueError(f"counts must be an array {want}, got shape {counts.shape}")
    return counts


def scores(counts, types):
    """Micro-averaged precision, recall, F1 over all types (other types' predictions count as
    predicted), with totals, and per type {"precision", "recall", "f1", "support"}."""
    counts = _check(counts, types)
    per_type_totals = counts.sum(0)  # [len(types) + 1, 3]
    totals = per_type_totals.sum(0)
    out = {k: float(v) for k, v in _micro(totals).items()}
    out["per_type"] = {}
    for j, t in enumerate(types):
        m = _micro(per_type_totals[j])
        out["per_type"][t] = {**{k: float(v) for k, v in m.items()}, "support": int(per_type_totals[j, GOLD])}
    out.update(true_positives=int(totals[TP]), predicted=int(totals[PREDICTED]), gold=int(totals[GOLD]))
    return out


def _multiplicities(n, n_resamples, seed):
    """[R, n]: how often each sentence is drawn in each resample (stats.bootstrap_indices' draws)."""
    idx = stats.bootstrap_indices(n, n_resamples, seed)
    flat = (idx + n * np.arange(n_resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=n_resamples * n).reshape(n_resamples, n)


def _alpha(level):
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return 1 - level


def bootstrap(counts, n_resamples=1000, seed=0, level=0.95):
    """{"f1", "precision", "recall"}, each {"mean", "low", "high"}: the micro value on all sentences
    and the percentile interval over sentences resampled with replacement."""
    alpha = _alpha(level)
    per_sentence = _check(counts).sum(1)  # [n, 3]
    full = _micro(per_sentence.sum(0))
    boot = _micro(_multiplicities(len(per_sentence), n_resamples, seed) @ per_sentence)
    return {k: stats.interval(full[k], boot[k], alpha) for k in ("f1", "precision", "recall")}


def paired_bootstrap(counts_a, counts_b, n_resamples=1000, seed=0, level=0.95):
    """{"mean", "low", "high", "p"}: micro F1 of b minus micro F1 of a on the same sentences, its
    percentile interval over resampled sentences (both systems on the same draws), and the two-sided
    bootstrap p = min(1, 2 * min(share of differences <= 0, share >= 0))."""
    alpha = _alpha(level)
    a, b = _check(counts_a).sum(1), _check(counts_b).sum(1)
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs the same sentences, got {len(a)} and {len(b)}")
    weights = _multiplicities(len(a), n_resamples, seed)
    diff = _micro(weights @ b)["f1"] - _micro(weights @ a)["f1"]
    full = _micro(b.sum(0))["f1"] - _micro(a.sum(0))["f1"]
    p = min(1.0, 2 * min(float(np.mean(diff <= 0)), float(np.mean(diff >= 0))))
    return {**stats.interval(full, diff, alpha), "p": p}


def _seqeval_row(r):
    return {
        "precision": float(r["precision"]),
        "recall": float(r["recall"]),
        "f1": float(r["f1-score"]),
        "support": int(r["support"]),
    }


def seqeval_scores(gold_tags, pred_tags):
    """Micro precision, recall, F1 and per type {"precision", "recall", "f1", "support"}, computed by
    seqeval itself in strict IOB2 mode (per type: every type of the gold or predicted tags)."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    gold, pred = [list(t) for t in gold_tags], [list(t) for t in pred_tags]
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    with warnings.catch_warnings():  # no entities at all: numpy warns on the macro average of no types
        warnings.simplefilter("ignore", RuntimeWarning)
        report = classification_report(gold, pred, output_dict=True, **kw)
    per_type = {t: _seqeval_row(r) for t, r in report.items() if not t.endswith(" avg")}
    return {
        "precision": float(precision_score(gold, pred, **kw)),
        "recall": float(recall_score(gold, pred, **kw)),
        "f1": float(f1_score(gold, pred, **kw)),
        "per_type": per_type,
    }
