"""Instruction generation, the parse-time part: responses to instructions (Alpaca-style records:
instruction, optional input, output), by causal LMs, under one or more named decoding points
(plus a decoding grid). Scored with BLEU, ROUGE-L and BERTScore with bootstrap intervals, human
scores when given, and the reference perplexity of each model. Equivalent decoding points (the same
generate arguments) share one generation. Its rules: generate, reference_perplexity,
score_generation, generation_figures. Its job-time parts: generation_data.py,
generation_training.py, generation_results.py.

Standard library only: it runs at Snakemake parse time.
"""

import importlib.metadata
import importlib.util

from .. import decoding, keys, paths, runs
from ..common import ConfigError

MODEL_KINDS = {"causal_lm": "CAUSAL_LM"}  # model kind -> PEFT task type (loss.LOSSES)
TABLE_METRICS = ("bleu", "rouge_l", "bertscore_f1")  # columns of results/metrics.csv, with intervals
TABLE_COLUMNS = ("reference_perplexity", "human_score")
GRID_METRICS = [("bleu", "BLEU"), ("rouge_l", "ROUGE-L F")]
GRID_METRICS_FIELD = None  # a run's metrics.json holds them at its top level
STUDY_TEXTS = False
FIGURES = ("gen_scores", "sweep", "gen_training")


def decodings(task):
    """Named decodings of a generation task: the named ones plus the expanded grid."""
    try:
        return decoding.task_points(task)
    except ValueError as e:
        message = str(e)
        raise ConfigError(f"tasks.*.{message}" if message.startswith("decoding_grid") else message) from None


def check_config(task, models, at):
    """Every decoding point of a generation task is valid."""
    if keys.fewshot_problem(task):
        raise ConfigError(f"{at('prompt', 'fewshot')}: {keys.fewshot_problem(task)}")
    for name, d in decodings(task).items():
        try:
            decoding.validate_decoding(name, d)
        except ValueError as e:
            raise ConfigError(f"{at('decodings')}: {e}") from None


def finetune_settings(task, model):
    """Instruction tuning: the prompt style its examples are rendered in (the loss is on the response)."""
    return {"prompt_style": task["prompt_style"]}


def baseline_runs(task):
    return []


def report_runs(task):
    return runs.methods(task)


def shared_decodings(task):
    """{decoding point: the point whose generation it shares} (keys.shared_decodings): equivalent
    points (same generate arguments) are one generate and one score_generation job."""
    return keys.shared_decodings(decodings(task), human_eval=task["human_eval"])


def gen_runs(task):
    """(model, method, decoding) triples of a generation task, in report order."""
    names = list(decodings(task))
    return [(m, meth, d) for m, meth in runs.methods(task) for d in names]


def gen_folder(task_name, task, model, method, decoding_name):
    """Where a decoding point's generations and scores are: its shared point's folder."""
    shared = shared_decodings(task)[decoding_name]
    return paths.GEN_DIR.format(task=task_name, model=model, method=method, decoding=shared)


def report_entry(task_name, task, config):
    return {"decodings": decodings(task), "shared": shared_decodings(task), "human_eval": task["human_eval"]}


def decoding_points(task):
    return {f"decodings.{k}": d for k, d in decodings(task).items()}


def grid_test_split(task):
    """The training grid's test metrics are those of the first decoding point."""
    return f"decoding {next(iter(decodings(task)))}"


def grid_metrics_file(task_name, task, model, run):
    first = next(iter(decodings(task)))
    return f"{gen_folder(task_name, task, model, run, first)}/metrics.json"


def report_inputs(task_name, task, config):
    shared = shared_decodings(task)
    out = {"metrics": [], "predictions": [], "provenance": []}
    for m, meth, d in gen_runs(task):
        if shared[d] != d:
            continue  # the report reads it from the point it shares
        run = gen_folder(task_name, task, m, meth, d)
        out["metrics"].append(f"{run}/metrics.json")
        out["predictions"].append(f"{run}/generations.jsonl")
        out["provenance"].append(f"{run}/provenance.json")
    out["metrics"] += [paths.PERPLEXITY.format(task=task_name, model=m, method=r) for m, r in runs.methods(task)]
    out["figures"] = [paths.FIGURE.format(task=task_name, figure=f) for f in FIGURES]
    return out


def score_inputs(task_name, task, model, method, decoding_name):
    inputs = {
        "generations": f"{paths.GEN_DIR.format(task=task_name, model=model, method=method, decoding=decoding_name)}"
        "/generations.jsonl",
        "test": paths.SPLIT.format(task=task_name, split="test"),
    }
    he = task["human_eval"].get(f"{model}/{method}/{decoding_name}")
    if he:
        inputs["human_eval"] = he
    return inputs


def figure_decodings(task):
    """The decoding points as the figures read them: without the batch size and the settings that
    change no output (keys.RUNTIME_DECODING), which they never draw, so editing those redraws nothing."""
    drop = (*keys.RUNTIME_DECODING, "batch_size")
    return {n: {k: v for k, v in p.items() if k not in drop} for n, p in decodings(task).items()}


def figure_inputs(task_name, task):
    return {
        "metrics": [f"{gen_folder(task_name, task, m, meth, d)}/metrics.json" for m, meth, d in gen_runs(task)],
        "perplexity": [paths.PERPLEXITY.format(task=task_name, model=m, method=r) for m, r in runs.methods(task)],
        "train_logs": [paths.TRAIN_LOG.format(task=task_name, model=m, method=r) for m, r in runs.finetuned(task)],
    }


def bertscore_model(task_name, task):
    """The BERTScore model's identity: a hub id or folder as configured, else the pip package that
    holds it and its version (not its install path: moving the venv changes no key)."""
    bs = task["bertscore"]
    if "model" in bs:
        return bs["model"]
    if importlib.util.find_spec(bs["package"]) is None:
        raise ConfigError(f"tasks.{task_name}.bertscore: package '{bs['package']}' is not installed")
    try:
        version = importlib.metadata.version(bs["package"].replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": bs["package"], "subdir": bs["subdir"], "version": version}


def generation_settings(config, task, model_name, decoding, method=None):
    """What a run's responses at one decoding point depend on; a run that is not fine-tuned also holds
    its few-shot examples' draw (prompt.fewshot above 0: keys.fewshot_settings)."""
    return {
        "model": keys.model_settings(config["models"][model_name]),
        "prompt_style": task["prompt_style"],
        "decoding": keys.job_decoding(config, task, model_name, method, decoding)["key"],
        **(keys.fewshot_settings(task, method) if method else {}),
    }


def perplexity_settings(config, task, model_name):
    return {"model": keys.model_settings(config["models"][model_name]), "prompt_style": task["prompt_style"]}
