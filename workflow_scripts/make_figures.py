"""Snakemake script: a task's figures (rule figures, rules/figures.smk): grouped accuracy/F1 bars with
intervals (error bars over seeds for replicated fine-tunes), confusion matrices of every run (the
first seed of a replicated fine-tune), fine-tuning loss and validation perplexity curves."""

import json
from pathlib import Path

from finetune_study import common, comparison, plots, runs

listing = json.loads(snakemake.params.runs)
with common.log_to(common.snakemake_log(snakemake)):
    kind = {(m, meth): k for m, meth, k in listing}
    rows = common.read_json(snakemake.input.comparison)["rows"]
    labels = [plots.run_label(r["model"], r["method"], kind.get((r["model"], r["method"]), "causal_lm")) for r in rows]
    task = Path(snakemake.output.scores).parent.parent.name
    plots.scores_bar(labels, rows, snakemake.output.scores, title=task)
    metrics = dict(zip([(m, meth) for m, meth, _ in listing], [common.read_json(p) for p in snakemake.input.metrics]))
    # one confusion matrix per row: a replicated fine-tune's lowest seed
    first = [comparison.representative_run(r) for r in rows]
    names = [
        plots.run_label(m, meth, kind[(m, meth)])
        + (f" (seed {runs.method_seed(meth)})" if runs.method_seed(meth) is not None else "")
        for m, meth in first
    ]
    plots.confusion_grid(names, [metrics[r] for r in first], snakemake.output.confusion)
    logs = [common.read_json(p) for p in snakemake.input.train_logs]
    plots.training_curves(
        ["/".join(Path(p).parent.parts[-2:]) for p in snakemake.input.train_logs], logs, snakemake.output.training
    )
