# Parse-time setup: validate the config against the schema (defaults filled in), check the
# local data files, and define the small helpers the rule files use.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))
from lora_pipeline import config as cfg  # noqa: E402
from lora_pipeline import data as data_lib  # noqa: E402
from lora_pipeline.common import PipelineError  # noqa: E402

try:
    cfg.validate(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
    for _task_name, _task in config["tasks"].items():
        if not config["use_hub"]:
            data_lib.check_task_files(_task_name, _task, config["data_dir"])
except (cfg.ConfigError, PipelineError) as err:
    raise WorkflowError(f"Error: {err}") from None

TASKS = config["tasks"]
MODELS = config["models"]
CHECKPOINT_DIR = config["checkpoint_dir"]


wildcard_constraints:
    task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method="zeroshot|raw|lora",


def model_dir(wildcards):
    return f"results/models/{wildcards.model}"


def model_resources(name):
    return MODELS[name]["resources"]


def methods(task_name):
    """(model, method) pairs of a task, in report order."""
    task = TASKS[task_name]
    pairs = [(m, "zeroshot") for m in task["models"]]
    pairs += [(m, "raw") for m in task["raw_prompt_models"]]
    pairs += [(m, "lora") for m in task["finetune"]]
    return pairs


def data_params(task_name):
    task = TASKS[task_name]
    keys = ["type", "files", "format", "header", "column_names", "text_column", "label_column",
            "labels", "drop_rows_with_label", "sample", "validation_fraction", "seed", "max_chars"]
    settings = {k: task[k] for k in keys if k in task}
    settings["source"] = "hub" if config["use_hub"] else "files"
    if config["use_hub"]:
        settings["hub_id"] = task.get("hub_id")
        settings["hub_config"] = task.get("hub_config")
    return cfg.canonical(settings)


def data_inputs(wildcards):
    if config["use_hub"]:
        return []
    files = TASKS[wildcards.task]["files"]
    return [str(Path(config["data_dir"]) / f) for f in files.values()]


def model_settings(name):
    keys = ["type", "role", "chat_template", "trust_remote_code", "dtype"]
    return {k: MODELS[name][k] for k in keys}


def finetune_settings(task_name, model_name):
    task = TASKS[task_name]
    return {
        "model": model_settings(model_name),
        "finetune": task["finetune"][model_name],
        "labels": task["labels"],
        "prompt": task["prompt"],
    }


def inference_settings(task_name, model_name, method):
    """Only what changes this run's outputs, so e.g. a generation setting never reruns an encoder."""
    task = TASKS[task_name]
    model = MODELS[model_name]
    settings = {"model": model_settings(model_name), "labels": task["labels"]}
    decoding = task["decoding"]
    if model["type"] == "causal_lm":
        settings["prompt"] = task["prompt"]
        settings["scoring"] = task["scoring"]
        settings["chat_template"] = model["chat_template"] and method != "raw"
        if task["scoring"] == "likelihood":
            decoding = {"batch_size": decoding["batch_size"], "seed": decoding["seed"]}
    else:
        decoding = {"batch_size": decoding["batch_size"], "seed": decoding["seed"]}
    settings["decoding"] = decoding
    return settings


def predict_inputs(wildcards):
    inputs = {
        "model": model_dir(wildcards),
        "test": f"results/{wildcards.task}/data/test.jsonl",
    }
    if wildcards.method == "lora":
        inputs["adapter"] = f"results/{wildcards.task}/{wildcards.model}/lora/adapter"
    return inputs


def figure_inputs(wildcards):
    pairs = methods(wildcards.task)
    return {
        "metrics": [f"results/{wildcards.task}/{m}/{meth}/metrics.json" for m, meth in pairs],
        "train_logs": [f"results/{wildcards.task}/{m}/lora/train_log.json" for m in TASKS[wildcards.task]["finetune"]],
    }


def report_inputs(wildcards):
    inputs = {"summaries": [], "metrics": [], "predictions": [], "figures": [], "train_logs": []}
    for task in TASKS:
        inputs["summaries"].append(f"results/{task}/data/summary.json")
        for m, meth in methods(task):
            inputs["metrics"].append(f"results/{task}/{m}/{meth}/metrics.json")
            inputs["predictions"].append(f"results/{task}/{m}/{meth}/predictions.jsonl")
        for fig in ("scores", "confusion", "training"):
            inputs["figures"].append(f"results/{task}/figures/{fig}.png")
        for m in TASKS[task]["finetune"]:
            inputs["train_logs"].append(f"results/{task}/{m}/lora/train_log.json")
    return inputs
