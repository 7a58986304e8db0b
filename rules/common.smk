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
    cfg.check_resources(config, workflow.resource_settings.default_resources or {})
    for _task_name, _task in cfg.selected_tasks(config).items():
        if not config["use_hub"]:
            data_lib.check_task_files(_task_name, _task, config["data_dir"])
except (cfg.ConfigError, PipelineError) as err:
    raise WorkflowError(f"Error: {err}") from None

TASKS = cfg.selected_tasks(config)
CLASSIFICATION_TASKS = [t for t, v in TASKS.items() if v["type"] == "classification"]
GENERATION_TASKS = [t for t, v in TASKS.items() if v["type"] == "generation"]
MODELS = config["models"]
CHECKPOINT_DIR = config["checkpoint_dir"]


wildcard_constraints:
    task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method="zeroshot|raw|lora",
    decoding="[A-Za-z0-9][A-Za-z0-9_.-]*",


def model_dir(wildcards):
    return f"results/models/{wildcards.model}"


def model_resources(name):
    return MODELS[name]["resources"]


def methods(task_name):
    """(model, method) pairs of a task, in report order."""
    task = TASKS[task_name]
    pairs = [(m, "zeroshot") for m in task["models"]]
    pairs += [(m, "raw") for m in task.get("raw_prompt_models", [])]
    pairs += [(m, "lora") for m in task["finetune"]]
    return pairs


def data_params(task_name):
    task = TASKS[task_name]
    keys = ["type", "files", "format", "header", "column_names", "text_column", "label_column",
            "labels", "drop_rows_with_label", "sample", "validation_fraction", "test_fraction", "seed", "max_chars",
            "instruction_column", "input_column", "output_column"]
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
    settings = {"task_type": task["type"], "model": model_settings(model_name), "finetune": task["finetune"][model_name]}
    if task["type"] == "generation":
        settings["prompt_style"] = task["prompt_style"]
    else:
        settings["labels"] = task["labels"]
        settings["prompt"] = task["prompt"]
    return settings


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
    inputs = {"summaries": [], "metrics": [], "predictions": [], "figures": [], "train_logs": [],
              "tokenizer_study": study_outputs()}
    for task in TASKS:
        inputs["summaries"].append(f"results/{task}/data/summary.json")
        if task in GENERATION_TASKS:
            for m, meth, d in gen_runs(task):
                inputs["metrics"].append(f"results/{task}/{m}/{meth}/gen/{d}/metrics.json")
                inputs["predictions"].append(f"results/{task}/{m}/{meth}/gen/{d}/generations.jsonl")
            inputs["metrics"] += [f"results/{task}/{m}/{meth}/perplexity.json" for m, meth in methods(task)]
            inputs["figures"] += [f"results/{task}/figures/{fig}.png" for fig in ("gen_scores", "sweep", "gen_training")]
        else:
            for m, meth in methods(task):
                inputs["metrics"].append(f"results/{task}/{m}/{meth}/metrics.json")
                inputs["predictions"].append(f"results/{task}/{m}/{meth}/predictions.jsonl")
            inputs["figures"] += [f"results/{task}/figures/{fig}.png" for fig in ("scores", "confusion", "training")]
        for m in TASKS[task]["finetune"]:
            inputs["train_logs"].append(f"results/{task}/{m}/lora/train_log.json")
    return inputs


def generation_settings(task_name, model_name, method, decoding):
    task = TASKS[task_name]
    return {"model": model_settings(model_name), "prompt_style": task["prompt_style"],
            "decoding": cfg.decodings(task)[decoding]}


def gen_runs(task_name):
    """(model, method, decoding) triples of a generation task, in report order."""
    names = list(cfg.decodings(TASKS[task_name]))
    return [(m, meth, d) for m, meth in methods(task_name) for d in names]


def bertscore_model(task_name):
    bs = TASKS[task_name]["bertscore"]
    if "model" in bs:
        return bs["model"]
    import importlib.util

    spec = importlib.util.find_spec(bs["package"])
    if spec is None:
        raise WorkflowError(f"Error: tasks.{task_name}.bertscore: package '{bs['package']}' is not installed")
    return str(Path(list(spec.submodule_search_locations)[0]) / bs["subdir"])


def gen_score_inputs(wildcards):
    inputs = {"generations": f"results/{wildcards.task}/{wildcards.model}/{wildcards.method}/gen/{wildcards.decoding}/generations.jsonl",
              "test": f"results/{wildcards.task}/data/test.jsonl"}
    key = f"{wildcards.model}/{wildcards.method}/{wildcards.decoding}"
    he = TASKS[wildcards.task]["human_eval"].get(key)
    if he:
        inputs["human_eval"] = he
    return inputs


def gen_figure_inputs(wildcards):
    t = wildcards.task
    return {
        "metrics": [f"results/{t}/{m}/{meth}/gen/{d}/metrics.json" for m, meth, d in gen_runs(t)],
        "perplexity": [f"results/{t}/{m}/{meth}/perplexity.json" for m, meth in methods(t)],
        "train_logs": [f"results/{t}/{m}/lora/train_log.json" for m in TASKS[t]["finetune"]],
    }


def report_runs():
    runs = {}
    for t, task in TASKS.items():
        entry = {"type": task["type"], "runs": [[m, meth, MODELS[m]["role"]] for m, meth in methods(t)]}
        if task["type"] == "generation":
            entry["decodings"] = cfg.decodings(task)
            entry["human_eval"] = task["human_eval"]
        runs[t] = entry
    return cfg.canonical(runs)


STUDY = config.get("tokenizer_study")
MODELS_IN_USE = sorted({m for t in TASKS.values() for m in t["models"] + list(t["finetune"])})


def study_tokenizers():
    """name -> where, for the tokenizer study: shared folders (under data_dir) or hub ids, then the pipeline's models."""
    out = {}
    for name, where in STUDY["tokenizers"].items():
        local = Path(config["data_dir"]) / where
        out[name] = str(local) if local.exists() or not config["use_hub"] else where
    for m in STUDY["models"]:
        out[m] = f"results/models/{m}"
    return out


def tokenizer_study_inputs(wildcards):
    base = Path(workflow.basedir)
    texts = [str(p if Path(p).is_absolute() else base / p) for p in STUDY["texts"].values()]
    texts += [f"results/tokenizers/texts/{t}.txt" for t in STUDY["task_texts"]]
    return {"texts": texts, "models": [f"results/models/{m}" for m in STUDY["models"]]}


def study_outputs():
    if not STUDY:
        return []
    return ["results/tokenizers/table.json", "results/tokenizers/stats.png", "results/tokenizers/pieces.json",
            "results/tokenizers/chat_templates.json"]
