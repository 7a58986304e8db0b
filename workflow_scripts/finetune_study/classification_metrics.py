"""Classification metrics from prediction rows: accuracy, macro/weighted F1, per-class
precision/recall/F1, confusion matrix and the share of outputs that could not be parsed.

An unparsed output (pred None) counts as wrong: it lowers accuracy and the recall of its gold
class, and gets its own column in the confusion matrix.
"""

from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

UNPARSED = "(unparsed)"


def classification_metrics(rows, labels):
    if not rows:
        raise ValueError("no predictions to score")
    gold = [r["gold"] for r in rows]
    pred = [r["pred"] if r["pred"] is not None else UNPARSED for r in rows]
    unknown = sorted({g for g in gold if g not in labels})
    if unknown:
        raise ValueError(f"gold labels {unknown} are not in the label set {labels}")
    prec, rec, f1, support = precision_recall_fscore_support(gold, pred, labels=labels, zero_division=0)
    cm = confusion_matrix(gold, pred, labels=labels + [UNPARSED])[: len(labels)]
    return {
        "n": len(rows),
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(gold, pred, labels=labels, average="weighted", zero_division=0)),
        "unparsed_share": sum(p == UNPARSED for p in pred) / len(pred),
        "per_class": {
            lab: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for lab, p, r, f, s in zip(labels, prec, rec, f1, support)
        },
        "confusion_matrix": {"rows": labels, "columns": labels + [UNPARSED], "counts": cm.tolist()},
    }
