"""Snakemake script: a source -> target task's figures (rule target_figures): every scored run's
metrics with their intervals, and the fine-tunes' training curves."""

import json
from pathlib import Path

from finetune_study import common, plots, target_plots

listing = json.loads(snakemake.params.runs)  # [model, run, decoding, model kind or "baseline"]
metrics = json.loads(snakemake.params.metrics)
with common.log_to(common.snakemake_log(snakemake)):
    scores = [common.read_json(p) for p in snakemake.input.metrics]
    several = len({d for _, r, d, _ in listing if r != "baseline"}) > 1
    labels = [
        plots.seeded_run_label(m, r, k) + (f" [{d}]" if several and r != "baseline" else "") for m, r, d, k in listing
    ]
    task = Path(snakemake.output.scores).parent.parent.name
    target_plots.target_bars(labels, [x["intervals"] for x in scores], metrics, snakemake.output.scores, title=task)
    logs = [common.read_json(p) for p in snakemake.input.train_logs]
    plots.training_curves(
        ["/".join(Path(p).parent.parts[-2:]) for p in snakemake.input.train_logs], logs, snakemake.output.training
    )
