"""Published results a task reproduces: reference rows for the report, never computed here.

A `published:` entry of a task names what was run and where its numbers come from: JSON output
files of the original study (files + metrics: this workflow's metric name -> key in a file) or
numbers typed in from a paper (values). `scale` brings a number to this workflow's scale (BLEU is
0-100 here, sacrebleu's; a 0-1 BLEU needs bleu: 100). The report shows them marked "published, not
reproduced", without intervals (none were published).

Standard library only: it runs at Snakemake parse time, so a missing file or key is a one-line
config error before any job starts.
"""

import json
from pathlib import Path


class PublishedError(ValueError):
    pass


def _number(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PublishedError(f"{where}: {value!r} is not a number")
    return float(value)


def load(entry, data_dir):
    """{"run", "source", "note", "n", "metrics": {name: value}} of one published entry; PublishedError
    (naming the file or key) for a missing file, key or a non-number."""
    values = {}
    files = []
    for rel in entry.get("files", []):
        path = Path(rel) if Path(rel).is_absolute() else Path(data_dir) / rel
        if not path.is_file():
            raise PublishedError(f"files: {path} not found (files are under data_dir '{data_dir}', or absolute)")
        try:
            files.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as e:
            raise PublishedError(f"files: {path} is not JSON ({e.msg}, line {e.lineno})") from None
    for name, key in (entry.get("metrics") or {}).items():
        found = [(p, d[key]) for p, d in files if isinstance(d, dict) and key in d]
        if not found:
            raise PublishedError(
                f"metrics.{name}: key '{key}' is in none of {[str(p) for p, _ in files] or 'the files (none given)'}"
            )
        values[name] = _number(found[0][1], f"metrics.{name}: {found[0][0]}: '{key}'")
    for name, v in (entry.get("values") or {}).items():
        values[name] = _number(v, f"values.{name}")
    if not values:
        raise PublishedError("give metrics (with files) or values: a published row needs numbers")
    for name, factor in (entry.get("scale") or {}).items():
        if name in values:
            values[name] *= factor
    return {
        "run": entry["run"],
        "source": entry.get("source", ""),
        "note": entry.get("note", ""),
        "n": entry.get("n"),
        "metrics": values,
    }
