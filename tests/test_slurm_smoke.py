"""Smoke test: Snakemake's slurm executor runs a job on a real local SLURM cluster.

`.ci/start_slurm.sh` brings up a single-node cluster on loopback (installs
slurm-wlm + munge if needed; needs root). If it cannot, the test is skipped
with the script's error line as the reason. Set SKIP_SLURM=1 to skip outright.

The profile test at the bottom needs no cluster (dry-run only).
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "profiles" / "slurm"

SNAKEFILE = r"""
localrules: gather

rule gather:
    input: "cluster.txt"
    output: "gathered.txt"
    shell: 'cp {input} {output}; echo "local SLURM_JOB_ID=${{SLURM_JOB_ID:-none}}" >> {output}'

rule on_cluster:
    output: "cluster.txt"
    resources: mem_mb=100, runtime=5
    shell: 'echo "SLURM_JOB_ID=${{SLURM_JOB_ID:-none}}" > {output}; echo "host=$(hostname)" >> {output}'
"""


def _snakemake(args, cwd, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.mark.slurm
def test_slurm_executor_runs_job_on_cluster(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    args = [
        "--snakefile",
        str(tmp_path / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--executor",
        "slurm",
        "--jobs",
        "2",
        "--default-resources",
        "slurm_partition=cpu",
        # no slurmdbd on the CI cluster -> sacct is useless, poll with squeue
        # (requires MinJobAge >= 3 * init-seconds; start_slurm.sh sets 600)
        "--slurm-status-command",
        "squeue",
        # defaults (40 s first poll) make a trivial job take ~80 s
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--seconds-between-status-checks",
        "1",
        "--slurm-keep-successful-logs",
        "--latency-wait",
        "10",
        "--printshellcmds",
    ]
    t0 = time.monotonic()
    proc = _snakemake(args, cwd=tmp_path)
    elapsed = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    print(f"snakemake --executor slurm took {elapsed:.1f}s")
    assert proc.returncode == 0, f"snakemake failed (rc={proc.returncode}):\n{log[-6000:]}"

    cluster_out = tmp_path / "cluster.txt"
    gathered = tmp_path / "gathered.txt"
    assert cluster_out.exists() and gathered.exists(), log[-4000:]

    # proof the job ran under SLURM: the job saw a numeric SLURM_JOB_ID ...
    m = re.search(r"^SLURM_JOB_ID=(\d+)$", cluster_out.read_text(), re.M)
    assert m, f"job did not run under slurm:\n{cluster_out.read_text()}"
    jobid = m.group(1)
    # ... which is the id the executor submitted, and slurm wrote its log
    assert re.search(rf"SLURM jobid {jobid}\b", log), log[-4000:]
    slurm_log = tmp_path / ".snakemake" / "slurm_logs" / "rule_on_cluster" / f"{jobid}.log"
    assert slurm_log.exists(), f"missing {slurm_log}"
    # the localrule ran in the snakemake process itself, not as a slurm job
    if "SLURM_JOB_ID" not in os.environ:
        assert "local SLURM_JOB_ID=none" in gathered.read_text()
    assert re.search(r"^SLURM_JOB_ID=\d+$", gathered.read_text(), re.M)


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LORA_SLURM_")}
    env.update(extra)
    return env


@pytest.mark.parametrize(
    "extra_env, partition, account",
    [
        ({}, "cpu", ""),
        ({"LORA_SLURM_PARTITION": "gpu", "LORA_SLURM_ACCOUNT": "acme"}, "gpu", "acme"),
    ],
)
def test_slurm_profile_reads_partition_account_from_env(tmp_path, extra_env, partition, account):
    """profiles/slurm parses and takes partition/account from the environment (no cluster needed)."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    proc = _snakemake(
        [
            "--workflow-profile",
            str(PROFILE),
            "--directory",
            str(tmp_path),
            "--snakefile",
            str(tmp_path / "Snakefile"),
            "--dry-run",
        ],
        cwd=tmp_path,
        env=_clean_env(**extra_env),
        timeout=120,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert f"slurm_partition={partition}," in log, log[-4000:]
    assert re.search(rf"slurm_account={account}(,|\s|$)", log), log[-4000:]
