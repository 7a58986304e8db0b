"""One markdown summary of a bench/gpu_session.sh run: the environment, the training sweep's table
(with the 7B target: >= 12,000 real tokens/s at <= 40 GiB peak), the generation backends, qlora and
the test subset. Standard library only; reads what the session wrote to OUTDIR and writes
OUTDIR/summary.md (atomically), then prints it.

  python bench/session_summary.py OUTDIR
"""

import json
import os
import re
import sys
from pathlib import Path

TARGET_TOK_S, TARGET_GIB = 12000, 40.0


def cell(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v).replace("|", "/")


def table(rows):
    """A markdown table of a list of dicts (every key of every row, first-seen order)."""
    if not rows:
        return "(no rows)\n"
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out) + "\n"


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def part(out, title, name, status):
    """The section of one part: its JSON rows as a table, else the status line and its log's tail."""
    lines = [f"## {title}\n"]
    status_file = out / f"{name}.status"
    if status_file.is_file():
        lines.append(status_file.read_text().strip() + "\n")
    data = load(out / f"{name}.json")
    more = load(out / f"{name}_liger.json")  # the sweep's second process
    if isinstance(data, list) and isinstance(more, list):
        data = data + more
    if (out / f"{name}_liger.status").is_file():
        lines.append((out / f"{name}_liger.status").read_text().strip() + "\n")
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        lines.append(table(data))
        if status:
            lines.append(status(data))
    elif data is not None:
        lines.append("```\n" + json.dumps(data, indent=1)[:4000] + "\n```\n")
    elif (out / f"{name}.log").is_file():
        tail = (out / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
        lines.append("no JSON written; the log's last lines:\n\n```\n" + "\n".join(tail) + "\n```\n")
    return "\n".join(lines)


def sweep_target(rows):
    ok = [r for r in rows if r.get("result") == "ok"]
    met = [
        r
        for r in ok
        if isinstance(r.get("real_tok/s"), float)
        and r["real_tok/s"] >= TARGET_TOK_S
        and r.get("peak_GiB", 1e9) <= TARGET_GIB
    ]
    best = max(ok, key=lambda r: r["real_tok/s"], default=None)
    head = f"target (7B, one H100-class GPU): >= {TARGET_TOK_S:,} real tokens/s at <= {TARGET_GIB:.0f} GiB peak: "
    if met:
        names = ", ".join(f"{r['tokens/step']}/{r['pack']}/ckpt {r['ckpt']}/{r['kernels']}" for r in met)
        head += f"met by {len(met)} point(s) ({names})"
    else:
        head += "not met"
    if best:
        head += f"; fastest: {best['real_tok/s']:,.0f} tok/s at {best['peak_GiB']:.1f} GiB"
    return head + "\n"


def tests_section(out):
    log = out / "pytest.log"
    if not log.is_file():
        return "## (d) CUDA test subset\n\nnot run\n"
    text = log.read_text(errors="replace")
    final = [
        line for line in text.splitlines() if re.search(r"\b(passed|failed|skipped|error)\b", line) and "==" in line
    ]
    skips = [line for line in text.splitlines() if line.startswith("SKIPPED")]
    fails = [line for line in text.splitlines() if line.startswith(("FAILED", "ERROR"))]
    exit_line = [line for line in text.splitlines() if line.startswith("pytest exit")]
    body = "\n".join(
        (final[-1:] or ["no pytest summary line (stopped by the time cap?)"]) + exit_line + fails[:20] + skips[:20]
    )
    return f"## (d) CUDA test subset\n\n```\n{body}\n```\n"


def main(outdir):
    out = Path(outdir)
    env = (out / "env.txt").read_text() if (out / "env.txt").is_file() else ""
    sections = [
        "# GPU session\n",
        "```\n" + env.strip() + "\n```\n",
        part(out, "(a) LoRA training sweep", "sweep", sweep_target),
        part(out, "(b) generation: transformers (static cache + compile) against vLLM", "generate", None),
        part(out, "(c) qlora on the same shape", "qlora", None),
        tests_section(out),
    ]
    text = "\n".join(sections)
    tmp = out / ".summary.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / "summary.md")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/gpu_session")
