"""The forgetting check, the comparison: each fine-tuned run against its base model on the same
benchmark items (lm-eval's per-item scores, lm_eval_tasks.evaluate), with a paired bootstrap of
the difference; its figure, its report table and its rows of results/metrics.csv.

A fine-tune's base is its model's zero-shot run, benchmarked by the same job on the same first
`limit` items of each set; the items are matched by lm-eval's doc_id and checked by its doc_hash.
"""

from . import plots, report, results_table, runs, stats
from .benchmarks import SETS
from .report import esc
from .report_blocks import NBSP, ci

METRIC_LABELS = {"acc": "acc", "acc_norm": "acc_norm"}
SET_LABELS = {
    "arc_easy": "ARC-Easy (test)",
    "arc_challenge": "ARC-Challenge (test)",
    "piqa": "PIQA (validation)",
    "boolq": "BoolQ (validation, first 3,000)",
    "winogrande": "WinoGrande (dev, partial scoring)",
    "hellaswag": "HellaSwag (validation, 1,000-row cut)",
}


def excludes_zero(interval):
    return interval["low"] > 0 or interval["high"] < 0


def paired_difference(base_items, tuned_items, metric, n_resamples, seed=0):
    """Fine-tuned minus base on the same items: {"n", "base", "tuned", "diff": {"mean", "low",
    "high"}, "excludes_zero"}. The items are {doc_id: row} of one set; they must be the same items
    (doc_id and lm-eval's doc_hash), else ValueError."""
    if set(base_items) != set(tuned_items):
        raise ValueError(f"the runs scored different items ({len(base_items)} vs {len(tuned_items)} doc_ids)")
    ids = sorted(base_items)
    for i in ids:
        if base_items[i]["doc_hash"] != tuned_items[i]["doc_hash"]:
            raise ValueError(f"item {i} differs between the runs (doc_hash)")
    a = [base_items[i][metric] == 1.0 for i in ids]
    b = [tuned_items[i][metric] == 1.0 for i in ids]
    diff = stats.paired_bootstrap_diff(a, b, n_resamples=n_resamples, seed=seed)
    return {
        "n": len(ids),
        "base": sum(a) / len(a),
        "tuned": sum(b) / len(b),
        "diff": diff,
        "excludes_zero": excludes_zero(diff),
    }


def compare(run_list, sets, results, samples, n_resamples):
    """run_list: [(model, run)] as benchmarks.benchmark_runs; sets: the set names, in the config's
    order; results and samples: {(model, run):
    results.json, samples rows}. {"sets", "rows": [per run: model, method, sets], "paired": [per
    fine-tuned run x set x metric: model, method, set, metric, n, base, tuned, diff, excludes_zero]}."""
    out = {"sets": list(sets), "rows": [], "paired": []}
    for m, r in run_list:
        res = results[(m, r)]
        out["rows"].append({"model": m, "method": r, "dtype": res["provenance"].get("dtype"), "sets": res["sets"]})
    for m, r in run_list:
        if runs.method_seed(r) is None:
            continue
        for s in sets:
            base = {x["doc_id"]: x for x in samples[(m, "zeroshot")] if x["set"] == s}
            tuned = {x["doc_id"]: x for x in samples[(m, r)] if x["set"] == s}
            for metric in ("acc", "acc_norm"):
                if results[(m, r)]["sets"][s].get(metric) is None:
                    continue
                out["paired"].append(
                    {"model": m, "method": r, "set": s, "metric": metric}
                    | paired_difference(base, tuned, metric, n_resamples)
                )
    return out


def figure(comp, path):
    """Fine-tuned minus base, per set and metric, with the paired 95% interval: one marker per
    fine-tuned run, a vertical line at no change. Zero-shot scores only (no fine-tune): their acc."""
    fig, ax = plots.plt.subplots(figsize=(8, 1.2 + 0.45 * max(1, len(comp["paired"]) or len(comp["rows"]))))
    if comp["paired"]:
        labels = []
        for y, p in enumerate(comp["paired"]):
            d = p["diff"]
            color = "tab:red" if p["excludes_zero"] and d["mean"] < 0 else "tab:blue"
            ax.errorbar(
                d["mean"],
                y,
                xerr=[[d["mean"] - d["low"]], [d["high"] - d["mean"]]],
                fmt="o",
                color=color,
                capsize=3,
            )
            labels.append(
                f"{SET_LABELS.get(p['set'], p['set'])} {p['metric']}: {plots.run_label(p['model'], p['method'], '')}"
            )
        ax.axvline(0, color="grey", lw=1)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("fine-tuned minus base (paired bootstrap 95% interval; red: a loss that excludes 0)", fontsize=8)
    else:
        labels = [
            f"{SET_LABELS.get(s, s)}: {plots.run_label(r['model'], r['method'], '')}"
            for r in comp["rows"]
            for s in comp["sets"]
        ]
        values = [r["sets"][s] for r in comp["rows"] for s in comp["sets"]]
        ax.errorbar(
            [v["acc"] for v in values],
            range(len(values)),
            xerr=[1.96 * (v["acc_stderr"] or 0) for v in values],
            fmt="o",
            capsize=3,
        )
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("acc (± 1.96 × lm-eval's standard error)", fontsize=8)
    ax.set_title("General ability: standard benchmarks (lm-evaluation-harness, zero-shot)", fontsize=9)
    plots.save_fig(fig, path)


