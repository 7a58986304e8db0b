"""The tests' Snakemake runner (forked.py: a fork of an interpreter that has already imported
Snakemake) answers as a new `python -m snakemake` process does: the same exit status and the
same plan or error line, with the caller's environment, and nothing taken from the test process."""

import subprocess
import sys

import forked
import tiny


def both(work, *args, env=None):
    """(forked, new process) for the same call as tiny.snakemake makes it."""
    argv, full = tiny.snakemake_call(work, *args, env=env)
    new = subprocess.run([sys.executable, "-m", "snakemake", *argv], capture_output=True, text=True, env=full)
    return forked.run(argv, full, timeout=600), new


def error_line(proc):
    return next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: "))


def test_forked_calls_answer_as_a_new_process(tiny_run, tmp_path, monkeypatch):
    import finetune_study.config as cfg

    work, config = tiny.copy_run(tiny_run, tmp_path)
    a, b = both(work, "-n")
    assert a.returncode == b.returncode == 0 and tiny.job_counts(a) == tiny.job_counts(b) == {}

    tiny.write_config(work, tiny.edited(config, lambda c: c["tasks"]["emotion"]["decoding"].update(max_new_tokens=4)))
    a, b = both(work, "-n")
    assert a.returncode == b.returncode == 0
    assert tiny.job_counts(a) == tiny.job_counts(b) and tiny.job_counts(a)["predict"] == 3

    # the test process's own modules are not the child's: a validator patched here still runs there
    monkeypatch.setattr(cfg, "validate", lambda *a, **k: None)
    tiny.write_config(work, tiny.edited(config, lambda c: c["tasks"]["emotion"]["decoding"].update(temperature=-1)))
    a, b = both(work, "-n")
    assert a.returncode == b.returncode == 1 and error_line(a) == error_line(b) and "temperature" in error_line(a)

    # the call's environment, not the test process's: a hub id offline names the cache folder given
    def hub_model(c):
        c["use_hub"] = True
        c["models"]["tiny_llama"] = {"type": "causal_lm", "hub_id": "tinyorg/not-cached"}

    tiny.write_config(work, tiny.edited(config, hub_model))
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    a, b = both(work, "-n", env=env)
    assert (
        a.returncode == b.returncode == 1 and error_line(a) == error_line(b) and str(tmp_path / "hf") in error_line(a)
    )
