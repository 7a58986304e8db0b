"""Snakemake script: BLEU (sacrebleu), ROUGE-L F (rouge-score), BERTScore F1 (bert-score, local
model by default) of one set of responses against the references, each with a bootstrap 95%
interval, plus the human scores when a file is configured. Run by rule score_generation."""

import json

from finetune_study import common, human_eval, models
from finetune_study import generation_metrics as gm

bs = json.loads(snakemake.params.bertscore)
if isinstance(bs["model"], dict):  # a model folder inside a pip package
    bs["model"] = str(models.package_dir(bs["model"]["package"]) / bs["model"]["subdir"])
with common.log_to(common.snakemake_log(snakemake)):
    rows = common.read_jsonl(snakemake.input.generations)
    hyps, refs = [r["output"] for r in rows], [r["reference"] for r in rows]
    n = snakemake.params.bootstrap
    rouge = gm.rouge_l(hyps, refs)
    bert = gm.bertscore_f1(hyps, refs, model_type=bs["model"], num_layers=bs["num_layers"], batch_size=bs["batch_size"])
    result = {
        "n": len(rows),
        "bleu": gm.bootstrap_corpus_bleu_ci(hyps, refs, n_resamples=n),
        "rouge_l": gm.bootstrap_ci(rouge, n_resamples=n),
        "bertscore_f1": gm.bootstrap_ci(bert, n_resamples=n),
        "per_example": {"rouge_l": rouge, "bertscore_f1": bert},
    }
    if snakemake.input.get("human_eval"):
        result["human"] = human_eval.aggregate(human_eval.load_human_scores(snakemake.input.human_eval, len(rows)))
    common.write_json(snakemake.output.metrics, result)
    print({k: v for k, v in result.items() if k != "per_example"})