def _score(sc, metric):
    v = sc.get(metric)
    if v is None:
        return "-"
    se = sc.get(f"{metric}_stderr")
    return f"{v:.3f}" + ("" if se is None else f" ±{NBSP}{se:.3f}")


def section(task, comp, roles, figure_path, read, limit):
    """The task's "general ability" block: every benchmarked run's scores per set, then each
    fine-tune against its base with the paired difference, flagged where its interval excludes zero."""
    out = ["<h3>General ability: standard benchmarks before and after fine-tuning</h3>"]
    cols = [(s, m) for s in comp["sets"] for m in SETS[s][4]]  # lm-eval's metrics of each set
    header = ["run", "role"] + [f"{SET_LABELS.get(s, s)} {m}" for s, m in cols]
    rows = []
    for r in comp["rows"]:
        rows.append(
            [plots.run_label(r["model"], r["method"], ""), roles.get((r["model"], r["method"]), "")]
            + [_score(r["sets"][s], m) for s, m in cols]
        )
    out.append(report.table(header, rows, num_cols=range(2, len(header)), label_cols=(0,)))
    if comp["paired"]:
        prow = [
            [
                plots.run_label(p["model"], p["method"], ""),
                SET_LABELS.get(p["set"], p["set"]),
                p["metric"],
                p["n"],
                f"{p['base']:.3f}",
                f"{p['tuned']:.3f}",
                ci(p["diff"]),
                ("lower" if p["diff"]["mean"] < 0 else "higher") if p["excludes_zero"] else "",
            ]
            for p in comp["paired"]
        ]
        out.append(
            report.table(
                [
                    "fine-tune",
                    "set",
                    "metric",
                    "n",
                    "base",
                    "fine-tuned",
                    "difference [95% interval]",
                    "interval excludes 0",
                ],
                prow,
                num_cols=(3, 4, 5, 6),
                label_cols=(0,),
            )
        )
    n = "all items" if limit is None else f"the first {limit} items"
    out.append(
        "<p class='caption'>lm-evaluation-harness, zero-shot, on the local copies of the sets ("
        + esc(n)
        + " of each): lm-eval's own task definitions pointed at the local files, so its prompts, choices and "
        "normalisation (acc_norm: by the answer's length in bytes); each score ± lm-eval's standard error. A "
        "fine-tune is run with its adapter on its base model (no merged copy) and compared with that base's "
        "zero-shot scores on the same items: difference with a paired bootstrap 95% interval over items; "
        "<i>lower</i>/<i>higher</i> where the interval excludes zero. BoolQ and WinoGrande have acc only in "
        "lm-eval.</p>"
    )
    out.append(report.image(read.path(figure_path), f"{task} general ability"))
    return "".join(out)


def table_rows(task, comp, roles, dtypes):
    """One results/metrics.csv row per benchmarked run x set (results_table.BENCHMARK_COLUMNS)."""
    paired = {(p["model"], p["method"], p["set"], p["metric"]): p for p in comp["paired"]}
    out = []
    for r in comp["rows"]:
        for s in comp["sets"]:
            sc = r["sets"][s]
            row = results_table.run_row(task, r["model"], r["method"], roles.get((r["model"], r["method"]), ""))
            row.update(
                benchmark=s,
                n=sc["n"],
                dtype=dtypes.get((r["model"], r["method"])),
                acc=sc["acc"],
                acc_stderr=sc["acc_stderr"],
                acc_norm=sc["acc_norm"],
                acc_norm_stderr=sc["acc_norm_stderr"],
            )
            for metric in ("acc", "acc_norm"):
                p = paired.get((r["model"], r["method"], s, metric))
                if p:
                    d = p["diff"]
                    name = f"{metric}_diff_vs_base"
                    row[name], row[f"{name}_low"], row[f"{name}_high"] = d["mean"], d["low"], d["high"]
            out.append(row)
    return out
