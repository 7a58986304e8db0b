"""The task types, and the interface each one provides.

A task type is one parse-time module, tasks/<name>.py (standard library only: the rules and the
config checks call it while Snakemake parses the workflow), plus one module per job-time part,
tasks/<name>_<part>.py, imported only by the jobs that need it. The scripts dispatch through
part(); they name the parts they use in a module-level TASK_PART, so a stage's code fingerprint
(fingerprints.py) holds its own task type's part modules and no other task type's.

Adding a task type: write its modules (INTERFACE below lists what each must define), add its
`<name>_task` block to schemas/config.schema.yaml, and add its name to TASK_TYPES. Nothing else
branches on the task type; tests/test_interfaces.py checks every registered one against INTERFACE
and the schema.
"""

import importlib

TASK_TYPES = (
    "classification",
    "generation",
    "token_classification",
    "source_target",
)  # the registry: the one line a new task type edits

INTERFACE = {
    # tasks/<name>.py, read at parse time
    "": {
        "MODEL_KINDS": "{model kind: PEFT task type}: the model kinds it takes and the loss each trains with",
        "GRID_METRICS": "[(metric key, label)]: what a training grid shows per point",
        "GRID_METRICS_FIELD": "where a run's metrics.json holds them (a key, or None: its top level)",
        "TABLE_METRICS": "metrics with intervals: its columns of results/metrics.csv (name, _low, _high)",
        "TABLE_COLUMNS": "its other columns of results/metrics.csv",
        "STUDY_TEXTS": "whether the tokenizer study can take its test texts (rows with a 'text')",
        "check_config": "(task, models, at) -> None: its cross-checks, raising config.ConfigError via at(*keys)",
        "finetune_settings": "(task, model) -> dict: what its fine-tuning examples are built from (in the key)",
        "baseline_runs": "(task) -> [(model, run)]: baseline runs scored like models (none: [])",
        "report_runs": "(task) -> [(model, run)]: the runs its report rows list, in order",
        "report_entry": "(task_name, task, config) -> dict: what its report section and table rows need",
        "decoding_points": "(task) -> {key path: decoding}: decodings whose max_new_tokens must fit",
        "grid_metrics_file": "(task_name, task, model, run) -> path of a grid run's test metrics",
        "grid_test_split": "(task) -> what the grid's test metrics were computed on, for the report",
        "report_inputs": "(task_name, task, config) -> {input name: [paths]}: what its report section reads",
    },
    # tasks/<name>_data.py: prepare_data, data_summary and the parse-time file check
    "data": {
        "normalize": "(rows, task, source) -> normalized rows; PipelineError naming source for bad ones",
        "stratify_labels": "(task) -> labels to stratify subsamples by, or None",
        "hub_rows": "(rows, features, task) -> rows: a hub split's rows made like the files' rows",
        "split_summary": "(rows, task, duplicates_removed) -> dict for the data summary",
        "derived_settings": "(task, splits, sources) -> task settings the parse-time file check derives from the files "
        "(splits: {split: normalized rows}; sources: the files)",
    },
    # tasks/<name>_training.py: the finetune job
    "training": {
        "examples": "(rows, tok, settings, model_kind) -> [{'input_ids', 'labels'}] (tok: the tokenizer)",
    },
    # tasks/<name>_results.py: the report job
    "results": {
        "table_rows": "(task, entry, read) -> rows of results/metrics.csv (task: its name; entry: report_entry and runs)",
        "section": "(task, entry, read) -> the task's HTML section of the report (read: paths.DeclaredInputs)",
        "provenance_folders": "(task, entry) -> [(model, run, folder, label)]: folders with a provenance.json",
    },
}
PARTS = tuple(p for p in INTERFACE if p)


def spec(name):
    """The parse-time module of a task type."""
    if name not in TASK_TYPES:
        raise KeyError(f"unknown task type '{name}' (known: {', '.join(TASK_TYPES)})")
    return importlib.import_module(f"{__name__}.{name}")


def part(name, part_name):
    """One job-time part of a task type (data, training, results)."""
    if part_name not in PARTS:
        raise KeyError(f"unknown task part '{part_name}' (parts: {', '.join(PARTS)})")
    spec(name)
    return importlib.import_module(f"{__name__}.{name}_{part_name}")


def peft_task_type(task_type, model_kind):
    """The PEFT task type (and with it the loss, loss.LOSSES) a model kind trains with in a task type."""
    return spec(task_type).MODEL_KINDS[model_kind]
