"""Parse-time checks against the models themselves, before any job starts (and so before Snakemake
deletes the outputs of a job it is about to rerun).

What can be checked cheaply, without torch and without loading weights:
- every safetensors file of a prepared model folder (results/models/<model>/) and of each selected
  fine-tune output is complete: its header parses and the file is as long as the header says;
- every file of a prepared model folder still has the sha256 recorded when it was prepared
  (weight_digests.py: hashed only when its stat changed since it was last found whole), unless this
  invocation rebuilds the folder by force (`forced`: weight_digests.forced_models);
- a folder given as a model's `source` holds safetensors weights (a pickle-only folder, e.g. only
  pytorch_model.bin, is refused: no pickle is ever read);
- a model that loads from the hub (`use_hub: true`, or only a hub_id) can be served, from the
  local Hugging Face cache or from the hub (LORA_WF_HUB_CHECK=0 skips this, for a machine that
  plans or submits jobs which reach the hub from elsewhere);
- each fine-tune's target modules exist in the model: the module names come from the weights'
  safetensors headers (or the sharded index), the weights themselves are never read;
- `max_new_tokens` of every decoding and `training.max_length` fit the model's context length
  (config.json: max_position_embeddings or its equivalents).

Each model's files are looked up where the job will read them: its prepared folder when there is
one, else its local source, else the hub cache. A model none of them describes yet (a GGUF file not
yet dequantized, a hub model not yet downloaded) is checked by its jobs instead, which fail with
one line before training starts.
"""

import json
import os
from pathlib import Path

from . import model_kinds, tasks, weight_digests
from .common import ConfigError, PipelineError, selected_tasks
from .model_files import (  # noqa: F401 (callers and tests use them as preflight.*)
    HUB_CHECK_ENV,
    check_folder_weights,
    hub_cache_folder,
    hub_error,
    hub_problem,
    offline_reason,
    safetensors_header,
    safetensors_problem,
)

CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
# modules a job adds or that a checkpoint may leave out (tied output embeddings, new heads)
PEFT_KEYWORDS = {"all-linear"}


# ---------------------------------------------------------------- safetensors headers


def module_names(folder):
    """The names of the modules that hold weights, from the safetensors headers (or the sharded
    index) in `folder`, without reading any weights; None when the folder has no safetensors."""
    folder = Path(folder)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        params = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
    else:
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            return None
        params = {}
        for f in files:
            params.update(safetensors_header(f)[0])
    return {p.rsplit(".", 1)[0] for p in params if p != "__metadata__" and "." in p}


def missing_targets(targets, names, kind):
    """The target modules (PEFT's suffix match) that no module in `names` carries."""
    allowed = model_kinds.get(kind).ADDED_MODULES | PEFT_KEYWORDS
    return [t for t in targets if t not in allowed and not any(n == t or n.endswith("." + t) for n in names)]


def context_length(model_config):
    """The longest sequence a model takes (config.json), or None when it does not say."""
    for cfg in (model_config, model_config.get("text_config") or {}):
        for k in CONTEXT_KEYS:
            if isinstance(cfg.get(k), int) and cfg[k] > 0:
                return cfg[k]
    return None


# ---------------------------------------------------------------- where a model's files are


def loads_from_hub(config, model):
    return config["use_hub"] or "source" not in model


def source_folder(model):
    """A local source's folder (path, or a pip package found without importing it); None for GGUF."""
    import importlib.util

    src = model.get("source") or {}
    if "path" in src and not src.get("gguf_file"):
        return Path(src["path"])
    if "package" in src and not src.get("gguf_file"):
        spec = importlib.util.find_spec(src["package"])
        if spec is None or not spec.submodule_search_locations:
            return None  # models.package_dir names it in the job
        return Path(list(spec.submodule_search_locations)[0]) / src.get("subdir", "")
    return None


def described_folder(config, name, results="results"):
    """The folder whose config.json and weights describe model `name` as its jobs will load it:
    the prepared folder, else the local source, else the hub cache; None when none exists yet."""
    model = config["models"][name]
    prepared = Path(results) / "models" / name
    if (prepared / "config.json").is_file():
        return prepared
    if loads_from_hub(config, model):
        return hub_cache_folder(model["hub_id"]) if model.get("hub_id") else None
    folder = source_folder(model)
    return folder if folder is not None and (folder / "config.json").is_file() else None


# ---------------------------------------------------------------- the checks, on a validated config


def used_models(config):
    used = {
        m
        for t in selected_tasks(config).values()
        for m in t["models"] + t.get("raw_prompt_models", []) + list(t["finetune"])
    }
    study = config.get("tokenizer_study") or {}
    return sorted(used | set(study.get("models", [])))


def _target_lists(method, ft):
    """(settings block, key, modules) of the target lists a fine-tune entry names."""
    if method in ("lora", "dora", "qlora"):
        yield "lora", "target_modules", ft["lora"]["target_modules"]
    elif method == "ia3":
        for key in ("target_modules", "feedforward_modules"):
            if ft["ia3"].get(key):
                yield "ia3", key, ft["ia3"][key]
    elif method == "bottleneck":
        for key in ("attention_modules", "ffn_modules"):
            if ft["bottleneck"].get(key):
                yield "bottleneck", key, ft["bottleneck"][key]


