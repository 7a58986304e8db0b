"""Snakemake script: one normalized split of a task as JSONL, plus its info file (rule prepare_data).

settings (keys.data_settings) name the split and its sample size; reading, deduplication across
splits and stratified subsampling live in finetune_study.data. The info file holds the count of
duplicate rows removed from this split, for the data summary.
"""

import json

from finetune_study import common, data

TASK_PART = "data"  # tasks/<type>_data.py: how rows are read and checked (fingerprints.py)

settings = json.loads(snakemake.params.settings)
split = settings["split"]
with common.log_to(common.snakemake_log(snakemake)):
    rows, removed = data.load_split(
        settings, snakemake.config["data_dir"], split, settings.get("sample"), use_hub=settings["source"] == "hub"
    )
    common.write_jsonl(snakemake.output.rows, rows)
    common.write_json(snakemake.output.info, {"split": split, "rows": len(rows), "duplicates_removed": removed})
    print(f"{split}: {len(rows)} rows ({removed} duplicates removed before sampling)")
