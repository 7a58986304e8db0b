# Parse-time setup: validate the config against the schema (defaults filled in), check the
# local data files, and define the small helpers the rule files use.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# This checkout's finetune_study, whatever copy is installed: the parse (its code fingerprints) and
# every job import the package beside this Snakefile (checkout.py).
sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))
from finetune_study import checkout

checkout.use_own_package(workflow.basedir)
import finetune_study

_foreign = checkout.foreign_package(workflow.basedir, finetune_study.__file__)
if _foreign:
    raise WorkflowError(f"Error: {_foreign}")

# A Snakemake killed with SIGKILL leaves its lock behind: the next run's parse removes it once no
# recorded Snakemake of this directory is alive, so the same command resumes (stale_locks.py).
if workflow.exec_mode.name == "DEFAULT":
    from finetune_study import stale_locks

    for _lock in stale_locks.clear_stale():
        print(
            f"removed {_lock}: the Snakemake that locked this directory no longer runs",
            file=sys.stderr,
        )

from finetune_study import config as cfg
from finetune_study import data as data_lib
from finetune_study import (
    benchmarks,
    fingerprints,
    keys,
    parse_checks,
    paths,
    runs,
    sharding,
    study_inputs,
    tasks,
    weight_digests,
)
from finetune_study.common import PipelineError, WORKFLOW_CORES_ENV
from finetune_study.report_listing import report_listing

try:
    _settings = workflow.config_settings
    # every parse-time check, in one call (parse_checks.py): the schema and cross-checks, memory,
    # the models' files, the forgetting check, the data files, the report's listing
    parse_checks.check(
        config,
        cfg.merge_order(
            workflow.configfiles,
            _settings.configfiles,
            _settings.config,
            _settings.replace_workflow_config,
        ),
        Path(workflow.basedir) / "schemas" / "config.schema.yaml",
        # a --configfile study shows its own report_title and notes, never config.yaml's
        default_files=cfg.default_study_files(
            workflow.configfiles, _settings.configfiles, workflow.basedir
        ),
        default_resources=workflow.resource_settings.default_resources or {},
        # a prepared model folder this invocation rebuilds by force is not checked (weight_digests.py)
        argv=sys.argv,
    )
except (cfg.ConfigError, PipelineError) as err:
    raise WorkflowError(f"Error: {err}") from None

# Model jobs split the cores this machine gives them by how many jobs --cores runs at once
# (common.cpu_threads); the jobs inherit this environment. It is in no stage key: no rerun.
# `snakemake --report` sets no cores and runs no job.
try:
    os.environ[WORKFLOW_CORES_ENV] = str(workflow.cores)
except WorkflowError:
    pass

TASKS = cfg.selected_tasks(config)
MODELS = config["models"]
SCRIPTS = Path(workflow.basedir) / "workflow_scripts"


def spec(task_name):
    """The task type of a task (tasks/<type>.py): what its rules, keys and report need."""
    return tasks.spec(TASKS[task_name]["type"])


def tasks_of_type(name):
    return [t for t, v in TASKS.items() if v["type"] == name]


# method: zeroshot, raw, baseline, or a fine-tuned run <method>-s<seed> (runs.FINETUNED_RUN: lora-s0, dora-s1, ...)
wildcard_constraints:
    task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=f"zeroshot|raw|baseline|{runs.FINETUNED_RUN}",
    split="train|validation|test",
    decoding="[A-Za-z0-9][A-Za-z0-9_.-]*",


def model_dir(wildcards):
    return paths.MODEL_DIR.format(model=wildcards.model)


def model_resources(name):
    return MODELS[name]["resources"]


def finetune_sharding(w):
    """How a fine-tuned run spans processes (sharding.settings of its entry or model)."""
    return sharding.of_run(config, TASKS[w.task], w.model, w.method)


def finetune_slurm(w):
    """The SLURM resources of a multi-process fine-tune (nodes, tasks, gres, mpi), else None."""
    return sharding.slurm_resources(finetune_sharding(w), model_resources(w.model))


def methods(task_name):
    """(model, method) pairs of a task, in report order (runs.methods)."""
    return runs.methods(TASKS[task_name])


def code(script, *task_types):
    """Fingerprint of a script, the finetune_study modules it imports and the parts of these task
    types it declares (fingerprints.py): part of every stage key."""
    return fingerprints.code_fingerprint(script, tuple(task_types), str(SCRIPTS))


