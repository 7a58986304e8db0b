"""Token classification (named-entity recognition), the parse-time part: BIO tags per word of
CoNLL-style sentences.

Two ways to tag, each zero-shot and fine-tuned: an encoder with a token-classification head (the
first sub-word of each word carries its tag; the zero-shot row is the untrained head), and a
prompted causal LM that lists the entities as `type: text` lines, parsed back to (type, text)
pairs. A dictionary baseline tags the entities seen in train (longest match). Every run is scored
with entity-level precision, recall and F1 (seqeval, strict IOB2, for taggers; (type, text) pairs
per sentence for every run), with bootstrap intervals over sentences and a paired bootstrap of
each fine-tune against its model's zero-shot row, and of every run against the dictionary. Its rules (rules/token_classification.smk):
tag_entities, dictionary_baseline, score_entities, ner_figures. Its job-time parts:
token_classification_data.py, _training.py, _results.py.

Standard library only: it runs at Snakemake parse time.
"""

from .. import decoding, keys, paths, runs
from ..common import ConfigError

# model kind -> PEFT task type: the loss it trains with (loss.LOSSES)
MODEL_KINDS = {"encoder": "TOKEN_CLS", "causal_lm": "CAUSAL_LM"}
# columns of results/metrics.csv, with intervals: strict spans (taggers) and (type, text) pairs (all runs)
TABLE_METRICS = ("entity_f1", "entity_precision", "entity_recall", "pair_f1")
TABLE_COLUMNS = ("unparsed_lines", "f1_diff_vs_zeroshot", "f1_p_vs_zeroshot", *runs.VS_BASELINE_COLUMNS)
GRID_METRICS = [("pair_f1", "entity F1 (type, text)")]
GRID_METRICS_FIELD = "intervals"
STUDY_TEXTS = True
FIGURES = ("ner_scores", "ner_per_type", "ner_training")
ENCODER_MAX_LENGTH = 256  # sub-word tokens of an encoder that is not fine-tuned in its task
BASELINE = ("dictionary", "baseline")


def tag_names(entity_types):
    """The label list of a tagger's head: O, then B- and I- of each entity type."""
    return ["O"] + [f"{p}-{t}" for t in entity_types for p in ("B", "I")]


def check_config(task, models, at):
    """Prompt template, decoding and entity types of a token-classification task."""
    if keys.fewshot_problem(task):
        raise ConfigError(f"{at('prompt', 'fewshot')}: {keys.fewshot_problem(task)}")
    for m in task["raw_prompt_models"]:
        if models[m]["type"] != "causal_lm":
            raise ConfigError(f"{at('raw_prompt_models')}: '{m}' is an encoder; only causal LMs take prompts")
    if "{text}" not in task["prompt"]["template"]:
        raise ConfigError(f"{at('prompt', 'template')}: must contain {{text}} (the sentence's words)")
    try:
        decoding.validate_decoding("decoding", task["decoding"])
    except ValueError as e:
        raise ConfigError(f"{at('decoding')}: {e}") from None
    types = task.get("entity_types")
    if types:
        bad = [t for t in types if not t or ":" in t or "\n" in t]
        if bad:
            raise ConfigError(f"{at('entity_types')}: {bad}: an entity type has no ':' or line break")


def entity_types(task):
    """The task's entity types: listed in the config, or (after the parse-time file check) the ones in its files."""
    return list(task["entity_types"])


def finetune_settings(task, model):
    """What a fine-tune's examples are built from: the tag list, and for a causal LM the prompt."""
    types = entity_types(task)
    out = {"labels": tag_names(types), "entity_types": types}
    if model["type"] == "causal_lm":
        out["prompt"] = keys.prompt_key(task["prompt"])
    return out


def baseline_runs(task):
    """The dictionary baseline (entities seen in train, longest match), scored like any run."""
    return [BASELINE]


def scored_runs(task):
    return runs.methods(task) + baseline_runs(task)


