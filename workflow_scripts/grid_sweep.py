"""Snakemake script: a task's training grids (rule training_grid, rules/figures.smk): every point's
validation loss and test metrics, the point chosen on validation loss (never on test), and the sweep
figure (each metric against each swept parameter, with intervals). See finetune_study/grid_summary.py."""

import json

from finetune_study import common, grid_summary, plots, runs
from finetune_study.finetune_methods import METHOD_LABELS

grids = json.loads(snakemake.params.grids)  # [[model, method, [[point, swept values]], [seeds]]]
# the task type's grid metrics and where a run's metrics.json holds them (tasks/<type>.py GRID_METRICS)
metric_names = [tuple(m) for m in json.loads(snakemake.params.metrics)]
field = snakemake.params.metrics_field

with common.log_to(common.snakemake_log(snakemake)):
    logs = dict(zip(snakemake.params.runs, snakemake.input.train_logs))
    tests = dict(zip(snakemake.params.runs, snakemake.input.metrics))
    out, figure = [], []
    for model, method, point_list, seeds in grids:
        points = dict(point_list)
        val, test = {}, {}
        for point in points:
            seed_runs = [f"{model}/{runs.run_name(method, s, point)}" for s in seeds]
            val[point] = [common.read_json(logs[r])["best_val_loss"] for r in seed_runs]
            per_seed = [common.read_json(tests[r]) for r in seed_runs]
            test[point] = [m[field] if field else m for m in per_seed]
        summary = grid_summary.summarize(points, val, test, [k for k, _ in metric_names])
        summary.update(
            model=model,
            method=method,
            seeds=seeds,
            test_split=snakemake.params.test_split,
        )
        out.append(summary)
        title = f"{METHOD_LABELS[method]}: {model} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})"
        figure.append((title, summary, metric_names))
        print(f"{model} {method}: best point on validation loss: {summary['best']}")
    common.write_json(snakemake.output.summary, {"grids": out})
    plots.training_grid(figure, snakemake.output.figure)
