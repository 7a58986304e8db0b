"""Snakemake script: classification metrics of one predictions file (rule score, rules/metrics.smk)."""
import json

from lora_pipeline import common, metrics

with common.log_to(common.snakemake_log(snakemake)):
    rows = common.read_jsonl(snakemake.input.predictions)
    result = metrics.classification_metrics(rows, json.loads(snakemake.params.labels))
    common.write_json(snakemake.output.metrics, result)
    print(f"accuracy {result['accuracy']:.4f}, macro F1 {result['macro_f1']:.4f}, unparsed {result['unparsed_share']:.2%}")
