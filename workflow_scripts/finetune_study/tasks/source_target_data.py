"""Source -> target data: rows of {"id", "text" (the source), "references" (its targets, one or more)}.

A file gives the source in `source_column` and its target(s) in `target_column`: one column, or a
list of them (DialogSum's test file has summary1..3; a file holds the listed columns it has, and
each listed column must be in some file). Rows that repeat a source (Tatoeba lists an English
sentence once per Persian translation) become one item with all their targets, so the item is
scored against every reference and the splits are made by source (data.py deduplicates sources
across splits). Plain-text files come as aligned pairs (aligned_text.py), columns source/target.
An empty source or target is an error naming the file, the record and the fix.
Standard library only.
"""

from ..common import PipelineError
from ..data import require_columns


def target_columns(task):
    col = task["target_column"]
    return [col] if isinstance(col, str) else list(col)


def _where(row, i, source):
    return f"{source}:{row['line']}" if "line" in row else f"{source}: record {i + 1}"


def normalize(rows, task, source):
    """Raw records -> items {"id", "text", "references"}, repeated sources grouped in first-seen order."""
    src = task["source_column"]
    require_columns(rows, (src,), source, "records", "column", "source_column")
    if task.get("document_column"):
        require_columns(rows, (task["document_column"],), source, "records", "column", "document_column")
    have = [c for c in target_columns(task) if c in rows[0]]
    if not have:
        raise PipelineError(
            f"{source}: none of the target column(s) {', '.join(target_columns(task))} "
            f"(columns: {', '.join(map(str, rows[0]))}); set target_column in the config"
        )
    items = {}
    for i, row in enumerate(rows):
        text = str(row.get(src) or "").strip()
        if not text:
            raise PipelineError(f"{_where(row, i, source)} has an empty source ({src}); fix or remove it")
        refs = []
        for c in have:
            ref = str(row.get(c) or "").strip()
            if not ref:
                raise PipelineError(f"{_where(row, i, source)} has an empty target ({c}); fix or remove it")
            refs.append(ref)
        item = items.setdefault(text, {"text": text, "references": []})
        if task.get("document_column"):  # the source's document (its first record's): carved with it
            item.setdefault("doc", str(row.get(task["document_column"])))
        item["references"] += [r for r in refs if r not in item["references"]]
    return [dict(item, id=i) for i, item in enumerate(items.values())]


def stratify_labels(task):
    return None  # plain random subsamples of sources


def hub_rows(rows, features, task):
    """A hub split with nested translation pairs ({"translation": {"en": ..., "fa": ...}}) flattened
    to columns "translation.en", "translation.fa"; other rows unchanged."""
    out = []
    for r in rows:
        flat = dict(r)
        for k, v in r.items():
            if isinstance(v, dict):
                flat.update({f"{k}.{sub}": x for sub, x in v.items()})
        out.append(flat)
    return out


def derived_settings(task, splits, sources):
    return {}  # nothing is taken from the files


def split_summary(rows, task, duplicates_removed=0):
    n_refs = [len(r["references"]) for r in rows]
    words = [len(r["text"].split()) for r in rows]
    ref_words = [len(x.split()) for r in rows for x in r["references"]]
    return {
        "rows": len(rows),
        "references": sum(n_refs),
        "max_references": max(n_refs, default=0),
        "source_words_mean": sum(words) / len(words) if words else 0,
        "reference_words_mean": sum(ref_words) / len(ref_words) if ref_words else 0,
        "duplicates_removed": duplicates_removed,
    }
