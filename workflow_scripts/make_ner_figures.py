"""Snakemake script: a token-classification task's figures (rule ner_figures): entity F1 per run
(strict spans and (type, text) pairs, with intervals), F1 per entity type per run, and the
fine-tunes' training curves."""

import json
from pathlib import Path

from finetune_study import common, plots

listing = json.loads(snakemake.params.runs)  # [model, run, model kind or "baseline"]
types = json.loads(snakemake.params.entity_types)
with common.log_to(common.snakemake_log(snakemake)):
    metrics = [common.read_json(p) for p in snakemake.input.metrics]
    labels = [plots.seeded_run_label(m, r, k) for m, r, k in listing]
    task = Path(snakemake.output.scores).parent.parent.name
    plots.entity_bars(labels, [m["intervals"] for m in metrics], snakemake.output.scores, title=task)
    per_type = [[m["pairs"]["per_type"].get(t, {}).get("f1") for t in types] for m in metrics]
    plots.per_type_heatmap(labels, types, per_type, snakemake.output.per_type)
    logs = [common.read_json(p) for p in snakemake.input.train_logs]
    plots.training_curves(
        ["/".join(Path(p).parent.parts[-2:]) for p in snakemake.input.train_logs], logs, snakemake.output.training
    )
