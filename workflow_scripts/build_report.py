"""Snakemake script: results/report.html from every task's data summary, metrics, predictions,
figures and training logs (rule report, rules/report.smk). Self-contained: figures are embedded."""
import json

import yaml

from lora_pipeline import common, plots, report
from lora_pipeline.report import esc, fmt

runs_by_task = json.loads(snakemake.params.runs)
config = json.loads(snakemake.params.config)
N_SAMPLES = 8


def task_section(task, runs):
    base = f"results/{task}"
    summary = common.read_json(f"{base}/data/summary.json")
    out = [f"<h2>Task: {esc(task)}</h2>"]
    out.append(report.table(["split", "rows"] + summary["labels"],
                            [[s, v["rows"]] + [v["label_counts"][lab] for lab in summary["labels"]]
                             for s, v in summary["splits"].items()], num_cols=range(1, 2 + len(summary["labels"]))))
    names = [plots.run_label(m, meth, role) for m, meth, role in runs]
    metrics = [common.read_json(f"{base}/{m}/{meth}/metrics.json") for m, meth, _ in runs]
    out.append("<h3>Metrics on the test split</h3>")
    out.append(report.table(["run", "accuracy", "macro F1", "weighted F1", "unparsed", "n"],
                            [[n, fmt(x["accuracy"]), fmt(x["macro_f1"]), fmt(x["weighted_f1"]),
                              f"{x['unparsed_share']:.1%}", x["n"]] for n, x in zip(names, metrics)],
                            num_cols=(1, 2, 3, 4, 5)))
    out.append(report.image(f"{base}/figures/scores.png", f"{task} scores"))
    per_class = "".join(
        f"<h4>{esc(n)}</h4>" + report.table(["label", "precision", "recall", "F1", "support"],
                                            [[lab, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"]]
                                             for lab, v in x["per_class"].items()], num_cols=(1, 2, 3, 4))
        for n, x in zip(names, metrics))
    out.append(f"<details><summary>per-class precision and recall</summary>{per_class}</details>")
    out.append("<h3>Confusion matrices</h3>" + report.image(f"{base}/figures/confusion.png", f"{task} confusion"))
    lora = [m for m, meth, _ in runs if meth == "lora"]
    out.append("<h3>Fine-tuning</h3>")
    if lora:
        logs = [common.read_json(f"{base}/{m}/lora/train_log.json") for m in lora]
        out.append(report.table(["model", "steps", "best step", "best val loss", "best val perplexity", "stopped early", "resumed at"],
                                [[m, g["final_step"], g["best_step"], fmt(g["best_val_loss"]),
                                  fmt(min(e["val_perplexity"] for e in g["evals"]), 3), g["stopped_early"],
                                  ", ".join(map(str, g["resumed_from"])) or "-"] for m, g in zip(lora, logs)]))
    out.append(report.image(f"{base}/figures/training.png", f"{task} training curves"))
    preds = [{r["id"]: r for r in common.read_jsonl(f"{base}/{m}/{meth}/predictions.jsonl")} for m, meth, _ in runs]
    rows = []
    for i in sorted(preds[0])[:N_SAMPLES]:
        first = preds[0][i]
        cells = [first["text"][:300], first["gold"]]
        for p in preds:
            r = p[i]
            shown = r["pred"] if r["pred"] is not None else "(unparsed)"
            cells.append(shown + (f" [{r['output'].strip()[:60]}]" if r.get("output") and r["output"] != r["pred"] else ""))
        rows.append(cells)
    out.append("<h3>Sample predictions</h3>" + report.table(["text", "gold"] + names, rows))
    return "".join(out)


with common.log_to(common.snakemake_log(snakemake)):
    sections = [task_section(t, runs) for t, runs in runs_by_task.items()]
    text = report.page(config["report_title"], sections, config["notes"], yaml.safe_dump(config, sort_keys=False))
    common.atomic_write_text(snakemake.output.html, text)
    print(f"wrote {snakemake.output.html} ({len(text) // 1024} KiB)")
