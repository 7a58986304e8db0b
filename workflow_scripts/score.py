"""Snakemake script: classification metrics of one predictions file (rule score, rules/metrics.smk):
accuracy, macro/weighted F1 with 95% bootstrap intervals, per-class scores, confusion matrix, the
share of unparsed outputs and how many of those were near-misses of a label."""

import json

from finetune_study import classification_metrics, common, prompting, stats

s = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    rows = common.read_jsonl(snakemake.input.predictions)
    labels = s["labels"]
    result = classification_metrics.classification_metrics(rows, labels)
    result["intervals"] = stats.classification_bootstrap(
        [r["gold"] for r in rows], [r["pred"] for r in rows], labels, n_resamples=s["bootstrap"], seed=0
    )
    near = [(r, prompting.near_miss_label(r.get("output") or "", labels)) for r in rows if r["pred"] is None]
    near = [(r, lab) for r, lab in near if lab is not None]
    result["near_misses"] = {
        "count": len(near),
        "would_be_correct": sum(lab == r["gold"] for r, lab in near),
        "examples": [r["output"][:80] for r, _ in near[:5]],
    }
    result["head"] = rows[0].get("head") if rows else None
    common.write_json(snakemake.output.metrics, result)
    print(
        f"accuracy {result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f}, unparsed {result['unparsed_share']:.2%}"
        f" ({len(near)} near-misses)"
    )
