"""Classification metrics against values worked out by hand."""

import pytest

from finetune_study.classification_metrics import classification_metrics

LABELS = ["a", "b", "c"]


def rows(gold, pred):
    return [{"gold": g, "pred": p} for g, p in zip(gold, pred)]


def test_hand_computed_values():
    # gold: a a a b b c ; pred: a a b b None c
    m = classification_metrics(rows("aaabbc", ["a", "a", "b", "b", None, "c"]), LABELS)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: P=2/2 R=2/3 F=0.8 ; b: P=1/2 R=1/2 F=0.5 ; c: P=1 R=1 F=1
    assert m["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "support": 3})
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    assert m["weighted_f1"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 1.0) / 6)
    assert m["unparsed_share"] == pytest.approx(1 / 6)
    assert m["confusion_matrix"]["columns"] == ["a", "b", "c", "(unparsed)"]
    assert m["confusion_matrix"]["counts"] == [[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 1, 0]]


def test_all_unparsed_scores_zero():
    m = classification_metrics(rows("abc", [None, None, None]), LABELS)
    assert m["accuracy"] == 0 and m["macro_f1"] == 0 and m["unparsed_share"] == 1


def test_unknown_gold_label_is_an_error():
    with pytest.raises(ValueError, match="not in the label set"):
        classification_metrics(rows("az", ["a", "a"]), LABELS)
