"""Snakemake script: materialize one model entry as a safetensors checkpoint + tokenizer folder.

Run by rule prepare_model (rules/models.smk): hub id, local folder or GGUF inside a pip package.
params.spec is keys.model_origin: type, trust_remote_code, dtype and where the weights come from.
The folder holds weight_digests.json (every file's sha256) and is stamped as checked (weight_digests.py).
"""

import json

from finetune_study import common, model_kinds, models, weight_digests

origin = json.loads(snakemake.params.spec)
spec = {k: v for k, v in origin.items() if k != "origin"} | origin["origin"]
with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    models.materialize(spec, "hub_id" in origin["origin"], snakemake.output.model, model_kinds.get(spec["type"]))
    # its files were hashed just now: the parse of the next run and this run's jobs need not hash them again
    weight_digests.write_stamp(snakemake.output.model)
