"""Bootstrap intervals, McNemar, seed aggregation, near-miss label parsing and normalized label
likelihoods, each checked against hand-worked values, sklearn or a property."""

import math
import statistics

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

import tiny
from finetune_study import inference, stats
from finetune_study.prompting import near_miss_label, parse_label

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def _random_case(n, seed, unparsed=0.15):
    rng = np.random.default_rng(seed)
    gold = [LABELS[i] for i in rng.integers(0, len(LABELS), n)]
    pred = [g if rng.random() < 0.5 else LABELS[rng.integers(0, len(LABELS))] for g in gold]
    pred = [None if rng.random() < unparsed else p for p in pred]
    return gold, pred


def _sklearn_scores(gold, pred):
    pred = ["(unparsed)" if p is None else p for p in pred]
    return {
        "accuracy": accuracy_score(gold, pred),
        "macro_f1": f1_score(gold, pred, labels=LABELS, average="macro", zero_division=0),
        "weighted_f1": f1_score(gold, pred, labels=LABELS, average="weighted", zero_division=0),
    }


# -----------------------------------------------------------------------------
# classification_bootstrap


def test_bootstrap_interval_hand_worked_four_items():
    # 3 of 4 right: resampled accuracy is k/4, k ~ Binomial(4, 3/4). P(k<=0) = 1/256 < 2.5% < P(k<=1)
    # = 13/256, and P(k<=3) = 175/256 < 97.5%, so the 95% percentile interval is [0.25, 1.0].
    gold = ["joy", "joy", "anger", "fear"]
    pred = ["joy", "joy", "anger", None]
    ci = stats.classification_bootstrap(gold, pred, LABELS, n_resamples=2000, seed=0)
    assert ci["accuracy"] == {"mean": 0.75, "low": 0.25, "high": 1.0}


def test_bootstrap_all_correct_is_a_point():
    gold = ["joy", "love", "anger", "fear", "joy"]
    ci = stats.classification_bootstrap(gold, list(gold), LABELS, n_resamples=500, seed=1)
    assert ci["accuracy"] == {"mean": 1.0, "low": 1.0, "high": 1.0}
    assert ci["weighted_f1"] == {"mean": 1.0, "low": 1.0, "high": 1.0}


def test_bootstrap_point_estimates_equal_sklearn():
    gold, pred = _random_case(157, seed=3)
    pred[5] = "not a label"  # a stray output counts as wrong, like None
    assert None in pred
    ci = stats.classification_bootstrap(gold, pred, LABELS, n_resamples=200, seed=0)
    for k, v in _sklearn_scores(gold, pred).items():
        assert ci[k]["mean"] == pytest.approx(v, abs=1e-12)
        assert ci[k]["low"] <= ci[k]["mean"] <= ci[k]["high"]


def test_bootstrap_resamples_scored_like_sklearn():
    # Same draws as generation_metrics.bootstrap_indices (default_rng(seed).integers); each resample
    # scored by sklearn, then numpy's default quantiles.
    gold, pred = _random_case(40, seed=4)
    idx = np.random.default_rng(7).integers(0, 40, size=(200, 40))
    per = [_sklearn_scores([gold[i] for i in row], [pred[i] for i in row]) for row in idx]
    ci = stats.classification_bootstrap(gold, pred, LABELS, n_resamples=200, seed=7, level=0.9)
    for k in ci:
        low, high = np.quantile([p[k] for p in per], [0.05, 0.95])
        assert (ci[k]["low"], ci[k]["high"]) == pytest.approx((low, high), abs=1e-12)


def test_bootstrap_width_matches_normal_approximation():
    n, p = 300, 0.6
    gold = ["joy"] * n
    pred = ["joy"] * 180 + ["anger"] * 60 + [None] * 60
    ci = stats.classification_bootstrap(gold, pred, LABELS, n_resamples=1000, seed=0)
    assert ci["accuracy"]["mean"] == pytest.approx(p)
    normal = 2 * 1.96 * math.sqrt(p * (1 - p) / n)
    assert abs((ci["accuracy"]["high"] - ci["accuracy"]["low"]) / normal - 1) < 0.15


def test_bootstrap_order_invariant_and_seeded():
    gold, pred = _random_case(120, seed=5)
    perm = np.random.default_rng(9).permutation(len(gold))
    a = stats.classification_bootstrap(gold, pred, LABELS, n_resamples=300, seed=2)
    b = stats.classification_bootstrap(
        [gold[i] for i in perm], [pred[i] for i in perm], LABELS, n_resamples=300, seed=2
    )
    for k in a:
        assert b[k]["mean"] == pytest.approx(a[k]["mean"], abs=1e-12)
    assert stats.classification_bootstrap(gold, pred, LABELS, n_resamples=300, seed=2) == a


def test_bootstrap_rejects_bad_input():
    with pytest.raises(ValueError, match="not in the label set"):
        stats.classification_bootstrap(["meh"], ["joy"], LABELS)
    with pytest.raises(ValueError, match="predictions"):
        stats.classification_bootstrap(["joy"], ["joy", "joy"], LABELS)


# -----------------------------------------------------------------------------
# paired tests


def _pairs(b, c, both=5, neither=2):
    """Correctness lists with b items only A gets right and c only B gets right."""
    a = [True] * b + [False] * c + [True] * both + [False] * neither
    bb = [False] * b + [True] * c + [True] * both + [False] * neither
    return a, bb


