"""No failed run destroys an earlier result, and every bad input names the file whose value
Snakemake used.

- Each bad value of CASES is put in a --configfile overlay while config.yaml holds a good value of
  the same key: the one-line error names the overlay. Put in config.yaml instead (the overlay
  setting other keys of the same task), it names config.yaml. These run the parse-time checks
  in-process, merged as Snakemake merges (snakemake.utils.update_config, command line over the
  Snakefile's configfile); the real command is run for the overlay-only case and for the checks
  against the models themselves (finetune_study/preflight.py).
- Against a finished run, every failure leaves results/ byte-identical: a target module the
  model lacks, max_new_tokens or max_length past the context, an unreachable hub, a truncated
  model.safetensors, a YAML syntax error.
"""

import copy
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

import tiny
from finetune_study import config as cfg
from finetune_study import preflight

SCHEMA = tiny.REPO / "schemas" / "config.schema.yaml"
LLAMA_FT = ["tasks", "emotion", "finetune", "tiny_llama"]
# case -> (key, bad value, good value); the message names the key (or its list item)
CASES = {
    "wrong type": (LLAMA_FT + ["lora", "r"], "eight", 4),
    "1e-3, which YAML reads as a string": (LLAMA_FT + ["training", "learning_rate"], "1e-3", 0.01),
    "duplicate labels": (["tasks", "emotion", "labels"], ["sadness", "sadness", "joy"], ["sadness", "joy"]),
    "max_steps 0": (LLAMA_FT + ["training", "max_steps"], 0, 2),
    "negative learning rate": (LLAMA_FT + ["training", "learning_rate"], -0.01, 0.01),
    "max_new_tokens 0": (["tasks", "emotion", "decoding", "max_new_tokens"], 0, 3),
    "template without {text}": (["tasks", "emotion", "prompt", "template"], "Emotion?\nAnswer:", "Of: {text}\nAnswer:"),
    "integer labels": (["tasks", "emotion", "labels"], [0, 1], ["sadness", "joy"]),
    "duplicate seeds": (LLAMA_FT + ["training", "seeds"], [0, 0], [0]),
    "undefined model": (["tasks", "emotion", "models"], ["tiny_llama", "gpt5"], ["tiny_llama", "tiny_bert"]),
    "target module the model lacks": (LLAMA_FT + ["lora", "target_modules"], ["q_proj", "nope"], ["q_proj", "v_proj"]),
    "max_new_tokens past the context": (["tasks", "emotion", "decoding", "max_new_tokens"], 10**9, 3),
    "max_length past the context": (LLAMA_FT + ["training", "max_length"], 4096, 96),
}
OTHER_KEYS = {"tasks": {"emotion": {"seed": 3}}, "models": {"tiny_llama": {"role": "base"}}}
# the checks against the model files, run through the real command on a finished run
MODEL_CASES = ["target module the model lacks", "max_new_tokens past the context", "max_length past the context"]


def nest(parts, value):
    for p in reversed(parts):
        value = {p: value}
    return value


