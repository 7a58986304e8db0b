"""Classification, the parse-time part: one label per text, from a fixed list of label names.

Causal LMs answer a prompt (generated and parsed to a label, or the most likely label); encoders
take the argmax of a classification head. Every run, and a majority-class baseline, is scored with
accuracy, macro/weighted F1 and bootstrap intervals, and compared to its model's zero-shot row
(paired McNemar test). Its rules: predict, majority_baseline, score, compare, figures. Its job-time
parts: classification_data.py, classification_training.py, classification_results.py.

Standard library only: it runs at Snakemake parse time.
"""

from .. import decoding, keys, paths, runs
from ..common import ConfigError

# model kind -> PEFT task type: the loss it trains with (loss.LOSSES)
MODEL_KINDS = {"causal_lm": "CAUSAL_LM", "encoder": "SEQ_CLS"}
TABLE_METRICS = ("accuracy", "macro_f1", "weighted_f1")  # columns of results/metrics.csv, with intervals
TABLE_COLUMNS = ("unparsed_share", "near_misses", "mcnemar_p_vs_zeroshot", *runs.VS_BASELINE_COLUMNS)
GRID_METRICS = [("accuracy", "accuracy"), ("macro_f1", "macro F1")]
GRID_METRICS_FIELD = "intervals"  # where a run's metrics.json holds them
STUDY_TEXTS = True
FIGURES = ("scores", "confusion", "training")
ENCODER_MAX_LENGTH = 256  # truncation of an encoder that is not fine-tuned in its task


def check_config(task, models, at):
    """Labels, prompt template and decoding of a classification task (at(*keys): 'file: key path')."""
    if keys.fewshot_problem(task):
        raise ConfigError(f"{at('prompt', 'fewshot')}: {keys.fewshot_problem(task)}")
    if "labels" not in task:
        raise ConfigError(f"{at()}: classification needs 'labels', the list of label names")
    for m in task["raw_prompt_models"]:
        if models[m]["type"] != "causal_lm":
            raise ConfigError(f"{at('raw_prompt_models')}: '{m}' is an encoder; only causal LMs take prompts")
    try:
        decoding.validate_decoding("decoding", task["decoding"])
    except ValueError as e:
        raise ConfigError(f"{at('decoding')}: {e}") from None
    if "{text}" not in task["prompt"]["template"]:
        raise ConfigError(f"{at('prompt', 'template')}: must contain {{text}}")


def finetune_settings(task, model):
    """What a fine-tune's examples are built from: the labels, and for a causal LM the prompt."""
    causal = model["type"] == "causal_lm"
    return {"labels": task["labels"], **({"prompt": keys.prompt_key(task["prompt"])} if causal else {})}


def baseline_runs(task):
    """The majority-class baseline, scored like any run."""
    return [("majority", "baseline")]


def scored_runs(task):
    """Every run whose metrics the task reports: its runs plus the majority baseline."""
    return runs.methods(task) + baseline_runs(task)


def report_runs(task):
    return scored_runs(task)


def report_entry(task_name, task, config):
    """How each model picks a label (scoring), for the report's table."""
    models = config["models"]
    used = {m for m, _ in scored_runs(task) if m in models}
    return {
        "scoring": {
            m: task["scoring"] if models[m]["type"] == "causal_lm" else "classification head" for m in sorted(used)
        },
        "likelihood_normalization": task["likelihood_normalization"],
    }


def decoding_points(task):
    return {"decoding": task["decoding"]}


def grid_test_split(task):
    return "test"


def grid_metrics_file(task_name, task, model, run):
    return paths.METRICS.format(task=task_name, model=model, method=run)


def compare_inputs(task_name, task):
    runs_ = scored_runs(task)
    return {
        "metrics": [paths.METRICS.format(task=task_name, model=m, method=r) for m, r in runs_],
        "predictions": [paths.PREDICTIONS.format(task=task_name, model=m, method=r) for m, r in runs_],
    }


def report_inputs(task_name, task, config):
    runs_ = scored_runs(task)
    return {
        **compare_inputs(task_name, task),  # metrics and predictions of every scored run
        "provenance": [paths.PROVENANCE.format(task=task_name, model=m, method=r) for m, r in runs_],
        "comparisons": [paths.COMPARISON.format(task=task_name)],
        "figures": [paths.FIGURE.format(task=task_name, figure=f) for f in FIGURES],
    }


def encoder_max_length(task, model_name, run=None):
    """An encoder's truncation (runs.encoder_max_length), ENCODER_MAX_LENGTH without a fine-tune."""
    return runs.encoder_max_length(task, model_name, run, ENCODER_MAX_LENGTH)


def head_seed(task, model_name):
    return runs.head_seed(task, model_name)


def inference_settings(config, task, model_name, method):
    """Only what changes this run's predictions: an encoder never reruns for a decoding change,
    a likelihood-scored model never for max_new_tokens."""
    model = config["models"][model_name]
    settings = {"model": keys.model_settings(model), "labels": task["labels"]}
    if not keys.batch_invariant(settings["model"]["dtype"]):
        settings["batch_size"] = task["decoding"]["batch_size"]
    if model["type"] == "encoder":
        settings["max_length"] = encoder_max_length(task, model_name, method)
        if method == "zeroshot":
            settings["head_seed"] = head_seed(task, model_name)
        return settings
    settings.update(
        prompt=keys.prompt_key(task["prompt"]),
        scoring=task["scoring"],
        chat_template=model["chat_template"] and method != "raw",
        **keys.fewshot_settings(task, method),
    )
    if task["scoring"] == "likelihood":
        settings["likelihood_normalization"] = task["likelihood_normalization"]
    else:
        # the batch size, where in the key, is beside the decoding (it serves the likelihood scoring too)
        settings["decoding"] = keys.job_decoding(
            config, task, model_name, method, task["decoding"], batch_in_key=False
        )["key"]
    return settings


def score_settings(task):
    return {"labels": task["labels"], "bootstrap": task["bootstrap"]}


def figure_inputs(task_name, task):
    return {
        "comparison": paths.COMPARISON.format(task=task_name),
        "metrics": compare_inputs(task_name, task)["metrics"],
        "train_logs": [paths.TRAIN_LOG.format(task=task_name, model=m, method=r) for m, r in runs.finetuned(task)],
    }


def run_labels(task, models):
    """[model, run, model type] per scored run: what the figures draw (roles are the report's only)."""
    return [[m, r, "baseline" if r == "baseline" else models[m]["type"]] for m, r in scored_runs(task)]
