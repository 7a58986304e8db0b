"""Token-classification data: CoNLL sentences (conll.read_conll) to rows of {"id", "text", "tokens",
"tags", "line"}, tags in IOB2 (IOB1 converted when tag_scheme says so), every tag checked, with
errors naming the file and line. Subsamples are by sentence (no stratification); the split summary
counts sentences, tokens and entities per type. Standard library only."""

from .. import conll
from ..common import PipelineError


def _where(row, source):
    return row.get("file", source)


def normalize(rows, task, source):
    """Raw sentences (conll.read_conll rows, or hub_rows) -> normalized rows; PipelineError for a
    non-BIO tag, an I- after O under strict IOB2, or a type that is not among entity_types."""
    listed = set(task.get("entity_types") or [])
    out = []
    for i, row in enumerate(rows):
        tags, where = list(row["tags"]), _where(row, source)
        if task["tag_scheme"] == "iob1":
            conll.check_tags(tags, row["lines"], where, strict=False)
            tags = conll.to_iob2(tags)
        else:
            conll.check_tags(tags, row["lines"], where, strict=task["strict_iob2"])
        if listed:
            for tag, line in zip(tags, row["lines"]):
                if tag != "O" and tag[2:] not in listed:
                    raise PipelineError(
                        f"{where}:{line}: entity type '{tag[2:]}' ({tag}) is not in entity_types "
                        f"({', '.join(task['entity_types'])}); add it to entity_types, or leave entity_types "
                        f"out to take the types from the files"
                    )
        out.append(
            {"id": i, "text": " ".join(row["tokens"]), "tokens": list(row["tokens"]), "tags": tags, "line": row["line"]}
            | ({"doc": row["doc"]} if "doc" in row else {})  # its -DOCSTART- document (data.carve by document)
        )
    return out


def stratify_labels(task):
    return None  # subsampled by sentence, with the task's seed


def hub_rows(rows, features, task):
    """A hub split (tokens + ner_tags as ClassLabel integers, as wnut_17 and conll2003 have them)
    as raw sentences with their tags' names; 'line' is the row number."""
    names = features["ner_tags"].feature.names
    return [
        {
            "line": i + 1,
            "lines": [i + 1] * len(r["tokens"]),
            "tokens": r["tokens"],
            "tags": [names[t] for t in r["ner_tags"]],
        }
        for i, r in enumerate(rows)
    ]


def derived_settings(task, splits, sources):
    """What the parse-time file check derives: the entity types (sorted) when the config lists none;
    a listed type that never occurs in any split is an error naming the files."""
    found = sorted({t[2:] for rows in splits.values() for r in rows for t in r["tags"] if t != "O"})
    listed = task.get("entity_types")
    if not listed:
        if not found:
            raise PipelineError(f"{', '.join(sources)}: no entity tags (every tag is O); check tag_column")
        return {"entity_types": found}
    missing = [t for t in listed if t not in found]
    if missing:
        raise PipelineError(
            f"{', '.join(sources)}: entity type(s) {', '.join(missing)} of entity_types never occur in the data; "
            f"remove them from entity_types or fix the tags"
        )
    return {}


def entity_set(rows):
    """The (type, lowercased text) of every entity of the rows."""
    return {(k, x.lower()) for r in rows for k, x in conll.tag_pairs(r["tokens"], r["tags"])}


def test_overlap(splits):
    """How many of the test split's entities (each mention, matched as (type, lowercased text)) also
    occur in train: {"test_entities", "also_in_train", "share"}. What a dictionary of train can find
    at most, and what a split that leaks documents inflates."""
    seen = entity_set(splits["train"])
    mentions = [(k, x.lower()) for r in splits["test"] for k, x in conll.tag_pairs(r["tokens"], r["tags"])]
    hits = sum(m in seen for m in mentions)
    return {"test_entities": len(mentions), "also_in_train": hits, "share": hits / len(mentions) if mentions else None}


def split_summary(rows, task, duplicates_removed=0):
    types = task.get("entity_types") or sorted({t[2:] for r in rows for t in r["tags"] if t != "O"})
    counts = {t: 0 for t in types}
    for r in rows:
        for kind, _, _ in conll.spans(r["tags"]):
            counts[kind] = counts.get(kind, 0) + 1
    return {
        "rows": len(rows),
        "tokens": sum(len(r["tokens"]) for r in rows),
        "entities": sum(counts.values()),
        "entity_counts": counts,
        "duplicates_removed": duplicates_removed,
        **({"documents": len({r["doc"] for r in rows})} if rows and all("doc" in r for r in rows) else {}),
    }
