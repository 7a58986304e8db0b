"""The rerun contract, as one table: from one finished tiny run, each edit plans exactly these jobs
(`snakemake -n`), no more and no fewer. docs/decoding.md states the same table.

The workflow is a private copy (tiny.copy_workflow), so the code edits (classification_metrics.py, training.py)
never touch the repository. Every edit is undone after its row.
"""

import os
import shutil
from pathlib import Path

import pytest

import tiny

TASK_JOBS = {"compare": 1, "figures": 1, "report": 1}  # what any change to a task's scores reruns
REPORT = {"report": 1}  # the report prints the whole configuration, so any config edit re-renders it (about 1 s)


def jobs(**counts):
    return {k: v for k, v in counts.items() if v}


def _hardware_bf16():
    """dtype auto is bfloat16 here: an NVIDIA device node, or a CPU flag for native bf16 (x86
    avx512_bf16 / amx_bf16, Arm bf16) in /proc/cpuinfo, read without the workflow's code."""
    if Path("/dev/nvidia0").exists() and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1"):
        return True
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    flags = {
        w for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features") for w in line.split()
    }
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def add_task(c):
    c["tasks"]["agnews"] = {
        "type": "classification",
        "files": {"train": "ag_news/alps_dev_from_train.tsv", "test": "ag_news/alps_test.tsv"},
        "header": False,
        "column_names": ["text", "label"],
        "labels": ["World", "Sports", "Business", "Sci/Tech"],
        "sample": {"train": 16, "validation": 8, "test": 8},
        "models": ["tiny_bert"],
        "finetune": {
            "tiny_bert": {"lora": {"r": 4, "target_modules": ["query", "value"]}, "training": {"max_steps": 2}}
        },
    }


def add_model(c):
    c["models"]["tiny_llama_b"] = dict(c["models"]["tiny_llama"], role="base")
    c["tasks"]["emotion"]["models"].append("tiny_llama_b")


def emotion(c):
    return c["tasks"]["emotion"]


def llama_ft(c):
    return emotion(c)["finetune"]["tiny_llama"]


# edit of the config -> the exact plan
CONFIG_ROWS = {
    "nothing": (lambda c: None, {}),
    "decoding.max_new_tokens": (
        lambda c: emotion(c)["decoding"].update(max_new_tokens=4),
        jobs(predict=3, score=3, **TASK_JOBS),
    ),  # the causal LM's zero-shot, raw and LoRA runs
    # float32: outputs are batch-invariant, the report only; bf16 (dtype auto on a CPU with native
    # bf16): the batch's padding changes rounding, so all 5 predictions. Which one this machine is
    # read here from the hardware, not from the workflow's code (both branches are checked
    # in-process: test_precision.py::test_batch_size_is_in_the_keys_only_where_outputs_depend_on_it)
    "decoding.batch_size": (
        lambda c: emotion(c)["decoding"].update(batch_size=3),
        jobs(predict=5, score=5, **TASK_JOBS) if _hardware_bf16() else REPORT,
    ),
    "decoding.seed (greedy)": (lambda c: emotion(c)["decoding"].update(seed=7), REPORT),
    # how the jobs generate, not what (static = dynamic output): the report only; each file's
    # provenance keeps the settings that produced it (tests/test_decoding_settings.py)
    "decoding.cache: static, compile": (
        lambda c: emotion(c)["decoding"].update(cache="static", compile=True),
        REPORT,
    ),
    # stop strings: every generating run of the causal LM; an empty list is no stop string at all
    "decoding.stop": (
        lambda c: emotion(c)["decoding"].update(stop=["\n"]),
        jobs(predict=3, score=3, **TASK_JOBS),
    ),
    "decoding.stop: []": (lambda c: emotion(c)["decoding"].update(stop=[]), REPORT),
    # few-shot examples: only the rows that are not fine-tuned (zero-shot, raw prompt) of the causal LM
    "prompt.fewshot": (
        lambda c: emotion(c).setdefault("prompt", {}).update(fewshot=2),
        jobs(predict=2, score=2, **TASK_JOBS),
    ),
    "lora r": (lambda c: llama_ft(c)["lora"].update(r=8), jobs(finetune=1, predict=1, score=1, **TASK_JOBS)),
    "training.learning_rate": (
        lambda c: llama_ft(c)["training"].update(learning_rate=0.02),
        jobs(finetune=1, predict=1, score=1, **TASK_JOBS),
    ),
    # train only: both fine-tunes, their predictions, the majority baseline (it reads train); not the test split
    "sample.train": (
        lambda c: emotion(c)["sample"].update(train=24),
        jobs(prepare_data=1, data_summary=1, finetune=2, predict=2, majority_baseline=1, score=3, **TASK_JOBS),
    ),
    "task seed": (
        lambda c: emotion(c).update(seed=5),
        jobs(
            prepare_data=3,
            data_summary=1,
            finetune=2,
            predict=5,
            majority_baseline=1,
            score=6,
            task_text=1,
            tokenizer_stats=1,
            **TASK_JOBS,
        ),
    ),
    "model resources.mem_mb": (lambda c: c["models"]["tiny_llama"].update(resources={"mem_mb": 12000}), REPORT),
    "model role": (lambda c: c["models"]["tiny_llama"].update(role="base"), REPORT),
    "report_title": (lambda c: c.update(report_title="another title"), REPORT),
    "a new task": (
        add_task,
        jobs(prepare_data=3, data_summary=1, finetune=1, predict=2, majority_baseline=1, score=3, **TASK_JOBS),
    ),
    "a new model in one task": (add_model, jobs(prepare_model=1, predict=1, score=1, chat_templates=1, **TASK_JOBS)),
}

