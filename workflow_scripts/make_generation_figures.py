"""Snakemake script: a generation task's figures (rule generation_figures): metric bars of every
model x method at the first decoding, metric-vs-decoding-parameter sweeps, training curves."""

import json
from pathlib import Path

from finetune_study import common, plots

runs = json.loads(snakemake.params.runs)
decodings = json.loads(snakemake.params.decodings)
with common.log_to(common.snakemake_log(snakemake)):
    metrics = dict(zip([tuple(r[:3]) for r in runs], [common.read_json(p) for p in snakemake.input.metrics]))
    first = next(iter(decodings))
    bars = [(plots.run_label(m, meth, role), metrics[(m, meth, d)]) for m, meth, d, role in runs if d == first]
    plots.generation_bars(
        [b[0] for b in bars], [b[1] for b in bars], snakemake.output.scores, title=f"decoding: {first}"
    )
    series = {}
    for m, meth, d, role in runs:
        series.setdefault(plots.run_label(m, meth, role), {})[d] = metrics[(m, meth, d)]
    plots.decoding_sweep(series, decodings, snakemake.output.sweep)
    names = ["/".join(Path(p).parent.parts[-2:]) for p in snakemake.input.train_logs]  # model/<method>-s<seed>
    plots.training_curves(names, [common.read_json(p) for p in snakemake.input.train_logs], snakemake.output.training)
