"""Bad input stops the workflow at parse time with one line naming the key or file and the fix."""

import pytest

import tiny


@pytest.fixture()
def work(tmp_path):
    # model folders need not exist for parse-time checks
    config = tiny.tiny_config(tmp_path / "models", tmp_path / "work")
    return tmp_path / "work", config


def error_of(work, config):
    tiny.write_config(work, config)
    proc = tiny.snakemake(work, "-n", check=False)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error: ")]
    assert lines, proc.stderr[-2000:]
    return lines[0]


def test_misspelled_key(work):
    w, c = work
    c["tasks"]["emotion"]["labls"] = c["tasks"]["emotion"].pop("labels")
    msg = error_of(w, c)
    assert msg.startswith("Error: config.yaml: tasks.emotion: unknown key 'labls'; did you mean 'labels'?")
    c["tasks"]["emotion"]["labels"] = c["tasks"]["emotion"].pop("labls")
    c["tasks"]["emotion"]["sampel"] = c["tasks"]["emotion"].pop("sample")
    assert "unknown key 'sampel'; did you mean 'sample'?" in error_of(w, c)


def test_error_names_the_config_file_the_key_came_from(work):
    import yaml

    w, c = work
    tiny.write_config(w, c)
    (w / "study.yaml").write_text(yaml.safe_dump({"tasks": {"emotion": {"decoding": {"num_beams": 0}}}}))
    proc = tiny.snakemake(w, "-n", "--configfile", str(w / "config.yaml"), str(w / "study.yaml"), check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: "))
    assert line.startswith(
        f"Error: {w / 'study.yaml'}: tasks.emotion.decoding.num_beams: 0 is less than the minimum of 1"
    ), line
    proc = tiny.snakemake(w, "-n", "--config", "torch_threads=-1", check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: "))
    assert line.startswith("Error: --config: torch_threads:"), line


def test_hub_only_model_without_use_hub(work):
    w, c = work
    del c["models"]["tiny_llama"]["source"]
    c["models"]["tiny_llama"]["hub_id"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    msg = error_of(w, c)
    assert (
        "config.yaml: models.tiny_llama: only a hub_id ('HuggingFaceTB/SmolLM2-135M-Instruct') while use_hub is false"
        in msg
    )
    assert "add a local source:" in msg and "use_hub: true" in msg
    assert not (w / "results").exists() and not (w / "logs").exists()


def test_wrong_type(work):
    w, c = work
    c["tasks"]["emotion"]["finetune"]["tiny_llama"]["lora"]["r"] = "eight"
    msg = error_of(w, c)
    assert "tasks.emotion.finetune.tiny_llama.lora.r" in msg and "'eight' is not of type 'integer'" in msg


def test_bad_decoding_value(work):
    w, c = work
    c["tasks"]["emotion"]["decoding"]["num_beams"] = 0
    assert "tasks.emotion.decoding.num_beams: 0 is less than the minimum of 1" in error_of(w, c)
    c["tasks"]["emotion"]["decoding"].update(num_beams=1, do_sample=True, temperature=0)
    assert "do_sample with temperature 0" in error_of(w, c)
    c["tasks"]["emotion"]["decoding"].update(do_sample=False, compile=True)
    assert "compile needs cache: static" in error_of(w, c)


def test_packing_an_encoder(work):
    w, c = work
    c["tasks"]["emotion"]["finetune"]["tiny_bert"]["training"]["packing"] = True
    assert "tasks.emotion.finetune.tiny_bert.training.packing: 'tiny_bert' is an encoder" in error_of(w, c)


def test_liger_kernels_without_a_cuda_gpu(work):
    w, c = work
    c["tasks"]["emotion"]["finetune"]["tiny_llama"]["training"]["kernels"] = "liger"
    tiny.write_config(w, c)
    proc = tiny.snakemake(w, "-n", env={"LORA_WF_CUDA": "0"}, check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error: ")]
    assert proc.returncode != 0 and lines == [
        "Error: config.yaml: tasks.emotion.finetune.tiny_llama.training.kernels: liger kernels need a CUDA GPU "
        "(no nvidia-smi on PATH; set LORA_WF_CUDA=1 if the jobs run on GPU nodes), or set kernels: none"
    ], proc.stderr[-2000:]
    assert not (w / "results").exists()


def test_undefined_model(work):
    w, c = work
    c["tasks"]["emotion"]["models"].append("gpt5")
    assert "model 'gpt5' is not defined under 'models'" in error_of(w, c)


def test_missing_file(work):
    w, c = work
    c["tasks"]["emotion"]["files"]["test"] = "emotion/tset.txt"
    assert "emotion/tset.txt: data file not found" in error_of(w, c)


def test_missing_column_and_unknown_label(work):
    w, c = work
    c["tasks"]["emotion"]["label_column"] = "emotion"
    assert "no column 'emotion' (columns: text, label_name)" in error_of(w, c)
    c["tasks"]["emotion"]["label_column"] = "label_name"
    c["tasks"]["emotion"]["labels"] = ["sadness", "joy", "love", "anger", "fear"]
    msg = error_of(w, c)
    assert "emotion/train.txt" in msg and "label 'surprise', not one of" in msg


def test_empty_split(work, tmp_path):
    w, c = work
    empty = tmp_path / "data"
    empty.mkdir()
    (empty / "t.csv").write_text("text,label\nhello,joy\n")
    (empty / "e.csv").write_text("text,label\n")
    c["data_dir"] = str(empty)
    c["tasks"]["emotion"].update(files={"train": "t.csv", "test": "e.csv"}, format="csv", label_column="label")
    assert "e.csv" in error_of(w, c)


def test_model_too_large_for_its_resources(work):
    w, c = work
    c["models"]["tiny_llama"].update(params_b=8.0, dtype="bfloat16", resources={"mem_mb": 8000})
    msg = error_of(w, c)
    assert msg.startswith("Error: config.yaml: models.tiny_llama: 8.0B parameters in bfloat16 need about 20 GB"), msg
    assert "resources.mem_mb" in msg
    c["models"]["tiny_llama"]["resources"] = {"gpus": 1, "gpu_mem_gb": 16}
    assert "resources.gpus x gpu_mem_gb" in error_of(w, c)


def test_slurm_needs_partition_and_gpu_requests(work):
    w, c = work
    c["executor"] = "slurm"
    assert error_of(w, c).startswith("Error: config.yaml: executor: slurm, but no slurm_partition in default-resources")
    c["models"]["tiny_llama"].update(params_b=7.0, dtype="bfloat16", resources={"mem_mb": 64000})
    tiny.write_config(w, c)
    proc = tiny.snakemake(w, "-n", "--default-resources", "slurm_partition=gpu", check=False)
    assert proc.returncode != 0 and "models.tiny_llama: a 7.0B model's jobs request no GPU" in proc.stdout + proc.stderr


def data_dir_with(tmp_path, **files):
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    for name, content in files.items():
        (folder / name.replace("_", ".")).write_bytes(content)
    return folder


def test_undecodable_bytes(work, tmp_path):
    w, c = work
    d = data_dir_with(tmp_path, t_txt=b"text;label\nhello;joy\n\ncaf\xe9;joy\nfine;joy\n")
    c["data_dir"] = str(d)
    c["tasks"]["emotion"].update(files={"train": "t.txt"}, label_column="label")
    msg = error_of(w, c)
    assert f"{d / 't.txt'}:4: not valid utf-8 (byte 0xe9)" in msg and "set the task's encoding:" in msg
    assert not (w / "results").exists()
    c["tasks"]["emotion"]["encoding"] = "latin-1"
    tiny.write_config(w, c)
    proc = tiny.snakemake(w, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert "Building DAG of jobs" in out and "not valid" not in out  # past the parse-time data checks


def test_semicolon_line_without_separator(work, tmp_path):
    w, c = work
    d = data_dir_with(tmp_path, t_txt=b"text;label\nhello;joy\nthis line has no label\n")
    c["data_dir"] = str(d)
    c["tasks"]["emotion"].update(files={"train": "t.txt"}, label_column="label")
    assert f"{d / 't.txt'}:3: no ';' between text and label" in error_of(w, c)
    assert not (w / "results").exists()


def test_integer_labels_need_label_map(work):
    w, c = work
    c["tasks"]["emotion"].update(
        files={"train": "imdb/asini_imdb_sample.csv"},
        format="csv",
        label_column="label",
        labels=["negative", "positive"],
        drop_rows_with_label=["label"],
    )
    msg = error_of(w, c)
    assert "asini_imdb_sample.csv" in msg and "row 1 has integer label '0'" in msg and "label_map" in msg
    assert not (w / "results").exists()
    c["tasks"]["emotion"]["label_map"] = {"0": "negative", "1": "good"}
    msg = error_of(w, c)
    assert "label_map maps '1' to 'good', which is not one of ['negative', 'positive']" in msg


# Found by the config fuzz (test_config_fuzz.py), each now one line naming the file and key:


@pytest.mark.parametrize(
    "key, text, fix",
    [
        ("learning_rate", "1e-3", "write 1.0e-3 or 0.001"),
        ("learning_rate", "5e-5", "write 5.0e-5 or 0.00005"),
        ("warmup_ratio", "5e-2", "write 5.0e-2 or 0.05"),
        ("max_steps", "1e3", "write 1000"),  # an integer key: [integer, null] in the schema
        ("eval_sample", "1e2", "write 100"),
    ],
)
def test_a_number_yaml_read_as_text_names_the_cause_and_the_fix(tmp_path, key, text, fix):
    """YAML 1.1 reads 1e-3 (no dot, no signed exponent) as a string: the line says so and how to write
    it; written that way, the value passes. In-process (parse_checks.check, as rules/common.smk runs
    it); the real command: test_reliability.py::test_the_only_configfile_overlay_is_named_over_config_yaml."""
    import yaml

    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    c = tiny.tiny_config(tmp_path / "models", tmp_path)
    training = c["tasks"]["emotion"]["finetune"]["tiny_llama"]["training"]
    study = tmp_path / "study.yaml"
    study.write_text(
        f"tasks:\n  emotion:\n    finetune:\n      tiny_llama:\n        training:\n          {key}: {text}\n"
    )
    training[key] = yaml.safe_load(study.read_text())["tasks"]["emotion"]["finetune"]["tiny_llama"]["training"][key]
    assert training[key] == text  # YAML's own reading: text
    with pytest.raises(ConfigError) as e:
        parse_checks.check(c, [str(study)])
    where = f"{study}: tasks.emotion.finetune.tiny_llama.training.{key}: '{text}' is not"
    assert str(e.value).startswith(where) and str(e.value).endswith(f"; YAML read {text} as text, not a number: {fix}")
    fixed = tiny.tiny_config(tmp_path / "models", tmp_path)
    fixed["tasks"]["emotion"]["finetune"]["tiny_llama"]["training"][key] = yaml.safe_load(fix.split()[-1])
    parse_checks.check(fixed, [str(study)])  # the fix is a number to YAML, and passes


def test_a_default_key_is_named_in_the_file_that_sets_its_block(tmp_path):
    """A study whose MiniLM fine-tune is a list entry with `lora: {}`: the schema's default target_modules
    (q_proj, v_proj) are not in the encoder. No file sets that key; the line names the file that sets
    the entry's lora block (it said "the merged config" before)."""
    import yaml
    from snakemake.utils import update_config

    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"tasks": {"emotion": {"finetune": {"minilm_l6": [{"lora": {}}]}}}}))
    config = yaml.safe_load((tiny.REPO / "config.yaml").read_text())
    update_config(config, yaml.safe_load(study.read_text()) | {"data_dir": str(tiny.DATA_DIR)})
    with pytest.raises(ConfigError) as e:
        parse_checks.check(config, [str(tiny.REPO / "config.yaml"), str(study)], results=tmp_path / "results")
    assert str(e.value).startswith(
        f"{study}: tasks.emotion.finetune.minilm_l6[0].lora.target_modules: ['q_proj', 'v_proj'] not in model "
        "'minilm_l6' (its modules with weights are named: "
    ), str(e.value)


def test_a_source_target_task_without_a_prompt(tmp_path):
    """The DialogSum study with its prompt: block removed: a source -> target task has no default
    instruction, so the schema requires it (it was a KeyError in the task type's cross-check)."""
    import yaml
    from snakemake.utils import update_config

    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    study = yaml.safe_load((tiny.REPO / "configs" / "studies" / "dialogsum_summarization.offline.yaml").read_text())
    del study["tasks"]["dialogsum"]["prompt"]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    config = yaml.safe_load((tiny.REPO / "config.yaml").read_text())
    update_config(config, study | {"data_dir": str(tiny.DATA_DIR)})
    with pytest.raises(ConfigError) as e:
        parse_checks.check(config, [str(tiny.REPO / "config.yaml"), str(tmp_path / "study.yaml")])
    assert str(e.value) == f"{tmp_path / 'study.yaml'}: tasks.dialogsum: 'prompt' is a required property; add it"


def test_a_control_character_in_a_value_stays_on_the_line(tmp_path):
    """A data_dir ending in a carriage return (pasted from a Windows file): the error shows it escaped,
    so it stays one line that names the config file and data_dir (the \\r went into the line as it was)."""
    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    c = tiny.tiny_config(tmp_path / "models", tmp_path)
    c["data_dir"] = f"{tiny.DATA_DIR}\r"
    tiny.write_config(tmp_path, c)
    with pytest.raises(ConfigError) as e:
        parse_checks.check(c, [str(tmp_path / "config.yaml")])
    assert str(e.value).startswith(f"{tmp_path / 'config.yaml'}: data_dir: '{tiny.DATA_DIR}\\r' is not a folder")
    assert "\r" not in str(e.value)


@pytest.mark.parametrize("data_dir", ["../no/such/folder", "x" * 5000], ids=["missing", "too-long-for-the-os"])
def test_a_data_dir_that_is_no_folder_is_one_line_naming_the_key(tmp_path, data_dir):
    """data_dir pointing nowhere (found by the config fuzz: a text value; a path longer than the
    OS allows raised OSError: File name too long): one line naming the config file and data_dir."""
    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    c = tiny.tiny_config(tmp_path / "models", tmp_path)
    c["data_dir"] = data_dir
    tiny.write_config(tmp_path, c)
    with pytest.raises(ConfigError) as e:
        parse_checks.check(c, [str(tmp_path / "config.yaml")])
    assert str(e.value).startswith(f"{tmp_path / 'config.yaml'}: data_dir: '{data_dir}' is not a folder")
    assert "\n" not in str(e.value)


def test_a_default_data_dir_that_is_no_folder_names_the_main_config_file(tmp_path, monkeypatch):
    """No config file sets data_dir and the schema's default (../shared/data) is no folder from the
    working directory (found by the config fuzz: it named 'the merged config'): the line names the
    main config file and says the value is the default."""
    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    c = tiny.tiny_config(tmp_path / "models", tmp_path)
    del c["data_dir"]
    tiny.write_config(tmp_path / "work", c)
    monkeypatch.chdir(tmp_path / "work")  # ../shared/data does not exist from here
    with pytest.raises(ConfigError) as e:
        parse_checks.check(c, [str(tmp_path / "work" / "config.yaml")])
    assert str(e.value).startswith(
        f"{tmp_path / 'work' / 'config.yaml'}: data_dir: '../shared/data' (the default: no config file sets "
        "data_dir) is not a folder"
    )


@pytest.mark.parametrize(
    "parts, value",
    [
        (["tasks", "emotion", "max_chars"], 1.0),  # sliced the texts: a TypeError when the data was read
        (["tasks", "emotion", "finetune", "tiny_bert", "training", "batch_size"], 8.0),  # range() in the fine-tune job
    ],
)
def test_an_integer_key_given_a_float(tmp_path, parts, value):
    """JSON Schema counts 1.0 as an integer, Python's slices and batch sizes do not: an integer key
    takes integers only, and the line gives the integer to write."""
    from finetune_study import parse_checks
    from finetune_study.common import ConfigError

    c = tiny.tiny_config(tmp_path / "models", tmp_path)
    node = c
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value
    tiny.write_config(tmp_path, c)
    with pytest.raises(ConfigError) as e:
        parse_checks.check(c, [str(tmp_path / "config.yaml")])
    assert str(e.value).startswith(f"{tmp_path / 'config.yaml'}: {'.'.join(parts)}: {value} is not of type 'integer'")
    assert str(e.value).endswith(f"; write {int(value)}")


def test_an_unknown_key_yaml_reads_as_a_number(work):
    """`0:` under a fine-tune entry (a list index written as a key): YAML reads the key as the integer
    0, which the suggestion for a misspelled key could not compare (a TypeError before)."""
    w, c = work
    c["tasks"]["emotion"]["finetune"]["tiny_bert"][0] = {"lora": {"r": 4}}
    msg = error_of(w, c)
    assert msg.startswith("Error: config.yaml: tasks.emotion.finetune.tiny_bert: unknown key 0 (allowed keys: "), msg


def test_an_empty_file_entry(work):
    """`train: ''`: the schema refuses it, naming the key (before, the data check named the bare data_dir
    as a missing data file)."""
    w, c = work
    c["tasks"]["emotion"]["files"]["train"] = ""
    msg = error_of(w, c)
    assert msg.startswith("Error: config.yaml: tasks.emotion.files.train: '' should be non-empty"), msg


@pytest.mark.parametrize(
    "name, content, expected",
    [
        ("d.jsonl", '{"text": "a", "label": "joy"}\n0\n', "d.jsonl:2: a record must be a JSON object ({...}), not int"),
        ("d.json", '[{"text": "a", "label": "joy"}, 0]', "d.json: record 2 of the list is a JSON int, not an object"),
    ],
    ids=["jsonl", "json"],
)
def test_a_json_record_that_is_no_object_is_one_line(tmp_path, name, content, expected):
    """A JSON(L) data file whose record is a number (found by the config fuzz: a garbage file reached
    the task type's reader as an AttributeError or TypeError): one line naming the file and record."""
    from finetune_study import data
    from finetune_study.common import PipelineError

    (tmp_path / name).write_text(content)
    with pytest.raises(PipelineError) as e:
        data.read_rows(tmp_path / name)
    assert str(e.value).startswith(f"{tmp_path / name}") and expected in str(e.value)
