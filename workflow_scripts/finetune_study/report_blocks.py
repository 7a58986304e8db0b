"""Pieces of the report every task type's section uses: intervals and p-values as text, the dtype
column, the fine-tunes' cost table, the published-numbers caption and the training-grid section.
`read` is the report job's declared inputs (paths.DeclaredInputs): nothing else is read."""

from . import plots, report, results_table, runs
from .report import esc, fmt

N_SAMPLES = 8
METHOD = {
    "zeroshot": "zero-shot",
    "raw": "raw prompt (no chat template)",
    "baseline": "majority class of train",
    **plots.METHOD_LABELS,
}


def short_dtype(name):
    return {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(name, name or "-")


NBSP = "\u00a0"  # a space no line breaks at


def ci(m, digits=3):
    """'mean [low, high]' for one run, 'mean ± sd' across seeds. The one place a narrow cell (a
    wrap_cols column of report.table) breaks is after the mean: the interval and '± sd' stay whole."""
    if "sd" in m:
        return f"{m['mean']:.{digits}f} ±{NBSP}{(m['sd'] or 0):.{digits}f}"
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f},{NBSP}{m['high']:.{digits}f}]"


def pvalue(p):
    return "" if p is None else (f"<{NBSP}0.001" if p < 0.001 else f"{p:.3f}")


def vs_baseline(tests, digits=3):
    """A run's paired test against the task's strongest baseline, as a headline cell: 'diff [low,
    high], p' for one run; for several seeds the mean difference and the largest p. tests: the
    records ({"diff", "low", "high", "p"}) of the row's runs; '' without one."""
    tests = [t for t in tests if t]
    if not tests:
        return ""
    if len(tests) == 1:
        t = tests[0]
        return (
            f"{t['diff']:+.{digits}f} [{t['low']:+.{digits}f},{NBSP}{t['high']:+.{digits}f}], p{NBSP}{pvalue(t['p'])}"
        )
    mean = sum(t["diff"] for t in tests) / len(tests)
    return f"{mean:+.{digits}f}, p{NBSP}{pvalue(max(t['p'] for t in tests))} (largest of {len(tests)} seeds)"


def with_vs_baseline(row, test):
    """results/metrics.csv's columns of a run's paired test against the strongest baseline."""
    if test:
        row |= {
            "baseline_compared": test["baseline"],
            "baseline_metric": test["metric"],
            "diff_vs_baseline": test["diff"],
            "diff_vs_baseline_low": test["low"],
            "diff_vs_baseline_high": test["high"],
            "p_vs_baseline": test["p"],
        }
    return row


def finetune_cost_table(read, task, listed):
    """What each fine-tune (model x method x seed) trained and cost: its trainable parameters and their
    share of the model (train_log.json), its finetune job's wall time and peak RSS (Snakemake's
    benchmark TSV). Empty when the task has no fine-tune."""
    rows = []
    for m, meth in listed:
        if runs.method_seed(meth) is None:
            continue
        c = results_table.finetune_cost(read, task, m, meth)
        share = c["trainable_share"]
        point = runs.run_point(meth)
        rows.append(
            [
                m,
                METHOD[runs.run_method(meth)] + (f" {point}" if point else ""),
                runs.method_seed(meth),
                "" if c["trainable_params"] is None else f"{c['trainable_params']:,}",
                "" if share is None else f"{100 * share:.4g} %",
                fmt(c["finetune_time_s"], 1),
                fmt(c["finetune_peak_rss_mib"], 0),
            ]
        )
    if not rows:
        return ""
    return (
        report.table(
            [
                "model",
                "method",
                "seed",
                "trainable params",
                "share of the model",
                "training time (s)",
                "peak RSS (MiB)",
            ],
            rows,
            num_cols=(2, 3, 4, 5, 6),
        )
        + "<p class='caption'>Trainable parameters against all of the model's (adapters included). Time and "
        "memory: Snakemake's benchmark of the whole finetune job (loading, training, validation, saving): "
        "wall time and peak resident memory of its processes (on a GPU, device memory is not in it).</p>"
    )


def published_caption(entry):
    """Where each published reference row comes from and how its setup differs; empty without any."""
    items = [
        f"<li><b>{esc(p['run'])}</b>: {esc(p['source'])}" + (f". {esc(p['note'])}" if p["note"] else "") + "</li>"
        for p in entry.get("published", [])
    ]
    if not items:
        return ""
    return (
        "<p class='caption'>Rows marked <i>published, not reproduced</i> are the original study's own numbers, "
        "read from its output files; this workflow did not compute them, they have no intervals, and their "
        "data, models and metric code are the study's, not this run's:</p><ul class='caption'>"
        + "".join(items)
        + "</ul>"
    )


def grid_section(task, entry, read):
    """A task's training grids: one table per fine-tune with a grid (every point's swept values,
    validation loss, test metrics; the point chosen on validation marked) and the sweep figure."""
    if not entry.get("grid"):
        return ""
    base = f"results/{task}"
    out = ["<h3>Training grid</h3>"]
    for g in read.json(f"{base}/training_grid.json")["grids"]:
        names = [k for k, _ in g["points"][0]["test"].items()]
        rows = [
            [("★ " if p["name"] == g["best"] else "") + p["name"]]
            + [p["values"][k] for k in g["swept"]]
            + [ci(p["val_loss"]) if p["val_loss"]["sd"] is not None else fmt(p["val_loss"]["mean"])]
            + [ci(p["test"][k]) for k in names]
            for p in g["points"]
        ]
        out.append(
            f"<h4>{esc(METHOD[g['method']])}: {esc(g['model'])}, seeds {esc(', '.join(map(str, g['seeds'])))}</h4>"
        )
        out.append(
            report.table(
                ["point"] + g["swept"] + ["validation loss"] + [f"test {k}" for k in names],
                rows,
                num_cols=range(1 + len(g["swept"]), 2 + len(g["swept"]) + len(names)),
                label_cols=(0,),
            )
        )
        out.append(
            f"<p class='caption'>★ the point chosen on the validation split: lowest best-step validation loss, "
            f"mean over seeds ({esc(g['best'])}). Test metrics ({esc(g['test_split'])}) are shown for every point "
            f"but never used to choose; with one seed, 95% bootstrap intervals over test items, with several, "
            f"mean ± sd over seeds.</p>"
        )
    out.append(report.image(read.path(f"{base}/figures/training_grid.png"), f"{task} training grid"))
    return "".join(out)
