"""Aligned plain-text files: a source file and a target file with one sentence per line, line N of
one the translation (or summary) of line N of the other, as parallel corpora are distributed.

read_aligned returns rows {"source", "target", "line"}; files with different line counts are one
error naming both files and their counts. Lines are split on \\n only (a sentence holding \\x85 or
\\u2028 stays one line), a trailing \\r is dropped, and a pair whose two lines are both empty is
skipped (blank lines at the end of both files). Standard library only.
"""

from pathlib import Path

from .common import PipelineError, read_text


def _lines(path, encoding):
    text = read_text(path, encoding)
    lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the file
    return lines


def read_aligned(source_path, target_path, encoding="utf-8"):
    """Rows {"source", "target", "line"} of two aligned files (line: 1-based, in both files)."""
    for p in (source_path, target_path):
        if not Path(p).is_file():
            raise PipelineError(f"{p}: data file not found; check data_dir and the task's files: entry")
    src, tgt = _lines(source_path, encoding), _lines(target_path, encoding)
    if len(src) != len(tgt):
        raise PipelineError(
            f"{target_path}: {len(tgt)} lines, but {source_path} has {len(src)}; aligned files need one "
            f"sentence per line in both, line N of one matching line N of the other"
        )
    return [
        {"source": s, "target": t, "line": n} for n, (s, t) in enumerate(zip(src, tgt), 1) if s.strip() or t.strip()
    ]
