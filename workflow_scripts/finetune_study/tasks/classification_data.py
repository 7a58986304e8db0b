"""Classification data: rows of {"id", "text", "label"}, labels taken by name or through the task's
label_map (never by position), subsamples stratified by label, hub ClassLabel integers replaced by
their names. Standard library only (datasets is imported for hub tasks only)."""

from ..common import PipelineError
from ..data import require_columns


def _is_integer(value):
    return value.lstrip("-").isdigit()


def label_map_of(task, source):
    """The task's label_map with keys as stripped strings; every value must be one of labels."""
    labels = task["labels"]
    mapping = {str(k).strip(): v for k, v in (task.get("label_map") or {}).items()}
    for key, name in mapping.items():
        if name not in labels:
            raise PipelineError(
                f"{source}: label_map maps '{key}' to '{name}', which is not one of {labels}; "
                f"map each raw value to a name in labels:"
            )
    return mapping


def to_label(raw, labels, mapping, source, row):
    """The label name of a raw value: through label_map when given, else the value must be a name."""
    value = str(raw).strip() if raw is not None else ""
    label = mapping.get(value, value)
    if label in labels:
        return label
    if mapping:
        raise PipelineError(
            f"{source}: row {row} has label {raw!r}, which is neither a key of label_map nor one of "
            f"{labels}; add it to label_map or to drop_rows_with_label"
        )
    if _is_integer(value):
        raise PipelineError(
            f"{source}: row {row} has integer label '{value}' but labels are names; map each raw value "
            f"to a label name with label_map: {{0: <name>, 1: <name>, ...}} "
            f"(labels are never mapped by position)"
        )
    raise PipelineError(
        f"{source}: row {row} has label {raw!r}, not one of {labels}; "
        f"fix the labels: list or add it to drop_rows_with_label"
    )


def normalize(rows, task, source):
    """Map raw rows to {"id", "text", "label"}; raise on a missing column or an unknown label."""
    text_col, label_col, labels = task["text_column"], task["label_column"], task["labels"]
    drop = set(task.get("drop_rows_with_label") or [])
    mapping = label_map_of(task, source)
    require_columns(rows, (text_col, label_col), source, "rows", "column", "text_column/label_column or column_names")
    if task.get("document_column"):
        require_columns(rows, (task["document_column"],), source, "rows", "column", "document_column")
    out = []
    for i, row in enumerate(rows):
        raw = row.get(label_col)
        if str(raw) in drop:
            continue
        label = to_label(raw, labels, mapping, source, i + 1)
        text = str(row.get(text_col) or "").replace("<br />", " ").strip()
        if task.get("max_chars"):
            text = text[: task["max_chars"]]
        doc = task.get("document_column")  # the row's document: carved with its document (data._carve)
        out.append({"id": i, "text": text, "label": label} | ({"doc": str(row.get(doc))} if doc else {}))
    return out


def stratify_labels(task):
    return task["labels"]


def class_label_names(feature):
    """A hub label feature's own names (datasets.ClassLabel), or None when it is not a ClassLabel."""
    import datasets

    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else None


def _named_labels(rows, column, names):
    """Integer values of a ClassLabel column replaced by the dataset's declared names."""

    def name(v):
        return names[v] if isinstance(v, int) and 0 <= v < len(names) else v

    return [dict(r, **{column: name(r[column])}) for r in rows]


def hub_rows(rows, features, task):
    """A hub split's label column with the dataset's ClassLabel names instead of integers."""
    col = task["label_column"] if task["label_column"] in features else "label"
    class_names = class_label_names(features[col]) if col in features else None
    return _named_labels(rows, col, class_names) if class_names else rows


def derived_settings(task, splits, sources):
    return {}  # nothing is taken from the files


def split_summary(rows, task, duplicates_removed=0):
    return {
        "rows": len(rows),
        "label_counts": label_counts(rows, task["labels"]),
        "duplicates_removed": duplicates_removed,
    }


def label_counts(rows, labels):
    counts = {label: 0 for label in labels}
    for r in rows:
        counts[r["label"]] += 1
    return counts
