"""The data side of the config fuzz (config_fuzz.py): cut copies of the shared data files, and the
mutations drawn for a data file of a selected task: non-UTF-8 bytes, a column renamed, a row's
label changed (a label in one split only) or a label's rows dropped (a label missing from a split),
emptied, header only, truncated mid-line, garbage, CRLF line ends, a BOM, blank lines, a huge line,
the file removed."""

import csv
import io
import json

from hypothesis import strategies as st

ROWS = 40  # rows kept of each data file


def _spread(items, n=ROWS):
    step = max(1, len(items) // n)
    return items[::step][:n]


def cut(src, dest, header):
    """dest: a few dozen rows of src, spread over the file (sentences of a CoNLL file, records of
    JSON and CSV), the header kept."""
    raw = src.read_bytes()
    ext = src.suffix.lower()
    if ext == ".json":
        dest.write_text(json.dumps(_spread(json.loads(raw)), ensure_ascii=False), encoding="utf-8")
    elif ext == ".conll":
        blocks = raw.decode("utf-8").split("\n\n")
        dest.write_text("\n\n".join(blocks[:ROWS]) + "\n", encoding="utf-8")
    elif ext == ".csv":
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        head, body = (rows[:1], rows[1:]) if header else ([], rows)
        out = io.StringIO(newline="")
        csv.writer(out, lineterminator="\n").writerows(head + _spread(body))
        dest.write_text(out.getvalue(), encoding="utf-8")
    else:  # txt, tsv, jsonl, aligned plain text: one row a line
        lines = raw.split(b"\n")
        head, body = (lines[:1], lines[1:]) if header and ext != ".jsonl" else ([], lines)
        dest.write_bytes(b"\n".join(head + _spread([x for x in body if x.strip()])) + b"\n")


DATA_OPS = [
    "non_utf8",
    "rename_column",
    "new_label",
    "drop_label",
    "empty",
    "header_only",
    "truncate",
    "garbage",
    "crlf",
    "bom",
    "blank_lines",
    "delete",
    "huge_line",
]


@st.composite
def data_mutation(draw):
    """(op, which data file (an index into the selected tasks' files), a line index, a byte cut, bytes)."""
    return (
        draw(st.sampled_from(DATA_OPS)),
        draw(st.integers(0, 50)),
        draw(st.integers(0, ROWS)),
        draw(st.floats(0, 1)),
        draw(st.binary(max_size=64)),
    )


def _tokens(line):
    for sep in ("\t", ";", ",", '"', " "):
        line = line.replace(sep.encode(), b"\x00")
    return [t for t in line.split(b"\x00") if t.strip() and t.strip() != b":"]


def mutate_data_file(path, mutation):
    """Apply one data mutation to the file at path (a copy the example owns)."""
    op, _, line_no, cut, junk = mutation
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    i = line_no % max(1, len(lines))
    if op == "non_utf8":
        lines[i] = lines[i][: len(lines[i]) // 2] + b"caf\xe9\xff" + lines[i][len(lines[i]) // 2 :]
    elif op == "rename_column" and _tokens(lines[0]):
        old = _tokens(lines[0])[i % len(_tokens(lines[0]))]
        lines = [
            x.replace(old, old + b"_renamed") if n == 0 or path.suffix == ".jsonl" else x for n, x in enumerate(lines)
        ]
    elif op == "new_label" and _tokens(lines[i]):
        old = _tokens(lines[i])[-1]
        lines[i] = lines[i][: lines[i].rfind(old)] + b"zzz_new_label" + lines[i][lines[i].rfind(old) + len(old) :]
    elif op == "drop_label" and _tokens(lines[i]):
        label = _tokens(lines[i])[-1]
        lines = [x for n, x in enumerate(lines) if n == 0 or not x.rstrip().endswith(label)]
    elif op == "empty":
        lines = []
    elif op == "header_only":
        lines = lines[:1]
    elif op == "truncate":
        path.write_bytes(raw[: int(len(raw) * cut)])
        return
    elif op == "garbage":
        lines[i] = junk
    elif op == "crlf":
        lines = [x + b"\r" for x in lines]
    elif op == "bom":
        lines[0] = b"\xef\xbb\xbf" + lines[0]
    elif op == "blank_lines":
        lines[i:i] = [b"", b"  ", b""]
    elif op == "delete":
        path.unlink()
        return
    elif op == "huge_line":
        lines[i] = lines[i] + b"x" * 200_000
    path.write_bytes(b"\n".join(lines))
