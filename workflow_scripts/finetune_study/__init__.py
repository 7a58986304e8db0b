"""finetune_study: the importable logic of the fine-tuning study workflow.

The scripts beside this package (workflow_scripts/) are what the Snakemake rules run; they stay
short and call into here. Installed with `pip install -e .` (pyproject.toml). The map of the
modules is docs/architecture.md: the task types (tasks/), the model kinds (model_kinds/), the
stage keys (keys.py, fingerprints.py, runs.py), the result layout (paths.py), and one module per
concept for data, models, training, inference, metrics, figures and the report.
"""