@pytest.mark.parametrize(
    "b, c, p", [(0, 6, 2 * 0.5**6), (6, 0, 2 * 0.5**6), (3, 3, 1.0), (1, 9, 2 * (1 + 10) / 1024), (0, 0, 1.0)]
)
def test_mcnemar_hand_worked(b, c, p):
    a, bb = _pairs(b, c)
    out = stats.mcnemar(a, bb)
    assert out == {"b": b, "c": c, "n": b + c + 7, "p": pytest.approx(p, abs=1e-15)}


def test_paired_bootstrap_diff():
    a, b = _pairs(4, 10, both=20, neither=6)  # 40 items: acc a = 24/40, acc b = 30/40
    d = stats.paired_bootstrap_diff(a, b, n_resamples=1000, seed=0)
    assert d["mean"] == pytest.approx(0.15)
    assert d["low"] <= 0.15 <= d["high"]
    rev = stats.paired_bootstrap_diff(b, a, n_resamples=1000, seed=0)  # same draws: mirrored interval
    assert (rev["mean"], rev["low"], rev["high"]) == pytest.approx((-d["mean"], -d["high"], -d["low"]), abs=1e-12)
    same = stats.paired_bootstrap_diff(a, a, n_resamples=100, seed=0)
    assert same == {"mean": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(ValueError):
        stats.paired_bootstrap_diff([True, False], [True])


# -----------------------------------------------------------------------------
# seeds


def test_mean_sd_against_statistics():
    vals = [0.61, 0.64, 0.58, 0.7]
    out = stats.mean_sd(vals)
    assert out["mean"] == pytest.approx(statistics.fmean(vals))
    assert out["sd"] == pytest.approx(statistics.stdev(vals))
    assert out["n"] == 4 and out["values"] == vals
    assert stats.mean_sd([0.5]) == {"mean": 0.5, "sd": None, "n": 1, "values": [0.5]}


def test_aggregate_seeds():
    runs = [
        {"accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": 0.45, "n": 10},
        {"accuracy": 0.7, "macro_f1": 0.6, "weighted_f1": 0.65, "n": 10},
    ]
    agg = stats.aggregate_seeds(runs)
    assert set(agg) == {"accuracy", "macro_f1", "weighted_f1"}
    assert agg["accuracy"]["mean"] == pytest.approx(0.6)
    assert agg["macro_f1"]["sd"] == pytest.approx(0.2 / math.sqrt(2))  # |x1 - x2| / sqrt(2)
    assert agg["weighted_f1"]["values"] == [0.45, 0.65]


# -----------------------------------------------------------------------------
# near_miss_label


@pytest.mark.parametrize(
    "output, label",
    [
        ("I feel sad", "sadness"),
        ("Angry!", "anger"),
        ("they were surprised", "surprise"),
        ("fearful", "fear"),
        ("A joyful day", "joy"),
        ("loving.", "love"),
    ],
)
def test_near_miss_label_examples(output, label):
    assert parse_label(output, LABELS) is None
    assert near_miss_label(output, LABELS) == label


def test_near_miss_label_rejects_and_ordering():
    assert near_miss_label("banana bread", LABELS) is None
    assert near_miss_label("an answer", LABELS) is None  # "an": 2-letter prefix of anger
    assert near_miss_label("jo", LABELS) is None
    assert near_miss_label("sad", ["sadnessful"]) is None  # 3 < 10 // 2
    assert near_miss_label("joy", LABELS) is None  # parsed, not a near miss
    assert near_miss_label("fearful but loving", LABELS) == "fear"  # earliest in the text
    assert near_miss_label("loving but fearful", LABELS) == "love"
    syn = {"joy": ["happy", "over the moon"]}
    assert near_miss_label("so happy", LABELS, syn) == "joy"
    assert near_miss_label("Over the moon, not angry", LABELS, syn) == "joy"
    assert near_miss_label("unhappy", LABELS, syn) is None  # synonyms match whole words only
    with pytest.raises(ValueError):
        near_miss_label("x", LABELS, {"glee": ["happy"]})


# -----------------------------------------------------------------------------
# label_logprobs normalization


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny.make_tiny_llama(tmp_path_factory.mktemp("llama"))
    tok = AutoTokenizer.from_pretrained(folder)
    return AutoModelForCausalLM.from_pretrained(folder).eval(), tok


def test_label_logprobs_normalization(llama):
    model, tok = llama
    texts = [" joy", " melancholy", " bewilderment"]
    label_ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert len({len(t) for t in label_ids}) > 1
    prompts = [tok(p)["input_ids"] for p in ["Text: I am so happy\nLabel:", "Hi", "Text: meh\nLabel:"]]

    def run(**kw):
        return inference.label_logprobs(model, prompts, label_ids, batch_size=2, progress=False, **kw)

    total = run()
    assert run(normalization="sum") == total
    mean, chars = run(normalization="mean"), run(normalization="chars", label_texts=texts)
    for s, m, c in zip(total, mean, chars, strict=True):
        assert m == pytest.approx([x / len(t) for x, t in zip(s, label_ids)], rel=1e-6)
        assert c == pytest.approx([x / len(t) for x, t in zip(s, texts)], rel=1e-6)
    with pytest.raises(ValueError, match="label_texts"):
        run(normalization="chars")
    with pytest.raises(ValueError, match="normalization"):
        run(normalization="max")
