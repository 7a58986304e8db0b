"""Source -> target tasks (summarization, translation), the parse-time part: one text in, one text
out, scored against one or more references per source.

Each test item is one source with all its references (several target columns, or the same source
listed with different targets; data.py splits by source, so a source is never in two splits). A
prompt template with {text} turns the source into the model's input: a causal LM reads the prompt
(optionally in its chat template) and continues it; an encoder-decoder (model kind seq2seq) reads
it as its encoder input. Fine-tuning trains on the target tokens only. The field decides the
metrics: ROUGE-1/2/L/Lsum and BERTScore for summarization, sacreBLEU BLEU and chrF++ (with their
signatures) for translation, each with bootstrap intervals over test items and a paired bootstrap
of each fine-tune against its model's zero-shot row and of every run against each baseline (the
report shows the strongest one, by its headline metric); plus the reference perplexity of every
run. Baselines scored like runs: the source copied (both fields) and its lead sentences
(summarization).
Its rules (rules/source_target.smk): generate_targets, target_baseline, target_perplexity,
score_targets, target_figures. Its job-time parts: source_target_data.py, _training.py, _results.py.

Standard library only: it runs at Snakemake parse time.
"""

import re

from .. import decoding, keys, paths, runs
from ..common import ConfigError
from .generation import bertscore_model  # noqa: F401 (the BERTScore model's identity, as for generation)

MODEL_KINDS = {"causal_lm": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}  # model kind -> PEFT task type
# every field's metrics (results/metrics.csv columns, with intervals); a row fills its field's
FIELD_METRICS = {
    "summarization": ("rouge1", "rouge2", "rouge_l", "rouge_lsum", "bertscore_f1"),
    "translation": ("bleu", "chrf", "bertscore_f1"),
}
HEADLINE = {"summarization": "rouge_l", "translation": "chrf"}  # compared with zero-shot in the csv
TABLE_METRICS = ("rouge1", "rouge2", "rouge_l", "rouge_lsum", "bleu", "chrf", "bertscore_f1")
TABLE_COLUMNS = (
    "reference_perplexity",
    "headline_metric",
    "headline_diff_vs_zeroshot",
    "headline_p_vs_zeroshot",
    *runs.VS_BASELINE_COLUMNS,
)
GRID_METRICS = [("rouge_l", "ROUGE-L F"), ("chrf", "chrF++")]
GRID_METRICS_FIELD = "intervals"
STUDY_TEXTS = True  # the sources are texts the tokenizer study can split
FIGURES = ("target_scores", "target_training")
BASELINES = {"summarization": ("copy", "lead"), "translation": ("copy",)}
BASELINE_DECODING = "fixed"  # the folder of a baseline's outputs (no decoding)


def metrics(task):
    """The metrics a task reports: its `metrics:` list, or its field's (FIELD_METRICS)."""
    return list(task.get("metrics") or FIELD_METRICS[task["field"]])


def decodings(task):
    """The task's decoding points: the named ones plus its expanded decoding_grid (decoding.task_points)."""
    try:
        return decoding.task_points(task)
    except ValueError as e:
        message = str(e)
        raise ConfigError(f"tasks.*.{message}" if message.startswith("decoding_grid") else message) from None


