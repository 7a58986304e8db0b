"""Snakemake script: a task's data summary (rule data_summary): rows, label counts and the duplicate
texts removed, per split, from the three prepared splits and their info files; for token
classification also how many test entities occur in train (and the documents of each split)."""

import json

from finetune_study import common, data, tasks

TASK_PART = "data"  # tasks/<type>_data.py: the split summary (fingerprints.py)

settings = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    summary = {"type": settings["type"], "labels": settings.get("labels"), "splits": {}}
    splits = {}
    for split, info_path in zip(data.SPLITS, snakemake.input.info):
        rows = splits[split] = common.read_jsonl(snakemake.input[split])
        info = common.read_json(info_path)
        summary["splits"][split] = data.split_summary(rows, settings, info["duplicates_removed"])
        print(f"{split}: {len(rows)} rows, {info['duplicates_removed']} duplicates removed")
    overlap = getattr(tasks.part(settings["type"], "data"), "test_overlap", None)
    if overlap:  # token classification: the test entities that also occur in train
        summary["test_overlap"] = overlap(splits)
        print(f"test entities also in train: {summary['test_overlap']}")
    common.write_json(snakemake.output.summary, summary)