# edit of the code -> the exact plan (only the stages whose scripts import the module, and downstream)
CODE_ROWS = {
    "finetune_study/classification_metrics.py": jobs(score=6, **TASK_JOBS),
    "finetune_study/training.py": jobs(finetune=2, predict=2, score=2, **TASK_JOBS),
}


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    # a copy of the session's finished run under a private copy of the workflow (the code rows edit it)
    base = tmp_path_factory.mktemp("contract")
    snakefile = tiny.copy_workflow(base / "wf")
    work, config = tiny.copy_run(tiny_run, base)
    # the same code, so no model stage reruns: only the tokenizer study (its input texts live in the
    # workflow's own resources/, now another folder) and the report
    assert tiny.planned_jobs(work, snakefile=snakefile) == {"tokenizer_stats": 1, "report": 1}
    tiny.snakemake(work, "results/report.html", snakefile=snakefile)
    return work, config, snakefile


@pytest.mark.parametrize("row", list(CONFIG_ROWS))
def test_config_edit_plans_exactly(finished, row):
    work, config, snakefile = finished
    edit, expected = CONFIG_ROWS[row]
    tiny.write_config(work, tiny.edited(config, edit))
    try:
        assert tiny.planned_jobs(work, snakefile=snakefile) == expected
    finally:
        tiny.write_config(work, config)


def test_seed_change_under_sampling_reruns_the_sampled_runs(finished, tmp_path):
    # on a copy of the finished run, so the shared one never has to be rebuilt afterwards
    original, config, snakefile = finished
    work, _ = tiny.copy_run((None, original, config), tmp_path)
    sampled = tiny.edited(config, lambda c: emotion(c)["decoding"].update(do_sample=True, temperature=0.7, top_k=5))
    tiny.write_config(work, sampled)
    tiny.snakemake(work, "results/report.html", snakefile=snakefile)  # the sampled runs become the baseline
    assert tiny.planned_jobs(work, snakefile=snakefile) == {}
    tiny.write_config(work, tiny.edited(sampled, lambda c: emotion(c)["decoding"].update(seed=7)))
    assert tiny.planned_jobs(work, snakefile=snakefile) == jobs(predict=3, score=3, **TASK_JOBS)


@pytest.mark.parametrize("module", list(CODE_ROWS))
def test_code_edit_plans_exactly(finished, module):
    work, config, snakefile = finished
    path = snakefile.parent / "workflow_scripts" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# a comment changes nothing\n")
        assert tiny.planned_jobs(work, snakefile=snakefile) == {}
        path.write_text(original + "\nCONTRACT_TEST_CHANGE = 1\n")  # a real change of the module
        assert tiny.planned_jobs(work, snakefile=snakefile) == CODE_ROWS[module]
    finally:
        path.write_text(original)
    assert tiny.planned_jobs(work, snakefile=snakefile) == {}


def test_a_second_checkout_runs_and_fingerprints_its_own_package(finished, tiny_run, tmp_path):
    """One environment, two checkouts: the installed finetune_study is the repository's (pip
    install -e .), the private copy is a second clone. An edit in the copy replans the copy's jobs
    and only those, and the copy's jobs run the copy's code."""
    import os
    import subprocess
    import sys

    original_work, config, snakefile = finished
    clone = snakefile.parent / "workflow_scripts" / "finetune_study"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    installed = subprocess.run(
        [sys.executable, "-c", "import finetune_study; print(finetune_study.__file__)"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(installed).resolve().parent != clone.resolve(), "the test needs another checkout installed"
    work, _ = tiny.copy_run((None, original_work, config), tmp_path)
    path = clone / "classification_metrics.py"
    text = path.read_text()
    marker = tmp_path / "imported_from.txt"
    try:
        path.write_text(text + f"\nfrom pathlib import Path as _P\n_P({str(marker)!r}).write_text(__file__)\n")
        assert tiny.planned_jobs(work, snakefile=snakefile) == CODE_ROWS["finetune_study/classification_metrics.py"]
        # the other checkout, on its own finished run, plans nothing
        assert tiny.planned_jobs(tiny_run[1]) == {}
        target = "results/emotion/majority/baseline/metrics.json"
        tiny.snakemake(work, target, snakefile=snakefile)
        assert Path(marker.read_text()).resolve() == path.resolve()  # the job imported the clone's module
    finally:
        path.write_text(text)


def test_copied_working_directory_reruns_nothing(finished, tmp_path):
    work, _, snakefile = finished
    copy = tmp_path / "elsewhere" / "deeper" / "work"
    shutil.copytree(work, copy, symlinks=True)
    assert tiny.planned_jobs(copy, snakefile=snakefile) == {}
    # the copy really is used: its results, not the original's
    assert Path(copy / "results/report.html").exists()


def test_touching_every_file_of_the_checkout_reruns_nothing(finished):
    """A clone, `git checkout` or `touch` gives every file a new date but changes no content: the
    stage keys decide (profiles/default drops Snakemake's file-date `code` trigger), so nothing
    is planned. The code rows above show that a real edit still plans exactly its jobs."""
    import os

    work, _, snakefile = finished
    touched = [p for p in snakefile.parent.rglob("*") if p.is_file()] + [work / "config.yaml"]
    for p in touched:
        os.utime(p)
    assert len(touched) > 50 and tiny.planned_jobs(work, snakefile=snakefile) == {}


def test_every_profile_keeps_the_rerun_triggers():
    """The SLURM profile replaces profiles/default when given, so it must say the same."""
    import yaml

    profiles = sorted((tiny.REPO / "profiles").glob("*/config.yaml"))
    triggers = {p.parent.name: yaml.safe_load(p.read_text()).get("rerun-triggers") for p in profiles}
    assert set(triggers) >= {"default", "slurm"}
    assert all(t == ["mtime", "params", "input", "software-env"] for t in triggers.values()), triggers
