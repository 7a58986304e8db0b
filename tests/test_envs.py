"""envs/workflow.yaml (for --use-conda) pins the same packages as requirements*.txt, and the
workflow lints clean."""

import subprocess
import sys

import yaml

from conftest import REPO


def _pins(lines):
    return {
        line.split("==")[0].strip().lower(): line.split("==")[1].strip()
        for line in lines
        if "==" in line and not line.strip().startswith("#")
    }


def test_conda_env_matches_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    req |= {
        k: v for k, v in _pins((REPO / "requirements-models.txt").read_text().splitlines()).items() if "-part" not in k
    }
    env = yaml.safe_load((REPO / "envs/workflow.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip) == req
    assert req["torch"] == "2.13.0"


def test_snakemake_lint_is_clean():
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-s", str(REPO / "Snakefile"), "--directory", str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr, (
        proc.stdout + proc.stderr
    )
