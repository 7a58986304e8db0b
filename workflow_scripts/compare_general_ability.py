"""Snakemake script: a task's general-ability comparison (rule general_ability,
rules/benchmarks.smk): every benchmarked run's lm-eval scores, each fine-tune against its base on
the same items (paired bootstrap of the difference), and the figure. See
finetune_study/general_ability.py."""

import json

from finetune_study import common, general_ability

s = json.loads(snakemake.params.settings)
run_list = [tuple(r) for r in s["runs"]]
with common.log_to(common.snakemake_log(snakemake)):
    results = {r: common.read_json(p) for r, p in zip(run_list, snakemake.input.results)}
    samples = {r: common.read_jsonl(p) for r, p in zip(run_list, snakemake.input.samples)}
    comp = general_ability.compare(run_list, s["sets"], results, samples, s["bootstrap"])
    general_ability.figure(comp, snakemake.output.figure)
    common.write_json(snakemake.output.comparison, comp)
    for p in comp["paired"]:
        d = p["diff"]
        print(
            f"{p['model']} {p['method']} {p['set']} {p['metric']}: {p['tuned']:.3f} vs {p['base']:.3f}, "
            f"difference {d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        )
