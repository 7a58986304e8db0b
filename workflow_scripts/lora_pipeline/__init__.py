"""Shared, importable logic of the LoRA experiment workflow.

One module per concept: config (schema validation), common (atomic writes, logs, seeds),
data, models, prompting, training, inference, metrics, plots, report. The scripts next to
this package are what the Snakemake rules run; they stay short and call into here.
"""
