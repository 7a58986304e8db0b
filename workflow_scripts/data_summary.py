"""Snakemake script: a task's data summary (rule data_summary): rows, label counts and the duplicate
texts removed, per split, from the three prepared splits and their info files."""

import json

from finetune_study import common, data

TASK_PART = "data"  # tasks/<type>_data.py: the split summary (fingerprints.py)

settings = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    summary = {"type": settings["type"], "labels": settings.get("labels"), "splits": {}}
    for split, info_path in zip(data.SPLITS, snakemake.input.info):
        rows = common.read_jsonl(snakemake.input[split])
        info = common.read_json(info_path)
        summary["splits"][split] = data.split_summary(rows, settings, info["duplicates_removed"])
        print(f"{split}: {len(rows)} rows, {info['duplicates_removed']} duplicates removed")
    common.write_json(snakemake.output.summary, summary)
