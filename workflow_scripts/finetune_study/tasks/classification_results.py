"""Classification, the report's part: the task's section (headline table with intervals, the
majority baseline and paired tests, figures, data, per-class scores, fine-tuning, samples, raw
prompt vs chat template) and its rows of results/metrics.csv. `read`: the report job's declared
inputs (paths.DeclaredInputs)."""

from .. import comparison, paths, plots, report, results_table, runs
from ..report import esc, fmt
from ..report_blocks import (
    N_SAMPLES,
    ci,
    finetune_cost_table,
    grid_section,
    published_caption,
    pvalue,
    short_dtype,
    vs_baseline,
    with_vs_baseline,
)
from .classification import TABLE_METRICS

HEADLINE_HEADER = [
    "run",
    "role",
    "seeds",
    "scoring / head",
    "dtype",
    "accuracy",
    "macro F1",
    "weighted F1",
    "unparsed",
    "McNemar p vs zero-shot",
    "accuracy vs majority (paired), McNemar p",
    "n",
]


def headline_table(rows):
    """The results table's HTML: the metric columns break between estimate and interval, the run
    names at spaces, so that the table fits a 1280 px window."""
    return report.table(HEADLINE_HEADER, rows, num_cols=(11,), wrap_cols=(5, 6, 7, 10), kind="headline")


def headline(task, entry, comp, metrics, read):
    """The task's results table: every run with 95% intervals (mean ± sd over seeds for replicated
    fine-tunes), the majority baseline, and each fine-tune's McNemar p against its zero-shot row."""
    role = {(m, meth): r for m, meth, r in entry["runs"]}
    paired, vs_base = {}, {}
    for t in comp["paired"]:
        paired.setdefault((t["model"], runs.run_group_of(t["method"])), []).append(t["mcnemar"]["p"])
    for t in comp.get("vs_baseline", []):
        vs_base.setdefault((t["model"], runs.run_group_of(t["method"])), []).append(t)
    rows = []
    for r in comp["rows"]:
        m, meth = r["model"], r["method"]
        first = comparison.representative_run(r)[1]
        x = metrics[(m, first)]
        near = x.get("near_misses", {}).get("count", 0)
        unparsed = f"{r['unparsed_share']:.1%}" + (f" ({near} near-miss)" if near else "")
        scoring = "-" if meth == "baseline" else entry["scoring"].get(m, "")
        if scoring == "likelihood":
            scoring += f" ({entry['likelihood_normalization']})"
        if x.get("head"):  # the full name is in the caption
            scoring = "mean-pooling head" if x["head"].startswith("mean") else "CLS-pooler head"
        p = paired.get((m, meth))
        rows.append(
            [
                plots.run_label(m, meth, "encoder" if "head" in x and x["head"] else ""),
                role.get((m, first), ""),
                ", ".join(map(str, r["seeds"])) or "-",
                scoring,
                short_dtype(results_table.run_dtype(read, f"results/{task}/{m}/{first}")),
                ci(r["accuracy"]),
                ci(r["macro_f1"]),
                ci(r["weighted_f1"]),
                unparsed,
                (pvalue(max(p)) + (f" (largest of {len(p)} seeds)" if len(p) > 1 else "")) if p else "",
                vs_baseline(vs_base.get((m, meth), [])),
                r["n"],
            ]
        )
    for p in entry.get("published", []):
        rows.append(
            [f"published, not reproduced: {p['run']}", "", "-", "-", "-"]
            + [fmt(p["metrics"][k], 3) if k in p["metrics"] else "-" for k in ("accuracy", "macro_f1", "weighted_f1")]
            + ["-", "", "", p["n"] or ""]
        )
    out = [headline_table(rows)]
    out.append(
        "<p class='caption'>Test split. Single runs: point estimate [95% bootstrap interval over test items]. "
        "Replicated fine-tunes: mean ± sample sd over seeds (per-seed values and intervals below). "
        "McNemar: exact two-sided test of each fine-tuned seed against the same model's zero-shot row on the "
        "same items (with several seeds, the largest p). Against the majority baseline: each run's accuracy minus "
        "the baseline's on the same items [95% paired bootstrap interval], exact McNemar p. Unparsed outputs count "
        "as wrong; a near-miss names a label's "
        "stem (e.g. 'sad'). Heads: mean pooling for sentence-transformers checkpoints (their BERT pooler was never "
        "trained), the CLS pooler (AutoModelForSequenceClassification) otherwise. dtype: what the model's "
        "matmuls ran in (bf16: bfloat16 base weights, trained weights and loss in float32).</p>"
    )
    out.append(published_caption(entry))
    seeded = [r for r in comp["rows"] if len(r.get("per_seed", [])) > 1]
    if seeded:
        out.append(
            "<details><summary>per-seed values</summary>"
            + report.table(
                ["run", "seed", "accuracy", "macro F1", "weighted F1"],
                [
                    [
                        plots.run_label(r["model"], r["method"], ""),
                        s["seed"],
                        ci(s["accuracy"]),
                        ci(s["macro_f1"]),
                        ci(s["weighted_f1"]),
                    ]
                    for r in seeded
                    for s in r["per_seed"]
                ],
                num_cols=(1, 2, 3, 4),
                label_cols=(0,),
            )
            + "</details>"
        )
    return "".join(out)


