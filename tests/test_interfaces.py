"""Every registered task type and model kind against its interface (tasks.INTERFACE,
model_kinds.INTERFACE), and every list that must agree with another: the schema's enums against the
registries, the fine-tune methods against their builders, the splits against the schema. Adding a
task type without one of its parts, or without its schema block, fails here with the name of what
is missing."""

import inspect
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from finetune_study import adapters, data, finetune_methods, fingerprints, loss, model_kinds, results_table, tasks
from finetune_study import config as cfg

SCHEMA = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
DEFS = SCHEMA["$defs"]
SCRIPTS = sorted(p.name for p in (REPO / "workflow_scripts").glob("*.py"))


def module_of(task_type, part):
    return tasks.spec(task_type) if part == "" else tasks.part(task_type, part)


@pytest.mark.parametrize("task_type", tasks.TASK_TYPES)
def test_every_task_type_provides_every_part_of_the_interface(task_type):
    for part, names in tasks.INTERFACE.items():
        module = module_of(task_type, part)
        assert module.__doc__, f"{module.__name__} has no docstring"
        for name in names:
            assert hasattr(module, name), f"task type {task_type}: {module.__name__} has no {name}"
            if name[0].islower():
                assert callable(getattr(module, name)), f"{module.__name__}.{name} is not a function"
                # the interface's argument list, e.g. "(rows, task, source) -> ..."
                declared = names[name].split(")")[0].strip("(").replace(" ", "").split(",")
                params = list(inspect.signature(getattr(module, name)).parameters)
                assert params[: len(declared)] == declared, f"{module.__name__}.{name}{params} != {declared}"


@pytest.mark.parametrize("task_type", tasks.TASK_TYPES)
def test_every_task_type_has_its_schema_block_and_dispatch(task_type):
    block = DEFS[f"{task_type}_task"]
    assert block["properties"]["type"]["const"] == task_type
    dispatch = [(c["if"]["properties"]["type"]["const"], c["then"]["$ref"]) for c in DEFS["task"]["allOf"]]
    assert (task_type, f"#/$defs/{task_type}_task") in dispatch


def test_schema_enums_agree_with_the_registries():
    assert DEFS["task"]["properties"]["type"]["enum"] == list(tasks.TASK_TYPES)
    assert len(DEFS["task"]["allOf"]) == len(tasks.TASK_TYPES)  # no block for a type that is not registered
    assert DEFS["model"]["properties"]["type"]["enum"] == list(model_kinds.MODEL_KINDS)
    assert DEFS["finetune"]["properties"]["method"]["enum"] == list(finetune_methods.FINETUNE_METHODS)
    assert list(DEFS["task_files"]["properties"]) == list(data.SPLITS)
    published = set(DEFS["published"]["properties"]["metrics"]["propertyNames"]["enum"])
    for t in tasks.TASK_TYPES:
        assert set(tasks.spec(t).TABLE_METRICS) <= published, t


def test_the_fine_tune_methods_agree_with_their_builders_and_settings_blocks():
    assert set(adapters.BUILDERS) == set(finetune_methods.FINETUNE_METHODS)
    for method, block in finetune_methods.METHOD_SETTINGS.items():
        assert block is None or block in DEFS["finetune"]["properties"], method


def test_model_kinds_are_declared_by_task_types_and_train_with_a_known_loss():
    for t in tasks.TASK_TYPES:
        spec = tasks.spec(t)
        assert spec.MODEL_KINDS, t
        for kind, peft_type in spec.MODEL_KINDS.items():
            assert kind in model_kinds.MODEL_KINDS, (t, kind)
            assert peft_type in loss.LOSSES, (t, kind, peft_type)
            assert kind in tasks.part(t, "training").EXAMPLES, f"{t} has no training examples for {kind}"
    for kind in model_kinds.MODEL_KINDS:
        module = model_kinds.get(kind)
        for name in model_kinds.INTERFACE:
            assert hasattr(module, name), f"model kind {kind} has no {name}"
        assert set(module.METHODS) <= set(finetune_methods.FINETUNE_METHODS)
    # by hand: encoders take no prompt learning and no qlora; generation takes no encoder
    assert set(model_kinds.get("encoder").METHODS) == {"lora", "dora", "ia3", "full", "bottleneck"}
    assert tasks.peft_task_type("classification", "encoder") == "SEQ_CLS"
    assert tasks.peft_task_type("generation", "causal_lm") == "CAUSAL_LM"
    with pytest.raises(KeyError):
        tasks.peft_task_type("generation", "encoder")


def test_the_results_table_has_every_task_types_columns_once():
    cols = results_table.COLUMNS
    assert len(cols) == len(set(cols))
    for t in tasks.TASK_TYPES:
        spec = tasks.spec(t)
        for m in spec.TABLE_METRICS:
            assert [f"{m}", f"{m}_low", f"{m}_high"] == cols[cols.index(m) : cols.index(m) + 3]
        assert set(spec.TABLE_COLUMNS) <= set(cols)


def test_each_script_fingerprints_its_own_task_types_parts_and_no_other():
    for script in SCRIPTS:
        for t in tasks.TASK_TYPES:
            names = {f.name for f in fingerprints.code_files(script, (t,)) if f.parent.name == "tasks"}
            for part in fingerprints.task_parts(REPO / "workflow_scripts" / script):
                own = f"{t}.py" if part == "spec" else f"{t}_{part}.py"
                assert own in names, (script, t, part)
            others = [o for o in tasks.TASK_TYPES if o != t]
            leaked = {n for n in names for o in others if n.startswith(f"{o}_")}
            assert not leaked, f"{script} for {t} fingerprints {leaked}"
    # by hand: the fine-tune of a classification task runs classification_training.py
    files = {f.name for f in fingerprints.code_files("finetune.py", ("classification",))}
    assert "generation.py" not in files
    assert "classification_training.py" in files and "generation_training.py" not in files


def test_an_unknown_task_type_fails_at_parse_time_with_one_line(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["tasks"]["emotion"]["type"] = "ner"
    with pytest.raises(cfg.ConfigError) as e:
        cfg.validate(config, REPO / "schemas" / "config.schema.yaml")
    message = str(e.value)
    assert "\n" not in message and "tasks.emotion.type" in message and "'ner' is not one of" in message


def test_the_package_imports_without_the_checkout_on_the_path(tmp_path):
    """Installed (pip install -e .), it imports from anywhere, as a notebook would."""
    code = "import finetune_study.tasks as t, finetune_study.keys; print(t.TASK_TYPES)"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "classification" in proc.stdout


def test_a_model_kind_its_task_type_does_not_take_fails_at_parse_time_with_one_line():
    """A generation task given an encoder: one line naming the file, the key and what it takes."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["tasks"]["alpaca"] = {
        "type": "generation",
        "files": {"train": "alpaca/alpaca_data_1k.json"},
        "models": ["minilm_l6"],
        "decodings": {"greedy": {"max_new_tokens": 8}},
    }
    with pytest.raises(cfg.ConfigError) as e:
        cfg.validate(config, REPO / "schemas" / "config.schema.yaml", files=[str(REPO / "config.yaml")])
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("the merged config: tasks.alpaca.models: 'minilm_l6' is a model of type encoder")
    assert "generation tasks take causal_lm models" in message