def report_runs(task):
    return scored_runs(task)


def report_entry(task_name, task, config):
    """The entity types, and which runs are taggers (the rules read this first, at parse time)."""
    if "entity_types" not in task:  # with use_hub the data is not read at parse time
        raise ConfigError(
            f"tasks.{task_name}: list its entity_types: (with use_hub the data is not read before the jobs run, "
            f"so the types cannot be taken from it)"
        )
    models = config["models"]
    return {
        "entity_types": entity_types(task),
        "tagger": {m: models[m]["type"] == "encoder" for m, _ in runs.methods(task)} | {BASELINE[0]: True},
    }


def decoding_points(task):
    return {"decoding": task["decoding"]}


def grid_test_split(task):
    return "test"


def grid_metrics_file(task_name, task, model, run):
    return paths.NER_METRICS.format(task=task_name, model=model, method=run)


def run_files(task_name, pattern, runs_):
    return [pattern.format(task=task_name, model=m, method=r) for m, r in runs_]


def report_inputs(task_name, task, config):
    runs_ = scored_runs(task)
    return {
        "metrics": run_files(task_name, paths.NER_METRICS, runs_),
        "predictions": run_files(task_name, paths.NER_PREDICTIONS, runs_),
        "provenance": run_files(task_name, paths.NER_PROVENANCE, runs_),
        "figures": [paths.FIGURE.format(task=task_name, figure=f) for f in FIGURES],
    }


def tag_settings(config, task, model_name, method):
    """What a run's entities depend on: a tagger never reruns for a decoding change."""
    model = config["models"][model_name]
    types = entity_types(task)
    settings = {"model": keys.model_settings(model), "entity_types": types}
    if model["type"] == "encoder":
        settings["labels"] = tag_names(types)
        settings["max_length"] = runs.encoder_max_length(task, model_name, method, ENCODER_MAX_LENGTH)
        if method == "zeroshot":
            settings["head_seed"] = runs.head_seed(task, model_name)
        if not keys.batch_invariant(settings["model"]["dtype"]):
            settings["batch_size"] = task["decoding"]["batch_size"]
        return settings
    settings.update(
        prompt=keys.prompt_key(task["prompt"]),
        chat_template=model["chat_template"] and method != "raw",
        decoding=keys.job_decoding(config, task, model_name, method, task["decoding"])["key"],
        **keys.fewshot_settings(task, method),
    )
    return settings


def zeroshot_run(task, model, method):
    """The zero-shot run a fine-tuned run is compared with (its model's), or None."""
    if runs.method_seed(method) is None or (model, "zeroshot") not in runs.methods(task):
        return None
    return "zeroshot"


def score_inputs(task_name, task, model, method):
    """A run's entities; its zero-shot row's (a fine-tuned run) and the dictionary baseline's (every
    run but the baseline), for the paired tests on the same sentences."""
    inputs = {"predictions": paths.NER_PREDICTIONS.format(task=task_name, model=model, method=method)}
    zs = zeroshot_run(task, model, method)
    if zs:
        inputs["zeroshot"] = paths.NER_PREDICTIONS.format(task=task_name, model=model, method=zs)
    if method != BASELINE[1]:
        inputs["baseline"] = paths.NER_PREDICTIONS.format(task=task_name, model=BASELINE[0], method=BASELINE[1])
    return inputs


def score_settings(task):
    return {"entity_types": entity_types(task), "bootstrap": task["bootstrap"]}


def figure_inputs(task_name, task):
    return {
        "metrics": run_files(task_name, paths.NER_METRICS, scored_runs(task)),
        "train_logs": run_files(task_name, paths.TRAIN_LOG, runs.finetuned(task)),
    }


def run_labels(task, models):
    """[model, run, model kind or "baseline"] per scored run: what the figures draw."""
    return [[m, r, "baseline" if r == "baseline" else models[m]["type"]] for m, r in scored_runs(task)]
