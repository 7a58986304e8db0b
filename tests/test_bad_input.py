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
    assert "models.tiny_llama: 8.0B parameters in bfloat16 need about 20 GB" in msg and "resources.mem_mb" in msg
    c["models"]["tiny_llama"]["resources"] = {"gpus": 1, "gpu_mem_gb": 16}
    assert "resources.gpus x gpu_mem_gb" in error_of(w, c)


def test_slurm_needs_partition_and_gpu_requests(work):
    w, c = work
    c["executor"] = "slurm"
    assert "no slurm_partition in default-resources" in error_of(w, c)
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
