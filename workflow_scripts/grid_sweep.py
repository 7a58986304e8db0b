"""Snakemake script: a task's training grids (rule training_grid, rules/figures.smk): every point's
validation loss and test metrics, the point chosen on validation loss (never on test), and the sweep
figure (each metric against each swept parameter, with intervals). See lora_pipeline/grid_summary.py."""

import json

from lora_pipeline import common, grid_summary, keys, plots

grids = json.loads(snakemake.params.grids)  # [[model, method, [[point, swept values]], [seeds]]]
CLASSIFICATION = [("accuracy", "accuracy"), ("macro_f1", "macro F1")]
GENERATION = [("bleu", "BLEU"), ("rouge_l", "ROUGE-L F")]

with common.log_to(common.snakemake_log(snakemake)):
    logs = dict(zip(snakemake.params.runs, snakemake.input.train_logs))
    tests = dict(zip(snakemake.params.runs, snakemake.input.metrics))
    generation = snakemake.params.task_type == "generation"
    metric_names = GENERATION if generation else CLASSIFICATION
    out, figure = [], []
    for model, method, point_list, seeds in grids:
        points = dict(point_list)
        val, test = {}, {}
        for point in points:
            runs = [f"{model}/{keys.run_name(method, s, point)}" for s in seeds]
            val[point] = [common.read_json(logs[r])["best_val_loss"] for r in runs]
            per_seed = [common.read_json(tests[r]) for r in runs]
            test[point] = [m if generation else m["intervals"] for m in per_seed]
        summary = grid_summary.summarize(points, val, test, [k for k, _ in metric_names])
        summary.update(
            model=model,
            method=method,
            seeds=seeds,
            test_split=f"decoding {snakemake.params.decoding}" if generation else "test",
        )
        out.append(summary)
        title = f"{plots.METHOD_LABELS[method]}: {model} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
        figure.append((title, summary, metric_names))
        print(f"{model} {method}: best point on validation loss: {summary['best']}")
    common.write_json(snakemake.output.summary, {"grids": out})
    plots.training_grid(figure, snakemake.output.figure)