def check_config(task, models, at):
    """Prompt template, decodings and metrics of a source -> target task."""
    if keys.fewshot_problem(task):
        raise ConfigError(f"{at('prompt', 'fewshot')}: {keys.fewshot_problem(task)}")
    if "{text}" not in task["prompt"]["template"]:
        raise ConfigError(f"{at('prompt', 'template')}: must contain {{text}} (where the source goes)")
    for m in task["raw_prompt_models"]:
        if models[m]["type"] != "causal_lm":
            raise ConfigError(f"{at('raw_prompt_models')}: '{m}' is a {models[m]['type']} model; only causal LMs")
    allowed = FIELD_METRICS[task["field"]]
    for name in task.get("metrics") or []:
        if name not in allowed:
            raise ConfigError(
                f"{at('metrics')}: '{name}' is not a {task['field']} metric (these are: {', '.join(allowed)}); "
                f"remove it or change field"
            )
    for p in task["published"]:
        for name in list(p.get("metrics") or {}) + list(p.get("values") or {}):
            if name not in allowed and name != "perplexity":
                raise ConfigError(
                    f"{at('published')}: '{name}' is not a {task['field']} metric (these are: {', '.join(allowed)})"
                )
    for name, d in decodings(task).items():
        try:
            decoding.validate_decoding(name, d)
        except ValueError as e:
            raise ConfigError(f"{at('decodings')}: {e}") from None


def prompt_settings(task, model, method=None):
    """How a model's input is built from a source: the prompt, the chat template (causal LMs, not
    for the raw-prompt row) and the source's token budget."""
    return {
        "prompt": keys.prompt_key(task["prompt"]),
        "chat_template": bool(model.get("chat_template")) and method != "raw",
        "max_source_tokens": task["max_source_tokens"],
    }


def finetune_settings(task, model):
    """What a fine-tune's examples are built from (the loss is on the target tokens)."""
    return prompt_settings(task, model)


def baseline_runs(task):
    return [(b, "baseline") for b in BASELINES[task["field"]]]


def scored_runs(task):
    return runs.methods(task) + baseline_runs(task)


def report_runs(task):
    return scored_runs(task)


def shared_decodings(task):
    """{decoding point: the point whose generation it shares} (equivalent generate arguments)."""
    return keys.shared_decodings(decodings(task))


def run_decodings(task, model, method):
    """The decoding points a run is scored at: every named point, or one fixed point for a baseline."""
    return [BASELINE_DECODING] if method == "baseline" else list(decodings(task))


def target_folder(task_name, task, model, method, decoding_name):
    """Where a run's outputs and scores at a decoding point are: its shared point's folder."""
    if method != "baseline":
        decoding_name = shared_decodings(task)[decoding_name]
    return paths.TARGET_DIR.format(task=task_name, model=model, method=method, decoding=decoding_name)


def scored_points(task):
    """(model, run, decoding) of every scored output set, each shared generation once, in report order."""
    shared = shared_decodings(task)
    out = []
    for m, r in scored_runs(task):
        out += [(m, r, d) for d in run_decodings(task, m, r) if r == "baseline" or shared[d] == d]
    return out


def report_entry(task_name, task, config):
    return {
        "field": task["field"],
        "metrics": metrics(task),
        "decodings": decodings(task),
        "shared": shared_decodings(task),
        "bleu_tokenize": bleu_tokenize(task),
        "target_language": task.get("target_language"),
        "model_kinds": {m: config["models"][m]["type"] for m, _ in runs.methods(task)},
    }


def decoding_points(task):
    return {f"decodings.{k}": d for k, d in decodings(task).items()}


def grid_test_split(task):
    return f"decoding {next(iter(decodings(task)))}"


def grid_metrics_file(task_name, task, model, run):
    first = next(iter(decodings(task)))
    return f"{target_folder(task_name, task, model, run, first)}/metrics.json"


def report_inputs(task_name, task, config):
    out = {"metrics": [], "predictions": [], "provenance": []}
    for m, r, d in scored_points(task):
        folder = target_folder(task_name, task, m, r, d)
        out["metrics"].append(f"{folder}/metrics.json")
        out["predictions"].append(f"{folder}/outputs.jsonl")
        out["provenance"].append(f"{folder}/provenance.json")
    out["metrics"] += [paths.TARGET_PERPLEXITY.format(task=task_name, model=m, method=r) for m, r in runs.methods(task)]
    out["figures"] = [paths.FIGURE.format(task=task_name, figure=f) for f in FIGURES]
    return out


