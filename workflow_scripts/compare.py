"""Snakemake script: a classification task's runs side by side (rule compare): headline rows with
intervals (mean and sd across seeds for replicated fine-tunes) and each fine-tuned run's paired
McNemar test against its zero-shot row; every run against the majority baseline. See finetune_study/comparison.py."""

import json

from finetune_study import common, comparison

runs = [tuple(r) for r in json.loads(snakemake.params.runs)]
with common.log_to(common.snakemake_log(snakemake)):
    metrics = {r: common.read_json(p) for r, p in zip(runs, snakemake.input.metrics)}
    predictions = {r: common.read_jsonl(p) for r, p in zip(runs, snakemake.input.predictions)}
    result = {
        "rows": comparison.rows_of(runs, metrics),
        "paired": comparison.paired_tests(runs, predictions, snakemake.params.bootstrap),
        "vs_baseline": comparison.baseline_tests(runs, predictions, snakemake.params.bootstrap),
    }
    common.write_json(snakemake.output.comparison, result)
    for t in result["paired"]:
        print(f"{t['model']} {t['method']} vs zero-shot: McNemar p = {t['mcnemar']['p']:.3g}")
    for t in result["vs_baseline"]:
        print(f"{t['model']} {t['method']} vs {t['baseline']}: accuracy {t['diff']:+.4f}, McNemar p = {t['p']:.3g}")
