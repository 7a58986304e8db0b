"""Reading task data: local files (txt with ';', tsv, csv, jsonl, json) or a hub dataset,
checked and normalized to rows of {"id", "text", "label"} with label names from the config.

Every problem a user can fix (missing file, undecodable bytes, a line without ';', missing column,
unknown or unmapped label, empty split) is raised as PipelineError with one line naming the file
and the fix. Labels are taken by name or through the task's label_map, never by position.

load_splits: normalize -> carve missing validation/test from train -> remove duplicate texts
(within a split, then validation vs test, then train vs both) -> subsample each split with its own
seed (stratified by label for classification). So the test split never depends on sample.train or
sample.validation, and validation never depends on sample.train.

Only the standard library is used here so that Snakemake can run the checks at parse time, before
any model loads (datasets is imported only for hub tasks).
"""

import csv
import io
import json
import random
from pathlib import Path

from . import tasks
from .common import PipelineError, read_text  # noqa: F401 (read_text: data.read_text for callers)

SPLITS = ("train", "validation", "test")
_EXTENSIONS = {".conll": "conll", ".txt": "semicolon", ".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "json"}

csv.field_size_limit(10_000_000)


def file_format(path, fmt="auto"):
    if fmt != "auto":
        return fmt
    ext = Path(path).suffix.lower()
    if ext not in _EXTENSIONS:
        raise PipelineError(
            f"{path}: cannot tell the format from '{ext}'; set format: to one of "
            f"{', '.join(sorted(set(_EXTENSIONS.values())))}"
        )
    return _EXTENSIONS[ext]


def read_rows(path, fmt="auto", header=True, column_names=None, encoding="utf-8"):
    """All rows of a file as dicts keyed by column name."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: data file not found; check data_dir and the task's files: entry")
    fmt = file_format(path, fmt)
    f = io.StringIO(read_text(path, encoding), newline="")
    if fmt == "jsonl":
        rows = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise PipelineError(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
                if not isinstance(rows[-1], dict):
                    raise PipelineError(
                        f"{path}:{n}: a record must be a JSON object ({{...}}), not {type(rows[-1]).__name__}; "
                        "fix or remove the line"
                    )
        return rows
    if fmt == "json":
        try:
            rows = json.load(f)
        except json.JSONDecodeError as e:
            raise PipelineError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if not isinstance(rows, list):
            raise PipelineError(f"{path}: expected a JSON list of records")
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, dict)), None)
        if bad is not None:
            raise PipelineError(
                f"{path}: record {bad + 1} of the list is a JSON {type(rows[bad]).__name__}, not an object "
                "({...}); every record must be an object of columns"
            )
        return rows
    if fmt == "semicolon":
        return _semicolon_rows(path, f, header, column_names)
    delimiter = "\t" if fmt == "tsv" else ","
    reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
    rows = [r for r in reader if r]
    names = column_names or (rows[0] if header and rows else None)
    if names is None:
        if header:
            return []
        raise PipelineError(f"{path}: file has no header; set header: true or give column_names:")
    body = rows[1:] if header else rows
    return [dict(zip(names, r)) for r in body]


def _semicolon_rows(path, f, header, column_names):
    """text;label per line; the text itself may contain ';', the label never does."""
    lines = []
    for n, line in enumerate(f, 1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if ";" not in line:
            raise PipelineError(
                f"{path}:{n}: no ';' between text and label; fix the line, or set format: "
                f"if this is not a text;label file"
            )
        lines.append(line)
    if not lines:
        return []
    names = column_names or (lines[0].rsplit(";", 1) if header else ["text", "label"])
    body = lines[1:] if header else lines
    return [dict(zip(names, line.rsplit(";", 1))) for line in body]


def require_columns(rows, columns, source, rows_word, column_word, keys):
    if not rows:
        raise PipelineError(f"{source}: no {rows_word}; point the task at a non-empty file")
    for col in columns:
        if col not in rows[0]:
            raise PipelineError(
                f"{source}: no {column_word} '{col}' ({column_word}s: {', '.join(map(str, rows[0]))}); "
                f"set {keys} in the config"
            )


def normalize(rows, task, source):
    """Rows in the task type's normalized form (tasks.<type>_data.normalize): {"id", "text", "label"}
    for classification, {"id", "instruction", "input", "output"} for generation."""
    return tasks.part(task["type"], "data").normalize(rows, task, source)


def split_paths(rel, data_dir):
    """The files of one split's files: entry: one path, or an aligned {source, target} pair."""
    rels = list(rel.values()) if isinstance(rel, dict) else [rel]
    return [Path(data_dir) / r for r in rels]


def task_paths(task, data_dir):
    """Every data file of a task, as strings: what its data-prep jobs read."""
    return [str(p) for rel in task["files"].values() for p in split_paths(rel, data_dir)]


def _read_split(task, rel, data_dir):
    """Raw rows of one split's files: entry (an aligned pair of plain-text files gives source/target rows)."""
    if isinstance(rel, dict):
        from .aligned_text import read_aligned

        source, target = split_paths(rel, data_dir)
        return read_aligned(source, target, task.get("encoding") or "utf-8")
    return _read_task_file(task, Path(data_dir) / rel)


def _read_task_file(task, path):
    encoding = task.get("encoding") or "utf-8"
    if file_format(path, task["format"]) == "conll":  # one token per line: sentences, not table rows
        from . import conll

        sentences = conll.read_conll(path, task["token_column"], task["tag_column"], task["separator"], encoding)
        return [dict(s, file=str(path)) for s in sentences]
    return read_rows(path, task["format"], task["header"], task.get("column_names"), encoding)


def check_task_files(name, task, data_dir):
    """Parse-time check of a task's local files: present, decodable, right columns and labels, not
    empty. Returns what the task type derives from them (tasks.<type>_data.derived_settings, e.g.
    the entity types of a token-classification task that lists none)."""
    splits = {}
    for split, rel in task["files"].items():
        path = " + ".join(map(str, split_paths(rel, data_dir)))
        rows = _read_split(task, rel, data_dir)
        splits[split] = normalize(rows, task, f"{path} (task {name}, {split})")
        if not splits[split]:
            raise PipelineError(f"{path}: split '{split}' of task {name} is empty after dropping rows")
        if split == "train" and task.get("split_by") == "document" and len(task["files"]) < 3:
            if not all("doc" in r for r in splits[split]):
                raise PipelineError(
                    f"{path}: task {name}: split_by: document, but this file marks no documents (no -DOCSTART- "
                    f"lines in a CoNLL file, no document_column in a table); set split_by: auto or row"
                )
    sources = task_paths(task, data_dir)
    return tasks.part(task["type"], "data").derived_settings(task, splits, sources)


def dedup_key(row):
    """What makes two rows the same example: the text, or (instruction, input) for generation."""
    return row["text"] if "text" in row else (row["instruction"], row["input"])


def deduplicate(splits):
    """Drop repeated examples: the first of each within a split, then from validation what is in test,
    and from train what is in validation or test. Returns (new splits, rows removed per split)."""
    out, removed, later = {}, {}, set()
    for split in reversed(SPLITS):  # test, validation, train: each loses what a later-listed split has
        seen, kept = set(), []
        for row in splits[split]:
            key = dedup_key(row)
            if key not in seen and key not in later:
                kept.append(row)
            seen.add(key)
        out[split], removed[split] = kept, len(splits[split]) - len(kept)
        later |= seen
    return {s: out[s] for s in SPLITS}, {s: removed[s] for s in SPLITS}


def allocate(counts, n):
    """Largest-remainder split of n over labels in proportion to counts ({label: count}, in label order);
    ties in the remainder go to the earlier label."""
    total = sum(counts.values())
    quota = {label: n * c // total for label, c in counts.items()}
    by_remainder = sorted(counts, key=lambda label: -(n * counts[label] % total))  # stable: label order breaks ties
    for label in by_remainder[: n - sum(quota.values())]:
        quota[label] += 1
    return quota


def _sample(rows, n, seed, labels=None):
    """n rows drawn with seed: stratified by label when labels are given (each label keeps its share,
    the result shuffled), else a plain random sample."""
    if n is None or n >= len(rows):
        return list(rows)
    rng = random.Random(seed)
    if labels is None:
        return rng.sample(rows, n)
    groups = {label: [r for r in rows if r["label"] == label] for label in labels}
    quota = allocate({label: len(g) for label, g in groups.items()}, n)
    picked = [r for label, g in groups.items() for r in rng.sample(g, quota[label])]
    random.Random(seed).shuffle(picked)
    return picked


def carve_by_document(task, rows):
    """Whether a missing validation/test split is carved from train by whole documents: `split_by`
    document, or auto (the default) when every train row marks its document (-DOCSTART- in a CoNLL
    file, document_column in a table) and there are at least three documents (one per split; a
    file with one -DOCSTART- at its top is carved by row); else sentence by sentence (row by row)."""
    by = task.get("split_by") or "auto"
    if by != "auto":
        return by == "document"
    return bool(rows) and all("doc" in r for r in rows) and len({r["doc"] for r in rows}) >= 3


def _carve_documents(rows, n, seed):
    """(carved, rest): whole documents, in a seeded order, until at least n rows are carved."""
    docs = {}
    for r in rows:
        docs.setdefault(r["doc"], []).append(r)
    order = list(docs)
    random.Random(seed).shuffle(order)
    carved, rest, taken = [], [], 0
    for d in order:
        if taken < n and len(order) > 1 and d != order[-1]:  # never all of train's documents
            carved += docs[d]
            taken += len(docs[d])
        else:
            rest += docs[d]
    return carved, rest


def _carve(raw, task):
    """Cut a missing test/validation split from train: seeded and disjoint, never depending on sample
    sizes; by whole documents where the rows mark them (carve_by_document), so that no document is
    in two splits."""
    for split, fraction_key in (("test", "test_fraction"), ("validation", "validation_fraction")):
        if split not in raw:
            train = list(raw["train"])
            n = max(1, int(len(train) * task[fraction_key]))
            if carve_by_document(task, train):
                raw[split], raw["train"] = _carve_documents(train, n, task["seed"] + len(split))
                continue
            random.Random(task["seed"] + len(split)).shuffle(train)
            raw[split], raw["train"] = train[:n], train[n:]
    return raw


def full_splits(task, data_dir, use_hub=False):
    """All rows of the three splits, normalized, carved and deduplicated but not subsampled, as
    (splits, removed): removed maps each split to how many duplicate rows were dropped from it."""
    if use_hub:
        raw = _hub_splits(task)
    else:
        raw = {}
        for split, rel in task["files"].items():
            path = " + ".join(map(str, split_paths(rel, data_dir)))
            raw[split] = normalize(_read_split(task, rel, data_dir), task, path)
    if "train" not in raw:
        raise PipelineError("task has no train split; give files: a train entry")
    return deduplicate(_carve(raw, task))


def sample_split(rows, task, split, n):
    """One split subsampled to n rows with its own seed (task seed + split index), ids 0..n-1."""
    labels = tasks.part(task["type"], "data").stratify_labels(task)
    picked = _sample(rows, n, task["seed"] + SPLITS.index(split), labels)
    if not picked:
        raise PipelineError(f"task split '{split}' is empty; check the files and sample sizes")
    return [dict(r, id=i) for i, r in enumerate(picked)]


def load_split(task, data_dir, split, n=None, use_hub=False):
    """One split's rows (n of them, None: all) and its count of removed duplicates; the same rows
    load_splits gives for that split, whatever the other splits' sample sizes."""
    splits, removed = full_splits(task, data_dir, use_hub)
    return sample_split(splits[split], task, split, n), removed[split]


def load_splits(task, data_dir, use_hub=False):
    """The three normalized, deduplicated, subsampled splits of a task, as (splits, removed): splits maps
    each split to rows with ids 0..n-1, removed to how many duplicate rows were dropped from it."""
    splits, removed = full_splits(task, data_dir, use_hub)
    sample = task.get("sample") or {}
    return {s: sample_split(splits[s], task, s, sample.get(s)) for s in SPLITS}, removed


def _hub_splits(task):
    import datasets  # only with use_hub: true

    ds = datasets.load_dataset(task["hub_id"], task.get("hub_config"))
    names = {"train": "train", "validation": "validation", "test": "test"}
    if "validation" not in ds and "valid" in ds:
        names["validation"] = "valid"
    if task.get("hub_splits"):  # e.g. a test-only dataset whose test split is carved into all three
        names = dict(task["hub_splits"])
        missing = [h for h in names.values() if h not in ds]
        if missing:
            raise PipelineError(
                f"{task['hub_id']}: no split {', '.join(missing)} (splits: {', '.join(ds)}); fix the task's hub_splits"
            )
    out = {}
    for split, hub_split in names.items():
        if hub_split in ds:
            rows = [dict(r) for r in ds[hub_split]]
            rows = tasks.part(task["type"], "data").hub_rows(rows, ds[hub_split].features, task)
            # Hub copies often name columns plainly ("text", "label") where the files differ.
            for key, fallback in (("text_column", "text"), ("label_column", "label")):
                if key in task and rows and task[key] not in rows[0] and fallback in rows[0]:
                    rows = [dict(r, **{task[key]: r[fallback]}) for r in rows]
            out[split] = normalize(rows, task, f"{task['hub_id']}[{hub_split}]")
    return out


def split_summary(rows, task, duplicates_removed=0):
    """One split's entry in the data summary (tasks.<type>_data.split_summary)."""
    return tasks.part(task["type"], "data").split_summary(rows, task, duplicates_removed)
