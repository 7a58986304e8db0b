"""Snakemake script: normalize a task's data into train/validation/test JSONL plus a summary.

Run by rule prepare_data (rules/data.smk); reads the task settings from params.settings.
"""
import json

from lora_pipeline import common, data

settings = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    splits = data.load_splits(settings, snakemake.params.data_dir, use_hub=settings["source"] == "hub")
    summary = {"type": settings["type"], "labels": settings.get("labels"), "splits": {}}
    for split, rows in splits.items():
        common.write_jsonl(snakemake.output[split], rows)
        summary["splits"][split] = data.split_summary(rows, settings)
        print(f"{split}: {len(rows)} rows")
    common.write_json(snakemake.output.summary, summary)
