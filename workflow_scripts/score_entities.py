"""Snakemake script: entity-level scores of one run's entities (rule score_entities).

- strict: seqeval in strict IOB2 mode over the predicted tags (taggers: encoder heads and the
  dictionary baseline), micro-averaged and per type;
- pairs: the looser (type, text) matching per sentence (ner_metrics.pair_counts), for every run, so
  a prompted LLM and a tagger can be compared;
- intervals: 95% percentile bootstrap over sentences of precision, recall and F1 (strict for
  taggers, pairs for all), and for a fine-tuned run a paired bootstrap of its F1 against its
  model's zero-shot row (the same resampled sentences); for every run but the baseline, the same
  against the dictionary baseline (vs_baseline: strict F1 for a tagger, (type, text) pairs for a
  prompted LM).
"""

import json

from finetune_study import common, ner_metrics

s = json.loads(snakemake.params.settings)
types = s["entity_types"]


def pairs(rows, key):
    return [[tuple(p) for p in r[key]] for r in rows]


def counts(rows):
    """(strict counts or None, pair counts) of a predictions file."""
    tagger = all(r["pred_tags"] is not None for r in rows)
    strict = (
        ner_metrics.strict_counts([r["gold_tags"] for r in rows], [r["pred_tags"] for r in rows], types)
        if tagger
        else None
    )
    return strict, ner_metrics.pair_counts(pairs(rows, "gold_pairs"), pairs(rows, "pred_pairs"), types)


with common.log_to(common.snakemake_log(snakemake)):
    rows = common.read_jsonl(snakemake.input.predictions)
    strict, loose = counts(rows)
    result = {"n": len(rows), "tagger": strict is not None, "unparsed_lines": sum(r["unparsed_lines"] for r in rows)}
    result["pairs"] = ner_metrics.scores(loose, types)
    boot = {"n_resamples": s["bootstrap"], "seed": 0}
    intervals = {"pair_f1": ner_metrics.bootstrap(loose, **boot)["f1"]}
    if strict is not None:
        result["strict"] = ner_metrics.seqeval_scores([r["gold_tags"] for r in rows], [r["pred_tags"] for r in rows])
        b = ner_metrics.bootstrap(strict, **boot)
        intervals.update(entity_f1=b["f1"], entity_precision=b["precision"], entity_recall=b["recall"])
    result["intervals"] = intervals
    if "zeroshot" in snakemake.input.keys():
        zs = common.read_jsonl(snakemake.input.zeroshot)
        zs_strict, zs_loose = counts(zs)
        mine, theirs, metric = (strict, zs_strict, "entity_f1") if strict is not None else (loose, zs_loose, "pair_f1")
        result["vs_zeroshot"] = {"metric": metric, **ner_metrics.paired_bootstrap(theirs, mine, **boot)}
    if "baseline" in snakemake.input.keys():  # the dictionary, a tagger: strict spans against a tagger
        base_strict, base_loose = counts(common.read_jsonl(snakemake.input.baseline))
        tagged = strict is not None and base_strict is not None
        mine, theirs, metric = (strict, base_strict, "entity_f1") if tagged else (loose, base_loose, "pair_f1")
        b = ner_metrics.paired_bootstrap(theirs, mine, **boot)
        result["vs_baseline"] = {"baseline": "dictionary", "metric": metric, "diff": b.pop("mean"), **b}
    common.write_json(snakemake.output.metrics, result)
    main = result["strict"]["f1"] if strict is not None else result["pairs"]["f1"]
    print(
        f"entity F1 {main:.4f} ({'strict spans' if strict is not None else '(type, text) pairs'}), "
        f"pairs F1 {result['pairs']['f1']:.4f}, unparsed lines {result['unparsed_lines']}"
    )
