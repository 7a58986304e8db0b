"""Snakemake script: the scores of one run's outputs in a source -> target task (rule score_targets),
each against all of its source's references:
- summarization: ROUGE-1/2/L/Lsum F (rouge-score, stemmed, the best reference per output);
- translation: sacreBLEU corpus BLEU (the task's tokenizer) and chrF++, with their signatures;
- BERTScore F1 (the best reference per output; local model by default), where the task lists it;
- 95% percentile bootstrap intervals over test sources (corpus metrics recomputed from summed
  statistics), and for a fine-tuned run a paired bootstrap of every metric against its model's
  zero-shot outputs (the same resampled sources); for every run but a baseline, the same of ROUGE
  and BLEU / chrF++ against each baseline's outputs (vs_baselines).
"""

import json

from finetune_study import common, models
from finetune_study import source_target_metrics as stm

s = json.loads(snakemake.params.settings)
bs = json.loads(snakemake.params.bertscore)
if isinstance(bs["model"], dict):  # a model folder inside a pip package
    bs["model"] = str(models.package_dir(bs["model"]["package"]) / bs["model"]["subdir"])
ROUGE = {"rouge1": "rouge1", "rouge2": "rouge2", "rouge_l": "rougeL", "rouge_lsum": "rougeLsum"}
n, tokenize = s["bootstrap"], s["bleu_tokenize"]


def per_item(hyps, refs):
    """Per-item values of the task's per-item metrics (ROUGE, BERTScore)."""
    out = {}
    wanted = [k for k in s["metrics"] if k in ROUGE]
    if wanted:
        rouge = stm.rouge_scores(hyps, refs)
        out.update({k: rouge[ROUGE[k]] for k in wanted})
    if "bertscore_f1" in s["metrics"]:
        out["bertscore_f1"] = stm.bertscore_f1_multi(
            hyps, refs, model_type=bs["model"], num_layers=bs["num_layers"], batch_size=bs["batch_size"]
        )
    return out


with common.log_to(common.snakemake_log(snakemake)):
    rows = common.read_jsonl(snakemake.input.outputs)
    hyps, refs = [r["output"] for r in rows], [r["references"] for r in rows]
    values = per_item(hyps, refs)
    intervals = {k: stm.bootstrap_mean(v, n_resamples=n) for k, v in values.items()}
    corpus = [k for k in s["metrics"] if k in stm.CORPUS_METRICS]
    intervals.update({k: stm.bootstrap_corpus(k, hyps, refs, tokenize, n_resamples=n) for k in corpus})
    result = {
        "n": len(rows),
        "n_references": sum(map(len, refs)),
        "field": s["field"],
        "empty_outputs": sum(not h for h in hyps),
        "intervals": {k: intervals[k] for k in s["metrics"]},
        "per_example": values,
    }
    if corpus:
        scores = stm.bleu_chrf(hyps, refs, tokenize)
        result["signatures"] = {k: scores[f"{k}_signature"] for k in corpus}
    if "zeroshot" in snakemake.input.keys():
        zs = {r["id"]: r["output"] for r in common.read_jsonl(snakemake.input.zeroshot)}
        zs_hyps = [zs[r["id"]] for r in rows]
        zs_values = per_item(zs_hyps, refs)
        vs = {k: stm.paired_bootstrap_mean(values[k], zs_values[k], n_resamples=n) for k in values}
        vs.update({k: stm.paired_bootstrap_corpus(k, hyps, zs_hyps, refs, tokenize, n_resamples=n) for k in corpus})
        result["vs_zeroshot"] = vs
    # every run against each baseline (copy, lead) on the same sources: the ROUGE and BLEU / chrF++ the
    # task reports (BERTScore is left out: the report's strongest baseline is chosen on the headline metric)
    vs_baselines = {}
    for key in [k for k in snakemake.input.keys() if k.startswith("baseline_")]:
        base = {r["id"]: r["output"] for r in common.read_jsonl(snakemake.input[key])}
        base_hyps = [base[r["id"]] for r in rows]
        wanted = [k for k in s["metrics"] if k in ROUGE]
        vs = {}
        if wanted:
            base_rouge = stm.rouge_scores(base_hyps, refs)
            vs.update({k: stm.paired_bootstrap_mean(values[k], base_rouge[ROUGE[k]], n_resamples=n) for k in wanted})
        vs.update({k: stm.paired_bootstrap_corpus(k, hyps, base_hyps, refs, tokenize, n_resamples=n) for k in corpus})
        vs_baselines[key.removeprefix("baseline_")] = vs
    if vs_baselines:
        result["vs_baselines"] = vs_baselines
    common.write_json(snakemake.output.metrics, result)
    print({k: round(v["mean"], 4) for k, v in result["intervals"].items()})
