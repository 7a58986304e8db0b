"""Entity-level NER scores (finetune_study.ner_metrics): strict span and (type, text) pair counts,
micro and per-type scores, and bootstrap intervals, each checked against hand-worked numbers,
seqeval called directly, a plain loop over the same resamples, or a property."""

import random

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from finetune_study import ner_metrics, stats

TYPES = ["LOC", "PER"]

# Two sentences: 4 gold entities, 3 predicted, 2 right.
GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O", "B-PER", "I-PER"]]
PRED = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "O", "B-PER", "O"]]  # PER 2-3 has the wrong end


def seqeval_direct(gold, pred):
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    report = classification_report(gold, pred, output_dict=True, **kw)
    return {
        "precision": precision_score(gold, pred, **kw),
        "recall": recall_score(gold, pred, **kw),
        "f1": f1_score(gold, pred, **kw),
        "per_type": {t: r for t, r in report.items() if not t.endswith(" avg")},
    }


# -----------------------------------------------------------------------------
# strict spans


def test_strict_counts_by_hand():
    counts = ner_metrics.strict_counts(GOLD, PRED, TYPES)
    # (tp, predicted, gold) for LOC, PER, other types
    assert counts.tolist() == [
        [[0, 0, 1], [1, 1, 1], [0, 0, 0]],
        [[1, 1, 1], [0, 1, 1], [0, 0, 0]],
    ]
    s = ner_metrics.scores(counts, TYPES)
    assert (s["true_positives"], s["predicted"], s["gold"]) == (2, 3, 4)
    assert s["precision"] == pytest.approx(2 / 3, abs=1e-15)
    assert s["recall"] == pytest.approx(1 / 2, abs=1e-15)
    assert s["f1"] == pytest.approx(4 / 7, abs=1e-15)
    assert s["per_type"]["PER"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert s["per_type"]["LOC"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert list(s["per_type"]) == TYPES


def test_other_types_lower_precision_only():
    gold, pred = [*GOLD, ["O", "O"]], [*PRED, ["B-MISC", "I-MISC"]]
    counts = ner_metrics.strict_counts(gold, pred, TYPES)
    assert counts[2].tolist() == [[0, 0, 0], [0, 0, 0], [0, 1, 0]]
    s = ner_metrics.scores(counts, TYPES)
    assert (s["true_positives"], s["predicted"], s["gold"]) == (2, 4, 4)
    assert s["precision"] == pytest.approx(2 / 4, abs=1e-15)  # was 2/3
    assert s["recall"] == pytest.approx(1 / 2, abs=1e-15)  # unchanged
    assert s["f1"] == pytest.approx(4 / 8, abs=1e-15)
    assert s["per_type"] == ner_metrics.scores(ner_metrics.strict_counts(GOLD, PRED, TYPES), TYPES)["per_type"]
    direct = seqeval_direct(gold, pred)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx(
        (direct["precision"], direct["recall"], direct["f1"])
    )


def test_strict_counts_bad_input():
    with pytest.raises(ValueError, match="sentence 1"):
        ner_metrics.strict_counts(GOLD, [PRED[0], PRED[1][:3]], TYPES)
    with pytest.raises(ValueError, match="sentence 0.*'PER'"):
        ner_metrics.strict_counts(GOLD, PRED, ["LOC"])  # a gold type that is not listed
    with pytest.raises(ValueError):
        ner_metrics.strict_counts(GOLD, PRED[:1], TYPES)


def test_no_predictions_scores_zero():
    s = ner_metrics.scores(ner_metrics.strict_counts(GOLD, [["O"] * 4, ["O"] * 4], TYPES), TYPES)
    assert (s["precision"], s["recall"], s["f1"], s["predicted"], s["gold"]) == (0.0, 0.0, 0.0, 0, 4)


def random_tags(rng, n, vocab):
    return [rng.choice(vocab) for _ in range(n)]


def test_scores_equal_seqeval_strict_on_random_tags():
    """Random gold and predictions, invalid IOB2 included (stray I- tags, I- of another type after
    B-), predictions with a type outside TYPES: scores(strict_counts) is seqeval's strict mode."""
    rng = random.Random(1)
    types = ["LOC", "PER", "creative-work"]
    gold_vocab = ["O", "O", "O"] + [f"{p}-{t}" for t in types for p in "BI"]
    pred_vocab = [*gold_vocab, "B-MISC", "I-MISC"]
    gold, pred = [], []
    for _ in range(500):
        g = random_tags(rng, rng.randint(0, 10), gold_vocab)
        p = [rng.choice(pred_vocab) if rng.random() < 0.3 else t for t in g]  # mostly right
        gold.append(g)
        pred.append(p)
    s = ner_metrics.scores(ner_metrics.strict_counts(gold, pred, types), types)
    direct = seqeval_direct(gold, pred)
    assert s["true_positives"] > 100 and s["predicted"] > s["true_positives"]
    for k in ("precision", "recall", "f1"):
        assert s[k] == pytest.approx(direct[k], abs=1e-12)
    for t in types:
        mine, theirs = s["per_type"][t], direct["per_type"][t]
        assert mine["support"] == theirs["support"]
        for k, theirs_k in (("precision", "precision"), ("recall", "recall"), ("f1", "f1-score")):
            assert mine[k] == pytest.approx(theirs[theirs_k], abs=1e-12)
    wrapped = ner_metrics.seqeval_scores(gold, pred)
    for k in ("precision", "recall", "f1"):
        assert wrapped[k] == pytest.approx(direct[k], abs=1e-15)
    assert sorted(wrapped["per_type"]) == ["LOC", "MISC", "PER", "creative-work"]
    assert wrapped["per_type"]["PER"]["f1"] == pytest.approx(direct["per_type"]["PER"]["f1-score"], abs=1e-15)
    assert wrapped["per_type"]["MISC"]["support"] == 0


def test_seqeval_scores_by_hand():
    s = ner_metrics.seqeval_scores(GOLD, PRED)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((2 / 3, 1 / 2, 4 / 7), abs=1e-12)
    assert s["per_type"]["LOC"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert ner_metrics.seqeval_scores([["O"]], [["O"]])["f1"] == 0.0  # zero_division 0, no warning needed


# -----------------------------------------------------------------------------
# (type, text) pairs


def test_normalize_text():
    assert ner_metrics.normalize_text("  Empire\tState \n BUILDING ") == "empire state building"
    assert ner_metrics.normalize_text("") == ""


def test_tag_pairs():
    tokens = ["Paul", "Walker", "in", "New", "York", "I-guess"]
    tags = ["B-person", "I-person", "O", "B-location", "I-location", "I-person"]
    assert ner_metrics.tag_pairs(tokens, tags) == [("person", "Paul Walker"), ("location", "New York")]
    assert ner_metrics.tag_pairs(["x", "y"], ["I-person", "O"]) == []  # a stray I- is no entity


def test_pair_counts_by_hand_duplicates_case_and_spaces():
    types = ["location", "person"]
    gold = [
        [("person", "Paul Walker"), ("person", "paul walker"), ("location", "LA")],
        [("person", "Paris")],
    ]
    pred = [
        [
            ("person", "PAUL  walker "),
            ("person", "Paul Walker"),
            ("person", "Paul Walker"),  # a third copy: only two gold copies to match
            ("location", "L.A."),  # other text
            ("product", "iPhone"),  # a type not in types
        ],
        [("location", "paris")],  # right text, wrong type
    ]
    counts = ner_metrics.pair_counts(gold, pred, types)
    assert counts.tolist() == [
        [[0, 1, 1], [2, 3, 2], [0, 1, 0]],
        [[0, 1, 0], [0, 0, 1], [0, 0, 0]],
    ]
    s = ner_metrics.scores(counts, types)
    assert (s["true_positives"], s["predicted"], s["gold"]) == (2, 6, 4)
    assert (s["precision"], s["recall"], s["f1"]) == pytest.approx((1 / 3, 1 / 2, 2 / 5), abs=1e-15)
    assert s["per_type"]["person"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert s["per_type"]["location"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    with pytest.raises(ValueError, match="sentence 0"):
        ner_metrics.pair_counts([[("planet", "Mars")]], [[]], types)


def test_tagger_pairs_agree_with_strict_when_texts_are_unique():
    # when every entity text occurs once per sentence, (type, text) matching equals exact spans
    tokens = [["Ann", "met", "Bob", "Lee"], ["in", "Rome", "."]]
    gold = [["B-PER", "O", "B-PER", "I-PER"], ["O", "B-LOC", "O"]]
    pred = [["B-PER", "O", "B-PER", "O"], ["O", "B-LOC", "O"]]
    strict = ner_metrics.strict_counts(gold, pred, TYPES)
    pairs = ner_metrics.pair_counts(
        [ner_metrics.tag_pairs(t, g) for t, g in zip(tokens, gold)],
        [ner_metrics.tag_pairs(t, p) for t, p in zip(tokens, pred)],
        TYPES,
    )
    assert pairs.tolist() == strict.tolist()


# -----------------------------------------------------------------------------
# bootstrap


def micro_f1_loop(counts, idx):
    """Micro F1 of each resample, by a plain loop over the resampled sentence indices."""
    out = []
    for row in idx:
        tp = predicted = gold = 0
        for i in row:
            tp += counts[i, :, 0].sum()
            predicted += counts[i, :, 1].sum()
            gold += counts[i, :, 2].sum()
        out.append(2 * tp / (predicted + gold) if predicted + gold else 0.0)
    return np.array(out)


def test_bootstrap_point_interval_and_seed():
    counts = ner_metrics.strict_counts(GOLD * 10, PRED * 10, TYPES)
    b = ner_metrics.bootstrap(counts, n_resamples=200, seed=3)
    assert b["f1"]["mean"] == pytest.approx(4 / 7, abs=1e-15)
    assert b["precision"]["mean"] == pytest.approx(2 / 3, abs=1e-15)
    assert b["recall"]["mean"] == pytest.approx(1 / 2, abs=1e-15)
    for k in ("f1", "precision", "recall"):
        assert b[k]["low"] <= b[k]["mean"] <= b[k]["high"]
    assert b["f1"]["low"] < b["f1"]["high"] and b["precision"]["low"] < b["precision"]["high"]
    assert b["recall"]["low"] == b["recall"]["high"] == 0.5  # every sentence finds 1 of its 2 gold entities
    assert ner_metrics.bootstrap(counts, n_resamples=200, seed=3) == b
    assert ner_metrics.bootstrap(counts, n_resamples=200, seed=4) != b
    # the same resamples scored by a loop give the same percentile interval
    loop = micro_f1_loop(counts, stats.bootstrap_indices(len(counts), 200, 3))
    low, high = np.quantile(loop, [0.025, 0.975])
    assert (b["f1"]["low"], b["f1"]["high"]) == pytest.approx((low, high), abs=1e-12)
    narrow = ner_metrics.bootstrap(counts, n_resamples=200, seed=3, level=0.5)["f1"]
    assert b["f1"]["low"] <= narrow["low"] <= narrow["high"] <= b["f1"]["high"]


def test_bootstrap_by_hand_two_sentences():
    # one sentence right (1 tp of 1 predicted, 1 gold), one wrong (0 of 1, 1 gold): F1 = 1/2; a
    # resample of both sentences is F1 1 (both the right one, p 1/4), 0 (both wrong, 1/4), or 1/2
    counts = np.array([[[1, 1, 1], [0, 0, 0]], [[0, 1, 1], [0, 0, 0]]])
    b = ner_metrics.bootstrap(counts, n_resamples=1000, seed=0)["f1"]
    assert b == {"mean": 0.5, "low": 0.0, "high": 1.0}


def test_bootstrap_of_identical_sentences_is_zero_width():
    counts = np.array([[[1, 2, 1], [0, 0, 0]]] * 7)  # every sentence: 1 tp, 2 predicted, 1 gold
    b = ner_metrics.bootstrap(counts, n_resamples=100, seed=0)
    assert b["f1"] == pytest.approx({"mean": 2 / 3, "low": 2 / 3, "high": 2 / 3}, abs=1e-15)
    assert b["precision"] == pytest.approx({"mean": 0.5, "low": 0.5, "high": 0.5}, abs=1e-15)
    assert b["recall"] == {"mean": 1.0, "low": 1.0, "high": 1.0}


def test_paired_bootstrap():
    counts = ner_metrics.strict_counts(GOLD * 10, PRED * 10, TYPES)
    same = ner_metrics.paired_bootstrap(counts, counts, n_resamples=200, seed=0)
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    perfect = ner_metrics.strict_counts(GOLD * 10, GOLD * 10, TYPES)
    better = ner_metrics.paired_bootstrap(counts, perfect, n_resamples=200, seed=0)
    assert better["mean"] == pytest.approx(1 - 4 / 7, abs=1e-15)
    assert 0 < better["low"] <= better["mean"] <= better["high"]
    assert better["p"] == 0.0  # b beats a on every resample
    worse = ner_metrics.paired_bootstrap(perfect, counts, n_resamples=200, seed=0)
    assert worse["mean"] == pytest.approx(-better["mean"], abs=1e-15) and worse["p"] == 0.0
    # same resamples as a loop over stats.bootstrap_indices: the difference of the two loops' F1
    idx = stats.bootstrap_indices(len(counts), 200, 0)
    diff = micro_f1_loop(perfect, idx) - micro_f1_loop(counts, idx)
    low, high = np.quantile(diff, [0.025, 0.975])
    assert (better["low"], better["high"]) == pytest.approx((low, high), abs=1e-12)


def test_paired_bootstrap_p_by_hand():
    # a and b differ on one sentence of two: b gets sentence 0 right where a does not, a gets
    # sentence 1 right where b does not, so the difference is >0, 0 or <0 with 1/4, 1/2, 1/4
    a = np.array([[[0, 1, 1], [0, 0, 0]], [[1, 1, 1], [0, 0, 0]]])
    b = np.array([[[1, 1, 1], [0, 0, 0]], [[0, 1, 1], [0, 0, 0]]])
    idx = stats.bootstrap_indices(2, 1000, 5)
    both0, both1 = (idx == 0).all(1).mean(), (idx == 1).all(1).mean()  # b ahead / a ahead
    r = ner_metrics.paired_bootstrap(a, b, n_resamples=1000, seed=5)
    assert r["mean"] == 0.0
    assert r["p"] == pytest.approx(min(1.0, 2 * min(1 - both0, 1 - both1)), abs=1e-15)
    assert r["p"] == 1.0  # each side ahead in about a quarter of the resamples: share <= 0 and >= 0 both > 1/2