def task_section(task, entry, read):
    listed = entry["runs"]
    base = f"results/{task}"
    summary = read.json(f"{base}/data/summary.json")
    comp = read.json(f"{base}/comparison.json")
    metrics = {(m, meth): read.json(f"{base}/{m}/{meth}/metrics.json") for m, meth, _ in listed}
    kinds = {(m, meth): ("encoder" if metrics[(m, meth)].get("head") else "causal_lm") for m, meth, _ in listed}
    out = [
        f"<h2>Task: {esc(task)}</h2>",
        "<h3>Results on the test split</h3>",
        headline(task, entry, comp, metrics, read),
    ]
    out.append(report.image(read.path(f"{base}/figures/scores.png"), f"{task} scores"))
    out.append(grid_section(task, entry, read))
    out.append("<h3>Data</h3>")
    out.append(
        report.table(
            ["split", "rows", "duplicates removed"] + summary["labels"],
            [
                [s, v["rows"], v.get("duplicates_removed", 0)] + [v["label_counts"][lab] for lab in summary["labels"]]
                for s, v in summary["splits"].items()
            ],
            num_cols=range(1, 3 + len(summary["labels"])),
        )
    )
    out.append(
        "<p class='caption'>Exact-duplicate texts are removed within each split and across splits (a text in "
        "test is dropped from validation and train; one in validation from train). Subsamples are stratified "
        "by label.</p>"
    )
    names = {r: plots.run_label(r[0], r[1], kinds[r]) for r in metrics}
    per_class = "".join(
        f"<h4>{esc(names[r])} ({esc(r[1])})</h4>"
        + report.table(
            ["label", "precision", "recall", "F1", "support"],
            [
                [lab, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"]]
                for lab, v in x["per_class"].items()
            ],
            num_cols=(1, 2, 3, 4),
        )
        for r, x in metrics.items()
    )
    out.append(f"<details><summary>per-class precision and recall</summary>{per_class}</details>")
    out.append(
        "<h3>Confusion matrices</h3>" + report.image(read.path(f"{base}/figures/confusion.png"), f"{task} confusion")
    )
    finetuned = [(m, meth) for m, meth, _ in listed if runs.method_seed(meth) is not None]
    out.append("<h3>Fine-tuning</h3>")
    if finetuned:
        logs = [read.json(f"{base}/{m}/{meth}/train_log.json") for m, meth in finetuned]
        out.append(finetune_cost_table(read, task, finetuned))
        out.append(
            report.table(
                [
                    "run",
                    "seed",
                    "steps",
                    "best step",
                    "best val loss",
                    "best val perplexity",
                    "stopped early",
                    "resumed at",
                ],
                [
                    [
                        plots.run_label(m, meth, ""),
                        runs.method_seed(meth),
                        g["final_step"],
                        g["best_step"],
                        fmt(g["best_val_loss"]),
                        fmt(min(e["val_perplexity"] for e in g["evals"]), 3),
                        g["stopped_early"],
                        ", ".join(map(str, g["resumed_from"])) or "-",
                    ]
                    for (m, meth), g in zip(finetuned, logs)
                ],
            )
        )
    out.append(report.image(read.path(f"{base}/figures/training.png"), f"{task} training curves"))
    preds = [{r["id"]: r for r in read.jsonl(f"{base}/{m}/{meth}/predictions.jsonl")} for m, meth, _ in listed]
    rows = []
    for i in sorted(preds[0])[:N_SAMPLES]:
        first = preds[0][i]
        cells = [first["text"][:300], first["gold"]]
        for p in preds:
            r = p[i]
            shown = r["pred"] if r["pred"] is not None else "(unparsed)"
            cells.append(
                shown + (f" [{r['output'].strip()[:60]}]" if r.get("output") and r["output"] != r["pred"] else "")
            )
        rows.append(cells)
    out.append(
        "<h3>Sample predictions</h3>"
        + report.table(["text", "gold"] + [names[(m, meth)] for m, meth, _ in listed], rows)
    )
    return "".join(out)


def prompt_form_section(task, entry, read):
    """Raw prompt vs chat template for the same instruct model: accuracy and outputs side by side."""
    base = f"results/{task}"
    out = []
    for m, meth, role in entry["runs"]:
        if meth != "raw":
            continue
        raw = read.jsonl(f"{base}/{m}/raw/predictions.jsonl")
        chat = read.jsonl(f"{base}/{m}/zeroshot/predictions.jsonl")
        acc = {k: read.json(f"{base}/{m}/{k}/metrics.json")["accuracy"] for k in ("raw", "zeroshot")}
        out.append(
            f"<h3>Raw prompt vs chat template: {esc(m)}</h3><p>accuracy with the chat template "
            f"{acc['zeroshot']:.4f}, with the raw prompt {acc['raw']:.4f}</p>"
        )
        out.append(
            report.table(
                ["text", "gold", "chat template answer", "raw prompt answer"],
                [
                    [c["text"][:200], c["gold"], c["output"] or c["pred"], r["output"] or r["pred"]]
                    for c, r in zip(chat[:N_SAMPLES], raw)
                ],
            )
        )
        if chat and chat[0].get("output_ids"):
            ids = chat[0]["output_ids"]
            out.append(
                "<h4>Decoding, token by token (first test example)</h4>"
                + report.table(["token id", "decoded"], [[i, t] for i, t in zip(ids, chat[0]["output_tokens"])])
                + f"<p>decoded together: <code>{esc(chat[0]['output'])}</code></p>"
            )
    return "".join(out)


def section(task, entry, read):
    return task_section(task, entry, read) + prompt_form_section(task, entry, read)


def provenance_folders(task, entry):
    """(model, run, folder, label) of every run's provenance.json: one per run."""
    return [(m, meth, paths.RUN_DIR.format(task=task, model=m, method=meth), "") for m, meth, _ in entry["runs"]]


def table_rows(task, entry, read):
    """One results/metrics.csv row per run (the majority baseline included)."""
    comp = read.json(paths.COMPARISON.format(task=task))
    pvals = {(p["model"], p["method"]): p["mcnemar"]["p"] for p in comp["paired"]}
    vs_base = {(t["model"], t["method"]): t for t in comp.get("vs_baseline", [])}
    out = []
    for model, method, role in entry["runs"]:
        m = read.json(paths.METRICS.format(task=task, model=model, method=method))
        row = results_table.run_row(task, model, method, role)
        seed = row["seed"]
        row |= {
            "n": m["n"],
            "unparsed_share": m["unparsed_share"],
            "near_misses": m.get("near_misses", {}).get("count"),
            "dtype": results_table.run_dtype(read, paths.RUN_DIR.format(task=task, model=model, method=method)),
            "mcnemar_p_vs_zeroshot": pvals.get((model, method)),
        }
        with_vs_baseline(row, vs_base.get((model, method)))
        if seed is not None:
            row.update(results_table.finetune_cost(read, task, model, method))
        for k in TABLE_METRICS:
            results_table.with_interval(row, k, m["intervals"][k])
        out.append(row)
    return out
