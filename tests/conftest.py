"""Shared pytest setup: makes workflow_scripts importable, points at the shared data, and starts
the local SLURM cluster for the tests that need one (skipped, with the reason, where it cannot start;
under CI=true a service that cannot start fails the run instead)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("LORA_WF_DATA_DIR", REPO.parent / "shared" / "data")).resolve()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
START_SCRIPT = REPO / ".ci" / "start_slurm.sh"


def skip_or_fail_in_ci(reason: str):
    """Skip, saying why; under CI (CI=true, which .ci/run sets) fail instead: CI installs every
    service and package the tests need, so a missing one is a broken CI, not a skipped test."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true, but {reason}", pytrace=False)
    pytest.skip(reason)


def _last_error_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    for line in reversed(lines):
        if "ERROR" in line:
            return line
    return lines[-1] if lines else "no output"


def _shared_root(tmp_path_factory):
    """A temporary folder common to every pytest-xdist worker of this session."""
    root = tmp_path_factory.getbasetemp()
    return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    from filelock import FileLock

    if os.environ.get("SKIP_SLURM") == "1":
        skip_or_fail_in_ci("SKIP_SLURM=1: not starting the local SLURM cluster")
    if not START_SCRIPT.exists():
        skip_or_fail_in_ci(f"{START_SCRIPT} missing")
    t0 = time.monotonic()
    try:
        with FileLock(str(_shared_root(tmp_path_factory) / "slurm.lock")):  # one worker starts it at a time
            proc = subprocess.run(
                ["bash", str(START_SCRIPT)],
                capture_output=True,
                text=True,
                timeout=900,  # a cold apt-get install can take a few minutes
            )
    except subprocess.TimeoutExpired as e:
        skip_or_fail_in_ci(f"start_slurm.sh timed out after {e.timeout}s")
    if proc.returncode != 0:
        skip_or_fail_in_ci(
            f"local SLURM cluster unavailable (rc={proc.returncode}): "
            + _last_error_line(proc.stderr + "\n" + proc.stdout)
        )
    status = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    print(f"{status} [fixture {time.monotonic() - t0:.1f}s]")
    return status


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """One finished run of the tiny config (tiny.finished_run) for the whole session, on every
    pytest-xdist worker: the first worker to need it builds it under the workers' common temporary
    folder while holding a file lock; the others wait and reuse it. (base, work, config). Tests
    that only read results use it as it is; tests that edit the config or run more jobs take their
    own copy (tiny.copy_run), which plans nothing until they change something."""
    from filelock import FileLock

    import tiny

    root = _shared_root(tmp_path_factory)
    base = root / "tiny_run"
    with FileLock(str(root / "tiny_run.lock")):
        if not (base / "work" / "results" / "report.html").is_file():
            tiny.finished_run(base)
    work = base / "work"
    return base, work, tiny.tiny_config(base / "models", work)


# The order files are handed to the pytest-xdist workers (pytest.ini: loadfile, and
# --no-loadscope-reorder so that xdist keeps this order): first the rerun contract, whose worker
# builds the session's shared finished run (tiny_run) while the others run the self-contained
# generation and SLURM pipelines; then the slow files, longest first; then the rest. So no worker
# waits on the shared run, and the workers end together.
SLOW_FIRST = [
    "test_rerun_contract",
    "test_generation_pipeline",
    "test_slurm_pipeline",
    "test_resume",
    "test_kill_anywhere",
    "test_distributed",
    "test_training_grid",
    "test_ner_pipeline",
    "test_source_target_pipeline",
    "test_hub_cache",
    "test_methods",
    "test_mlflow_tracking",
    "test_pipeline",
    "test_seeds",
    "test_reliability",
    "test_report_browser",
]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__, len(rank)))  # stable: files keep their order


@pytest.fixture(autouse=True)
def models_load_on_the_cpu(monkeypatch):
    """In-process tests load their tiny models on the CPU, where their tolerances were measured and
    their tensors are built, also on a machine with a GPU; the pipelines they start (Snakemake jobs,
    new processes) use the GPU there. A test that wants a device moves its model there itself (the
    `device` parameter of test_precision.py's bf16 checks)."""
    import torch

    from finetune_study import models

    monkeypatch.setattr(models, "device", lambda: torch.device("cpu"))