def parse_error(workdir, config_yaml, overlay):
    """The parse-time checks as rules/common.smk runs them for `--configfile overlay` over the
    Snakefile's config.yaml, in-process; the ConfigError's message, or None."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config_yaml))
    (workdir / "overlay.yaml").write_text(yaml.safe_dump(overlay))
    merged = copy.deepcopy(config_yaml)
    update_config(merged, overlay)
    sources = cfg.merge_order([workdir / "overlay.yaml", "config.yaml"], [workdir / "overlay.yaml"])
    sources = [str(workdir / s) if s == "config.yaml" else s for s in sources]
    try:
        cfg.validate(merged, SCHEMA, files=sources)
        preflight.check(merged, sources, results=workdir / "results")
    except cfg.ConfigError as e:
        return str(e)
    return None


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    return tiny.copy_run(tiny_run, tmp_path_factory.mktemp("reliability"))


def digest(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(Path(folder).rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("case", list(CASES))
def test_the_error_names_the_file_whose_value_was_used(finished, case, tmp_path):
    work, config = finished
    parts, bad, good = CASES[case]
    (tmp_path / "results").symlink_to(work / "results")  # the prepared models the model checks read
    good_config = tiny.edited(config, lambda c: update_config(c, nest(parts, good)))
    assert parse_error(tmp_path, good_config, {}) is None
    key = cfg.key_path(parts)
    msg = parse_error(tmp_path, good_config, nest(parts, bad))  # both files hold the key: the overlay wins
    assert msg is not None and msg.startswith(f"{tmp_path / 'overlay.yaml'}: {key}"), msg
    bad_config = tiny.edited(config, lambda c: update_config(c, nest(parts, bad)))
    msg = parse_error(tmp_path, bad_config, OTHER_KEYS)  # the overlay sets other keys of the same task
    assert msg is not None and msg.startswith(f"{tmp_path / 'config.yaml'}: {key}"), msg


def test_the_only_configfile_overlay_is_named_over_config_yaml(finished, tmp_path):
    """The real command: `learning_rate: 1e-3` (a string to YAML) in the one --configfile, while
    config.yaml (read by the Snakefile's configfile:) holds a number for the same key."""
    work, _ = finished
    overlay = tmp_path / "study.yaml"
    overlay.write_text(
        "tasks:\n  emotion:\n    finetune:\n      tiny_llama:\n        training:\n          learning_rate: 1e-3\n"
    )
    proc = tiny.snakemake(work, "-n", "--configfile", str(overlay), check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: "))
    assert line == (
        f"Error: {overlay}: tasks.emotion.finetune.tiny_llama.training.learning_rate: '1e-3' is not of type 'number'; "
        "YAML read 1e-3 as text, not a number: write 1.0e-3 or 0.001"
    ), line


def failed_run(work, *args, env=None, targets=("results/report.html",)):
    """Run the real command (not a dry run); it must fail at parse time with one 'Error: ' line
    and leave results/ byte-identical. Returns that line."""
    before = digest(work / "results")
    proc = tiny.snakemake(work, *targets, *args, env=env, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    errors = [x for x in out.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in out and "Select jobs to execute" not in out, out[-3000:]
    assert digest(work / "results") == before
    return errors[0]


@pytest.mark.parametrize("case", MODEL_CASES)
def test_checks_against_the_model_run_before_any_job(finished, case, tmp_path):
    work, _ = finished
    parts, bad, _ = CASES[case]
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump(nest(parts, bad)))
    line = failed_run(work, "--configfile", str(overlay))
    assert line.startswith(f"Error: {overlay}: {cfg.key_path(parts)}"), line
    if case == "target module the model lacks":
        assert "['nope'] not in model 'tiny_llama'" in line and "q_proj" in line and "fix the list" in line
    else:
        assert "512 tokens" in line and "results/models/tiny_llama/config.json" in line


def test_unreachable_hub_fails_before_prepare_model_deletes_anything(finished, tmp_path):
    work, _ = finished
    overlay = tmp_path / "hub.yaml"
    overlay.write_text(yaml.safe_dump({"use_hub": True, "models": {"tiny_llama": {"hub_id": "tinyorg/not-cached"}}}))
    env = {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": "http://127.0.0.1:9",
    }  # nothing listens on port 9: refused at once
    line = failed_run(work, "--configfile", str(overlay), env=env)
    assert line.startswith(
        f"Error: {overlay}: models.tiny_llama: model hub_id 'tinyorg/not-cached': the hub cannot serve it"
    ), line
    assert "run once with network access" in line and "use_hub: false" in line
    offline = dict(env, HF_HUB_OFFLINE="1")
    assert "offline mode is on" in failed_run(work, "--configfile", str(overlay), env=offline)


def test_truncated_model_weights_are_named_before_any_job(finished):
    work, _ = finished
    weights = work / "results/models/tiny_bert/model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[: len(whole) // 2])
    try:
        line = failed_run(work)
        assert line.startswith(
            f"Error: results/models/tiny_bert/model.safetensors: {len(whole) // 2} bytes where "
            f"its header describes {len(whole)}"
        ), line
        assert "delete results/models/tiny_bert/ and rerun" in line
        # a forced rerun of a job that reads it stops at the same line, its outputs kept
        assert failed_run(work, "-f", targets=["results/emotion/tiny_bert/zeroshot/predictions.jsonl"]) == line
    finally:
        weights.write_bytes(whole)
    assert tiny.planned_jobs(work) == {}


def test_yaml_syntax_error_in_an_overlay_changes_nothing(finished, tmp_path):
    work, _ = finished
    overlay = tmp_path / "broken.yaml"
    overlay.write_text("tasks:\n  emotion: [\n")
    before = digest(work / "results")
    proc = tiny.snakemake(work, "results/report.html", "--configfile", str(overlay), check=False)
    assert proc.returncode != 0 and "Config file is not valid JSON or YAML" in proc.stdout + proc.stderr
    assert digest(work / "results") == before


def test_pickle_only_source_folder_is_refused(tmp_path):
    models = tmp_path / "models"
    tiny.make_tiny_bert(models / "bert")
    pickled = models / "llama"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    work = tmp_path / "work"
    tiny.write_config(work, tiny.tiny_config(models, work))
    proc = tiny.snakemake(work, "-n", check=False)
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: "))
    assert line.startswith(
        f"Error: config.yaml: models.tiny_llama.source: {pickled} holds only pickled weights (pytorch_model.bin)"
    ), line


def test_prepare_model_loads_safetensors_only(tmp_path):
    """models.materialize itself refuses a folder with only pytorch_model.bin (use_safetensors=True)."""
    import torch
    from transformers import BertConfig, BertModel

    from finetune_study import model_kinds, models
    from finetune_study.common import PipelineError

    folder = tmp_path / "bin_only"
    tiny.make_tiny_bert(folder)
    (folder / "model.safetensors").unlink()
    torch.manual_seed(0)
    torch.save(BertModel(BertConfig.from_pretrained(folder)).state_dict(), folder / "pytorch_model.bin")
    spec = {"type": "encoder", "trust_remote_code": False, "dtype": "float32", "source": {"path": str(folder)}}
    with pytest.raises(PipelineError, match="the model's source needs safetensors weights"):
        models.materialize(spec, False, tmp_path / "out", model_kinds.get(spec["type"]))
    assert not (tmp_path / "out").exists()


def test_safetensors_header_check_against_the_library(tmp_path):
    """preflight.safetensors_problem agrees with safetensors itself on a whole and a cut file."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = tmp_path / "w.safetensors"
    save_file({"a.weight": torch.zeros(4, 3), "b.bias": torch.ones(5)}, path)
    assert preflight.safetensors_problem(path) is None and load_file(path)["b.bias"].sum() == 5
    assert preflight.module_names(tmp_path) == {"a", "b"}
    data = path.read_bytes()
    for cut in (4, 20, len(data) - 1):
        path.write_bytes(data[:cut])
        assert preflight.safetensors_problem(path)
        with pytest.raises((SafetensorError, OSError, ValueError)):
            load_file(path)


def test_a_bad_input_inside_a_job_ends_it_with_one_line(tmp_path):
    """common.log_to turns a PipelineError into one 'Error: ' line on stderr and in the log, exit 1."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from finetune_study import common\n"
        "with common.log_to(sys.argv[2]):\n"
        "    print('working')\n"
        "    raise common.PipelineError('results/models/m: corrupt; delete it and rerun')\n"
    )
    log = tmp_path / "job.log"
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tiny.REPO / "workflow_scripts"), str(log)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "Error: results/models/m: corrupt; delete it and rerun"
    assert log.read_text().splitlines() == ["working", "Error: results/models/m: corrupt; delete it and rerun"]


def test_in_job_target_check_is_one_line(tiny_run):
    """Where the parse-time check cannot see the model (a GGUF source not yet dequantized), the
    fine-tune's own check names the missing modules as a PipelineError before training."""
    from transformers import AutoModelForCausalLM

    from finetune_study import adapters
    from finetune_study.common import PipelineError

    base, _, _ = tiny_run
    model = AutoModelForCausalLM.from_pretrained(base / "models" / "llama", use_safetensors=True)
    with pytest.raises(PipelineError, match=r"\['nope'\] are not in this model; its linear layers are: .*q_proj"):
        adapters.lora_model(
            model, {"r": 2, "alpha": 4, "dropout": 0.0, "target_modules": ["q_proj", "nope"]}, "CAUSAL_LM"
        )


def test_an_unreadable_source_folder_is_one_line(tmp_path):
    """A local source whose config.json or safetensors header is broken stops the parse with one line."""
    models = tmp_path / "models"
    tiny.make_tiny_bert(models / "bert")
    tiny.make_tiny_llama(models / "llama")
    (models / "llama" / "config.json").write_text("{not json")
    work = tmp_path / "work"
    tiny.write_config(work, tiny.tiny_config(models, work))
    proc = tiny.snakemake(work, "-n", check=False)
    out = proc.stdout + proc.stderr
    lines = [x for x in out.splitlines() if x.startswith("Error: ")]
    assert lines and lines[0].startswith(f"Error: {models / 'llama' / 'config.json'}: cannot be read as JSON"), out[
        -2000:
    ]
    assert "Traceback" not in out
