"""The self-contained HTML report: tables, embedded PNG figures, sample predictions and a
provenance footer. Every string from data, config or model output goes through html.escape."""

import base64
import html
import importlib.metadata
import subprocess
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222;overflow-wrap:break-word}
table{border-collapse:collapse;margin:1em 0;font-size:14px;display:block;max-width:100%;overflow-x:auto}
.table-wrap{max-width:100%;overflow-x:auto;margin:1em 0}.table-wrap>table{display:table;max-width:none;margin:0}
td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}td:not(.num){overflow-wrap:break-word}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.label{white-space:nowrap;overflow-wrap:normal}td.num.wrap{white-space:normal}
.headline th{font-size:13px;vertical-align:bottom}.headline td{padding:4px 6px}
img{max-width:100%;height:auto}
pre{background:#f7f7f7;padding:.8em;overflow-x:auto;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere;max-width:100%;box-sizing:border-box}
code{overflow-wrap:anywhere}
.note{background:#fff8e1;padding:.6em 1em;border-left:4px solid #f0b400}.ok{color:#1a7f37}.bad{color:#b42318}
footer{margin-top:3em;font-size:12px;color:#555}"""
PACKAGES = [
    "torch",
    "transformers",
    "peft",
    "snakemake",
    "scikit-learn",
    "sacrebleu",
    "rouge-score",
    "bert-score",
    "seqeval",
    "matplotlib",
    "datasets",
]


def esc(x):
    return html.escape(str(x), quote=True)


def table(header, rows, num_cols=(), label_cols=(), wrap_cols=(), kind=""):
    """An HTML table, every cell escaped. num_cols: right-aligned numbers; label_cols: names kept on
    one line (the wrapper scrolls instead); wrap_cols: numbers that may break at a space (an estimate
    above its interval: report_blocks.ci keeps the interval itself on one line); kind: a class of the
    wrapper (headline: a task's results table, which fits a 1280 px window)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    cls = (
        {i: " class='num'" for i in num_cols}
        | {i: " class='num wrap'" for i in wrap_cols}
        | {i: " class='label'" for i in label_cols}
    )
    body = ""
    for r in rows:
        body += "<tr>" + "".join(f"<td{cls.get(i, '')}>{esc(c)}</td>" for i, c in enumerate(r)) + "</tr>"
    # the wrapper scrolls sideways when the table is wider than the page (long cells wrap anywhere)
    wrap = f"table-wrap {kind}".strip()
    return f"<div class='{wrap}'><table><tr>{head}</tr>{body}</table></div>"


def image(path, alt):
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def fmt(x, digits=4):
    return "" if x is None else f"{x:.{digits}f}"


def git_commit():
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions():
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = "not installed"
    return versions


def provenance(config_text, hashes_html=""):
    """The footer: code version, packages, the configuration, and per run the first 12 hex digits of
    the hashes its key was built from, so two rows (or two reports) can be told to share inputs."""
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    hashes = (
        (
            "<h3>What each run was built from</h3><p>SHA-256 prefixes of the prepared data splits, the model "
            "weights and the adapter, and the fingerprint of the code the run's stage executes. Equal hashes mean "
            "equal inputs.</p>" + hashes_html
        )
        if hashes_html
        else ""
    )
    return (
        f"<footer><h2>Provenance</h2><p>git commit: <code>{esc(git_commit())}</code></p>"
        f"<p>packages: {esc(versions)}</p>{hashes}<details><summary>configuration</summary><pre>{esc(config_text)}</pre>"
        "</details></footer>"
    )


def page(title, sections, notes, config_text, hashes_html=""):
    notes_html = "".join(f"<p class='note'>{esc(n)}</p>" for n in notes)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{STYLE}</style>"
        f"</head><body><h1>{esc(title)}</h1>{notes_html}{''.join(sections)}{provenance(config_text, hashes_html)}"
        "</body></html>\n"
    )
