"""Snakemake script: normalize a task's data into train/validation/test JSONL plus a summary.

Run by rule prepare_data (rules/data.smk); reads the task settings from params.settings.
"""
import json

from lora_pipeline import common, data

settings = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    splits = data.load_splits(settings, snakemake.params.data_dir, use_hub=settings["source"] == "hub")
    summary = {"labels": settings["labels"], "splits": {}}
    for split, rows in splits.items():
        common.write_jsonl(snakemake.output[split], rows)
        summary["splits"][split] = {"rows": len(rows), "label_counts": data.label_counts(rows, settings["labels"])}
        print(f"{split}: {len(rows)} rows")
    common.write_json(snakemake.output.summary, summary)