def _check_bottleneck_places(block, folder, where, name):
    """A bottleneck fine-tune of an architecture whose attention and feed-forward outputs are not
    known (finetune_methods.BOTTLENECK_ARCHITECTURES) must name them: one line naming the keys."""
    from .finetune_methods import BOTTLENECK_ARCHITECTURES, bottleneck_placement

    model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    if model_type in BOTTLENECK_ARCHITECTURES:
        return
    need = ["ffn_modules"] + (["attention_modules"] if "attention" in bottleneck_placement(block["config"]) else [])
    unset = [k for k in need if not block.get(k)]
    if unset:
        raise ConfigError(
            f"{where}.bottleneck: where a '{model_type}' model's attention and feed-forward outputs are is not "
            f"known (model '{name}'); set {' and '.join('bottleneck.' + k for k in sorted(unset))} (module names, "
            f"e.g. [mlp.dense_4h_to_h])"
        )


def check(config, sources, results="results", forced=()):
    """Every check of the module docstring; raise ConfigError with one line naming the config file
    and key (sources: config.merge_order) or the file on disk, and the fix. forced: the models whose
    prepared folder this invocation rebuilds by force, whose files are not checked. The digest stamps
    live in .snakemake/weight_digests/ beside `results`."""
    from . import training_grid
    from .sources import finetune_items, key_path, source_of

    def source(*parts):
        return source_of(parts, sources)

    folders, names = {}, {}
    for name in used_models(config):
        model = config["models"][name]
        prepared = Path(results) / "models" / name
        try:
            if name not in forced:
                check_folder_weights(prepared, f"delete {prepared}/ and rerun: prepare_model rebuilds it")
                weight_digests.check_prepared(prepared, Path(results).parent / weight_digests.STAMPS)
        except PipelineError as e:
            raise ConfigError(str(e)) from None
        # checked even when a prepared folder exists: a changed origin (e.g. use_hub switched on)
        # reruns prepare_model, which would delete that folder before failing
        if loads_from_hub(config, model) and model.get("hub_id") and os.environ.get(HUB_CHECK_ENV) != "0":
            problem = hub_problem(model["hub_id"])
            if problem:
                raise ConfigError(
                    f"{source('models', name, 'hub_id')}: models.{name}: {hub_error(model['hub_id'], problem)}"
                )
        if not loads_from_hub(config, model):
            folder = source_folder(model)
            if (
                folder is not None
                and folder.is_dir()
                and not any(folder.glob("*.safetensors"))
                and not (folder / "model.safetensors.index.json").is_file()
            ):
                pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
                if pickles:
                    raise ConfigError(
                        f"{source('models', name, 'source')}: models.{name}.source: {folder} holds "
                        f"only pickled weights ({', '.join(pickles)}), which this workflow never "
                        f"reads; convert them to safetensors (save_pretrained(..., "
                        f"safe_serialization=True)) or point at a safetensors copy"
                    )
        folders[name] = described_folder(config, name, results)

    def model_names(name):
        if name not in names:
            try:
                names[name] = module_names(folders[name]) if folders[name] else None
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"{folders[name]}: a safetensors header of model '{name}' cannot be read ({e}); "
                    f"fix or replace that folder"
                ) from None
        return names[name]

    def model_context(name):
        folder = folders[name]
        if folder is None:
            return None, None
        try:
            model_config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ConfigError(f"{folder / 'config.json'}: cannot be read as JSON ({e}); fix or replace it") from None
        return context_length(model_config), folder

    for task_name, task in selected_tasks(config).items():
        for adapter_file in sorted(Path(results, task_name).glob("*/*/adapter/*.safetensors")):
            problem = safetensors_problem(adapter_file)
            if problem:
                raise ConfigError(
                    f"{adapter_file}: {problem}; delete {adapter_file.parent}/ and rerun: its finetune job rebuilds it"
                )
        for m, entry, parts in finetune_items(task_name, task):
            kind = config["models"][m]["type"]
            for ft in training_grid.expand(entry).values():
                for block, key, targets in _target_lists(entry["method"], ft):
                    have = model_names(m)
                    missing = missing_targets(targets, have, kind) if have is not None else []
                    if missing:
                        ends = sorted({n.rsplit(".", 1)[-1] for n in have if not n.rsplit(".", 1)[-1].isdigit()})
                        raise ConfigError(
                            f"{source(*parts, block, key)}: {key_path(parts)}.{block}.{key}: {missing} not in "
                            f"model '{m}' (its modules with weights are named: {', '.join(ends)}); fix the list"
                        )
                limit, folder = model_context(m)
                if entry["method"] == "bottleneck" and folder is not None:
                    _check_bottleneck_places(ft["bottleneck"], folder, f"{source(*parts)}: {key_path(parts)}", m)
                if limit and ft["training"]["max_length"] > limit:
                    raise ConfigError(
                        f"{source(*parts, 'training', 'max_length')}: {key_path(parts)}.training.max_length: "
                        f"{ft['training']['max_length']} is longer than model '{m}' takes ({limit} tokens, "
                        f"{folder / 'config.json'}); lower it"
                    )
        points = tasks.spec(task["type"]).decoding_points(task)
        for m in task["models"]:
            if not model_kinds.get(config["models"][m]["type"]).GENERATES:
                continue
            limit, folder = model_context(m)
            for where, d in points.items():
                n = d.get("max_new_tokens")
                if limit and isinstance(n, int) and n >= limit:
                    parts = ["tasks", task_name, *where.split("."), "max_new_tokens"]
                    at = source(*parts) if source(*parts) != "the merged config" else source("tasks", task_name)
                    raise ConfigError(
                        f"{at}: tasks.{task_name}.{where}.max_new_tokens: {n} new tokens do not fit "
                        f"model '{m}' ({limit} tokens of context, {folder / 'config.json'}); lower it"
                    )
