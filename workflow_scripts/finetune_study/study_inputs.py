"""What the tokenizer and chat-template study reads: its tokenizers (shared folders under data_dir,
or hub ids), its texts, the task texts it takes from the selected tasks, and its outputs that the
report reads. Standard library only: the rules call it at parse time."""

from pathlib import Path

from . import paths

OUTPUTS = (
    "results/tokenizers/table.json",
    "results/tokenizers/stats.png",
    "results/tokenizers/pieces.json",
    "results/tokenizers/chat_templates.json",
)


def models_in_use(tasks):
    """Every model a selected task runs or fine-tunes, sorted (the chat-template table's rows)."""
    return sorted({m for t in tasks.values() for m in t["models"] + list(t["finetune"])})


def tokenizers(config):
    """name -> where: shared folders (under data_dir) or hub ids, then the pipeline's models."""
    study = config["tokenizer_study"]
    out = {}
    for name, where in study["tokenizers"].items():
        local = Path(config["data_dir"]) / where
        out[name] = paths.relative(local) if local.exists() or not config["use_hub"] else where
    for m in study["models"]:
        out[m] = paths.MODEL_DIR.format(model=m)
    return out


def task_texts(config, tasks):
    """task -> number of its test texts in the study, for the tasks this run selects (a study config
    merged over config.yaml may leave the default task's entry behind)."""
    return {t: n for t, n in config["tokenizer_study"]["task_texts"].items() if t in tasks}


def inputs(config, tasks, basedir):
    study = config["tokenizer_study"]
    texts = [paths.relative(p if Path(p).is_absolute() else Path(basedir) / p) for p in study["texts"].values()]
    texts += [f"results/tokenizers/texts/{t}.txt" for t in task_texts(config, tasks)]
    return {"texts": texts, "models": [paths.MODEL_DIR.format(model=m) for m in study["models"]]}


def outputs(config):
    return list(OUTPUTS) if config.get("tokenizer_study") else []
