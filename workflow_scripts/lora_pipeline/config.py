"""Config validation against schemas/config.schema.yaml, plus the cross-checks a schema cannot do.

Used by rules/common.smk at parse time; it imports nothing heavy (no torch), so a dry run
stays fast. Errors are one line naming the key and the fix.
"""
import copy
import hashlib
import json

import jsonschema
import yaml


class ConfigError(ValueError):
    pass


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error):
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error, source):
    where = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        return (f"{source}: {where}: unknown key {', '.join(map(repr, extra))}"
                f" (allowed keys: {', '.join(allowed)})")
    if error.validator == "required":
        return f"{source}: {where}: {error.message}; add it"
    return f"{source}: {where}: {error.message}"


def validate(config: dict, schema_path, source="config.yaml") -> dict:
    """Fill defaults in place and check types and keys; raise ConfigError with one line."""
    with open(schema_path, encoding="utf-8") as f:
        schema = yaml.safe_load(f)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.message)))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        raise ConfigError(_describe(best, source))
    _cross_check(config, source)
    return config


def _cross_check(config, source):
    models = config["models"]
    for task_name, task in config["tasks"].items():
        where = f"{source}: tasks.{task_name}"
        if "labels" not in task:
            raise ConfigError(f"{where}: classification needs 'labels', the list of label names")
        for key in ("models", "raw_prompt_models"):
            for m in task[key]:
                if m not in models:
                    raise ConfigError(f"{where}.{key}: model '{m}' is not defined under 'models' "
                                      f"(defined: {', '.join(models)})")
        for m in task["finetune"]:
            if m not in models:
                raise ConfigError(f"{where}.finetune: model '{m}' is not defined under 'models'")
        for m in task["raw_prompt_models"]:
            if models[m]["type"] != "causal_lm":
                raise ConfigError(f"{where}.raw_prompt_models: '{m}' is an encoder; only causal LMs take prompts")
        d = task["decoding"]
        if d["do_sample"] and d["temperature"] == 0:
            raise ConfigError(f"{where}.decoding: do_sample with temperature 0; use do_sample: false for greedy")
        if "{text}" not in task["prompt"]["template"]:
            raise ConfigError(f"{where}.prompt.template: must contain {{text}}")
        if not config["use_hub"] and "files" not in task:
            raise ConfigError(f"{where}: no 'files' for the offline run; add files or set use_hub: true")
    for name, model in models.items():
        if not config["use_hub"] and "source" not in model and "hub_id" not in model:
            raise ConfigError(f"{source}: models.{name}: give a 'source' (local) or a 'hub_id'")


def canonical(obj) -> str:
    """A deterministic string for rule params: same settings, same string, no spurious reruns."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def short_hash(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:12]