def target_settings(config, task, model_name, method, decoding_name):
    """What a run's outputs at one decoding point depend on: the model, how its input is built, and
    the generate arguments (not the batch size where outputs do not depend on it)."""
    model = config["models"][model_name]
    point = decodings(task)[decoding_name]
    settings = {"model": keys.model_settings(model), **prompt_settings(task, model, method)}
    if model["type"] == "causal_lm":  # k train examples before the source (prompt.fewshot), not fine-tuned rows
        settings.update(keys.fewshot_settings(task, method))
    settings["decoding"] = keys.job_decoding(config, task, model_name, method, point)["key"]
    return settings


def perplexity_settings(config, task, model_name, method):
    model = config["models"][model_name]
    return {"model": keys.model_settings(model), **prompt_settings(task, model, method)}


def bleu_tokenize(task):
    """sacreBLEU's tokenizer for a translation task: the config's bleu_tokenize, else the one for its
    target_language (bleu_tokenizer)."""
    return task.get("bleu_tokenize") or bleu_tokenizer(task.get("target_language") or "")


# sacreBLEU tokenizer by target language (ISO 639-1 or -3 code); anything else gets "13a".
# 13a splits only ASCII punctuation, so the Arabic-script ؟ and ، stay glued to the word before;
# "intl" splits all Unicode punctuation and symbols. "ja-mecab" needs MeCab (not installable
# offline), so Japanese, written without spaces, is scored on characters. Korean separates words
# with spaces and uses ASCII punctuation, so 13a suits it.
BLEU_TOKENIZE = {
    "fa": "intl",
    "fas": "intl",
    "pes": "intl",
    "prs": "intl",
    "ar": "intl",
    "ara": "intl",
    "ur": "intl",
    "urd": "intl",
    "zh": "zh",
    "zho": "zh",
    "ja": "char",
    "jpn": "char",
}


def bleu_tokenizer(target_language) -> str:
    """The sacreBLEU tokenize name for a language code ("fa", "fa-IR", "pes_Arab" -> "intl")."""
    code = re.split(r"[-_]", str(target_language).strip().lower())[0]
    return BLEU_TOKENIZE.get(code, "13a")


def score_settings(task):
    return {
        "field": task["field"],
        "metrics": metrics(task),
        "bleu_tokenize": bleu_tokenize(task),
        "bootstrap": task["bootstrap"],
    }


def zeroshot_folder(task_name, task, model, method, decoding_name):
    """The zero-shot outputs a fine-tuned run is compared with (its model's, same decoding), or None."""
    if runs.method_seed(method) is None or (model, "zeroshot") not in runs.methods(task):
        return None
    return target_folder(task_name, task, model, "zeroshot", decoding_name)


def score_inputs(task_name, task, model, method, decoding_name):
    folder = paths.TARGET_DIR.format(task=task_name, model=model, method=method, decoding=decoding_name)
    inputs = {"outputs": f"{folder}/outputs.jsonl"}
    zs = zeroshot_folder(task_name, task, model, method, decoding_name)
    if zs:
        inputs["zeroshot"] = f"{zs}/outputs.jsonl"
    if method != "baseline":  # every baseline's outputs: the paired tests against them (vs_baselines)
        for b, _ in baseline_runs(task):
            inputs[f"baseline_{b}"] = (
                f"{target_folder(task_name, task, b, 'baseline', BASELINE_DECODING)}/outputs.jsonl"
            )
    return inputs


def figure_inputs(task_name, task):
    return {
        "metrics": [f"{target_folder(task_name, task, m, r, d)}/metrics.json" for m, r, d in scored_points(task)],
        "train_logs": [paths.TRAIN_LOG.format(task=task_name, model=m, method=r) for m, r in runs.finetuned(task)],
    }


def figure_listing(task, models):
    """[model, run, decoding, model kind or "baseline"] of each scored output set: what the figures draw."""
    return [[m, r, d, "baseline" if r == "baseline" else models[m]["type"]] for m, r, d in scored_points(task)]
