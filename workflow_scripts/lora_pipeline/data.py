"""Reading task data: local files (txt with ';', tsv, csv, jsonl, json) or a hub dataset,
checked and normalized to rows of {"id", "text", "label"} with label names from the config.

Every problem a user can fix (missing file, missing column, unknown label, empty split) is
raised as PipelineError with one line naming the file and the fix. Only the standard library
is used here so that Snakemake can run the checks at parse time, before any model loads.
"""
import csv
import json
import random
from pathlib import Path

from .common import PipelineError

SPLITS = ("train", "validation", "test")
_EXTENSIONS = {".txt": "semicolon", ".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "json"}

csv.field_size_limit(10_000_000)


def file_format(path, fmt="auto"):
    if fmt != "auto":
        return fmt
    ext = Path(path).suffix.lower()
    if ext not in _EXTENSIONS:
        raise PipelineError(f"{path}: cannot tell the format from '{ext}'; set format: to one of "
                            f"{', '.join(sorted(set(_EXTENSIONS.values())))}")
    return _EXTENSIONS[ext]


def read_rows(path, fmt="auto", header=True, column_names=None):
    """All rows of a file as dicts keyed by column name."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: data file not found; check data_dir and the task's files: entry")
    fmt = file_format(path, fmt)
    with open(path, encoding="utf-8", newline="") as f:
        if fmt == "jsonl":
            rows = []
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise PipelineError(f"{path}:{n}: not valid JSON ({e.msg}); fix or remove the line") from None
            return rows
        if fmt == "json":
            try:
                rows = json.load(f)
            except json.JSONDecodeError as e:
                raise PipelineError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
            if not isinstance(rows, list):
                raise PipelineError(f"{path}: expected a JSON list of records")
            return rows
        if fmt == "semicolon":
            # text;label per line; the text itself may contain ';', the label never does.
            lines = [line.rstrip("\r\n") for line in f if line.strip()]
            names = column_names or (lines[0].rsplit(";", 1) if header else ["text", "label"])
            body = lines[1:] if header else lines
            return [dict(zip(names, line.rsplit(";", 1))) for line in body]
        delimiter = "\t" if fmt == "tsv" else ","
        reader = csv.reader(f, delimiter=delimiter, quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL)
        rows = [r for r in reader if r]
        names = column_names or (rows[0] if header else None)
        if names is None:
            raise PipelineError(f"{path}: file has no header; set header: true or give column_names:")
        body = rows[1:] if header else rows
        return [dict(zip(names, r)) for r in body]


def _require_columns(rows, columns, source, rows_word, column_word, keys):
    if not rows:
        raise PipelineError(f"{source}: no {rows_word}; point the task at a non-empty file")
    for col in columns:
        if col not in rows[0]:
            raise PipelineError(f"{source}: no {column_word} '{col}' ({column_word}s: {', '.join(map(str, rows[0]))}); "
                                f"set {keys} in the config")


def normalize(rows, task, source):
    """Map raw rows to {"id", "text", "label"} (classification) or {"id", "instruction", "input",
    "output"} (generation); raise on a missing column, an unknown label or an empty record."""
    if task["type"] == "generation":
        return normalize_generation(rows, task, source)
    text_col, label_col, labels = task["text_column"], task["label_column"], task["labels"]
    drop = set(task.get("drop_rows_with_label") or [])
    _require_columns(rows, (text_col, label_col), source, "rows", "column", "text_column/label_column or column_names")
    out = []
    for i, row in enumerate(rows):
        raw = row.get(label_col)
        if str(raw) in drop:
            continue
        label = str(raw).strip() if raw is not None else ""
        if label not in labels:
            if label.lstrip("-").isdigit() and 0 <= int(label) < len(labels):
                label = labels[int(label)]
            else:
                raise PipelineError(f"{source}: row {i + 1} has label {raw!r}, not one of {labels}; "
                                    f"fix the labels: list or add it to drop_rows_with_label")
        text = str(row.get(text_col) or "").replace("<br />", " ").strip()
        if task.get("max_chars"):
            text = text[: task["max_chars"]]
        out.append({"id": i, "text": text, "label": label})
    return out


def normalize_generation(rows, task, source):
    ins, inp, outc = task["instruction_column"], task["input_column"], task["output_column"]
    _require_columns(rows, (ins, outc), source, "records", "field", "instruction_column/output_column")
    out = []
    for i, row in enumerate(rows):
        instruction, output = str(row.get(ins) or "").strip(), str(row.get(outc) or "").strip()
        if not instruction or not output:
            missing = "instruction" if not instruction else "output"
            raise PipelineError(f"{source}: record {i + 1} has no {missing}; fix or remove it")
        out.append({"id": i, "instruction": instruction, "input": str(row.get(inp) or "").strip(), "output": output})
    return out


def check_task_files(name, task, data_dir):
    """Parse-time check of a task's local files: present, readable, right columns and labels, not empty."""
    for split, rel in task["files"].items():
        path = Path(data_dir) / rel
        rows = read_rows(path, task["format"], task["header"], task.get("column_names"))
        if not normalize(rows, task, f"{path} (task {name}, {split})"):
            raise PipelineError(f"{path}: split '{split}' of task {name} is empty after dropping rows")


def _sample(rows, n, seed):
    if n is None or n >= len(rows):
        return list(rows)
    return random.Random(seed).sample(rows, n)


def load_splits(task, data_dir, use_hub=False):
    """The three normalized, subsampled splits of a task."""
    if use_hub:
        raw = _hub_splits(task)
    else:
        raw = {}
        for split, rel in task["files"].items():
            path = Path(data_dir) / rel
            raw[split] = normalize(read_rows(path, task["format"], task["header"], task.get("column_names")),
                                   task, str(path))
    for split, fraction_key in (("test", "test_fraction"), ("validation", "validation_fraction")):
        if split not in raw:  # carve the split from train, disjoint and seeded
            train = list(raw["train"])
            random.Random(task["seed"] + len(split)).shuffle(train)
            n = max(1, int(len(train) * task[fraction_key]))
            raw[split], raw["train"] = train[:n], train[n:]
    splits = {}
    for k, split in enumerate(SPLITS):
        rows = _sample(raw[split], task["sample"].get(split), task["seed"] + k)
        if not rows:
            raise PipelineError(f"task split '{split}' is empty; check the files and sample sizes")
        splits[split] = [dict(r, id=i) for i, r in enumerate(rows)]
    return splits


def _hub_splits(task):
    import datasets  # only with use_hub: true

    ds = datasets.load_dataset(task["hub_id"], task.get("hub_config"))
    names = {"train": "train", "validation": "validation", "test": "test"}
    if "validation" not in ds and "valid" in ds:
        names["validation"] = "valid"
    out = {}
    for split, hub_split in names.items():
        if hub_split in ds:
            rows = [dict(r) for r in ds[hub_split]]
            # Hub copies often name columns plainly ("text", "label") where the files differ.
            for key, fallback in (("text_column", "text"), ("label_column", "label")):
                if rows and task[key] not in rows[0] and fallback in rows[0]:
                    rows = [dict(r, **{task[key]: r[fallback]}) for r in rows]
            out[split] = normalize(rows, task, f"{task['hub_id']}[{hub_split}]")
    return out


def split_summary(rows, task):
    if task["type"] == "generation":
        return {"rows": len(rows), "with_input": sum(bool(r["input"]) for r in rows)}
    return {"rows": len(rows), "label_counts": label_counts(rows, task["labels"])}


def label_counts(rows, labels):
    counts = {label: 0 for label in labels}
    for r in rows:
        counts[r["label"]] += 1
    return counts
