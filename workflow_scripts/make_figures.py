"""Snakemake script: a task's figures (rule figures, rules/figures.smk): grouped accuracy/F1 bars,
confusion matrices of every run, LoRA training loss and validation perplexity curves."""
import json
from pathlib import Path

from lora_pipeline import common, plots

runs = json.loads(snakemake.params.runs)
with common.log_to(common.snakemake_log(snakemake)):
    labels = [plots.run_label(m, meth, role) for m, meth, role in runs]
    metrics = [common.read_json(p) for p in snakemake.input.metrics]
    task = Path(snakemake.output.scores).parent.parent.name
    plots.scores_bar(labels, metrics, snakemake.output.scores, title=task)
    plots.confusion_grid(labels, metrics, snakemake.output.confusion)
    names = [Path(p).parent.parent.name for p in snakemake.input.train_logs]
    plots.training_curves(names, [common.read_json(p) for p in snakemake.input.train_logs], snakemake.output.training)
