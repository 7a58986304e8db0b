"""Snakemake script: materialize one model entry as a safetensors checkpoint + tokenizer folder.

Run by rule prepare_model (rules/models.smk): hub id, local folder or GGUF inside a pip package.
"""
import json

from lora_pipeline import common, models

spec = json.loads(snakemake.params.spec)
with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config)
    models.materialize(spec, snakemake.params.use_hub, snakemake.output.model)