def task_code(script):
    """code() of a script that runs one task's task-type parts (TASK_PART)."""
    return lambda w: code(script, TASKS[w.task]["type"])


def data_inputs(wildcards):
    if config["use_hub"]:
        return []
    return data_lib.task_paths(TASKS[wildcards.task], config["data_dir"])


def predict_inputs(wildcards):
    inputs = {
        "model": model_dir(wildcards),
        "test": paths.SPLIT.format(task=wildcards.task, split="test"),
    }
    if runs.method_seed(wildcards.method) is not None:
        inputs["adapter"] = paths.ADAPTER.format(**wildcards)
    elif MODELS[wildcards.model]["type"] == "causal_lm" and keys.fewshot_settings(
        TASKS[wildcards.task], wildcards.method
    ):
        # prompt.fewshot: the examples come from the train split
        inputs["train"] = paths.SPLIT.format(task=wildcards.task, split="train")
    return inputs


def finetune_logs(task):
    return [
        paths.TRAIN_LOG.format(task=task, model=m, method=r)
        for m, r in runs.finetuned(TASKS[task])
    ]


def finetune_benchmarks(task):
    """Snakemake's benchmark of each fine-tune job (wall time s, peak RSS max_rss): the report's cost table."""
    return [
        paths.FINETUNE_BENCHMARK.format(task=task, model=m, method=r)
        for m, r in runs.finetuned(TASKS[task])
    ]


def grid_listing(task):
    """[model, method, [[point, swept values]], seeds] of each fine-tune of a task with a training grid
    (points as a list: their grid order survives the canonical, key-sorted params string).
    """
    out = []
    for (m, method), points in runs.grid_points(TASKS[task]).items():
        point = next(iter(points))
        seeds = runs.finetune_seeds(runs.finetune_entry(TASKS[task], m, method, point))
        out.append([m, method, [[p, v] for p, v in points.items()], seeds])
    return out


def grid_runs(task):
    """(model, run) of every training-grid run of a task."""
    return [
        (m, runs.run_name(method, s, p))
        for m, method, points, seeds in grid_listing(task)
        for p, _ in points
        for s in seeds
    ]


def grid_tasks():
    return [t for t in TASKS if runs.grid_points(TASKS[t])]


def training_grid_inputs(wildcards):
    t = wildcards.task
    grid = grid_runs(t)
    return {
        "train_logs": [
            paths.TRAIN_LOG.format(task=t, model=m, method=r) for m, r in grid
        ],
        "metrics": [spec(t).grid_metrics_file(t, TASKS[t], m, r) for m, r in grid],
    }


def report_inputs(wildcards):
    """Every file the report reads: each task's summary, training logs and benchmarks, what its task
    type's section reads (tasks/<type>.py report_inputs), its training grid, the tokenizer study.
    """
    inputs = {
        "summaries": [],
        "metrics": [],
        "predictions": [],
        "provenance": [],
        "figures": [],
        "train_logs": [],
        "benchmarks": [],
        "comparisons": [],
        "grids": [],
        "general_ability": [],
        "tokenizer_study": study_inputs.outputs(config),
    }
    for task in TASKS:
        inputs["summaries"].append(paths.SUMMARY.format(task=task))
        for name, files in spec(task).report_inputs(task, TASKS[task], config).items():
            inputs[name] += files
        if task in grid_tasks():
            inputs["grids"].append(paths.TRAINING_GRID.format(task=task))
            inputs["figures"].append(
                paths.FIGURE.format(task=task, figure="training_grid")
            )
        # the forgetting check (rules/benchmarks.smk)
        if benchmarks.benchmark_runs(config, TASKS[task]):
            inputs["general_ability"] += [
                benchmarks.GENERAL_ABILITY.format(task=task),
                paths.FIGURE.format(task=task, figure="general_ability"),
            ]
        inputs["train_logs"] += finetune_logs(task)
        inputs["benchmarks"] += finetune_benchmarks(task)
    return inputs


def report_runs():
    """The report's run listing (report_listing.py), as canonical text for the report rule's params."""
    return cfg.canonical(report_listing(config, TASKS))


def bertscore_model(task_name):
    """The BERTScore model's identity (tasks/generation.py), one line if its package is missing."""
    try:
        return spec(task_name).bertscore_model(task_name, TASKS[task_name])
    except cfg.ConfigError as err:
        raise WorkflowError(f"Error: {err}") from None
