"""The tiny pipeline through the real local SLURM cluster with profiles/slurm, to a finished report:
model, data, inference and fine-tune jobs are submitted with sbatch; metrics, figures and the
report run on the submitting host (localrules). Skipped, with the reason, where no cluster starts."""

import re

import pytest

import tiny
from conftest import REPO

# profiles/slurm, two jobs at a time, quick status polls on the local test cluster
SLURM_ARGS = [
    "--workflow-profile",
    str(REPO / "profiles/slurm"),
    "--jobs",
    "2",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
    "--latency-wait",
    "10",
]


@pytest.mark.slurm
def test_pipeline_runs_on_slurm(slurm_cluster, tmp_path):
    tiny.make_tiny_llama(tmp_path / "models" / "llama")
    work = tmp_path / "work"
    c = tiny.tiny_config(tmp_path / "models", work)
    c["tokenizer_study"] = None  # its jobs are localrules: nothing of it goes through SLURM
    task = c["tasks"]["emotion"]
    task["models"], task["raw_prompt_models"] = ["tiny_llama"], []
    task["finetune"] = {"tiny_llama": task["finetune"]["tiny_llama"]}
    # the fine-tune is a two-task job: srun starts torchrun on the allocation's node, two DDP processes
    task["finetune"]["tiny_llama"]["distributed"] = {"processes": 2, "strategy": "ddp"}
    c["models"]["tiny_llama"]["resources"] = {"mem_mb": 2000, "runtime": 10}
    tiny.write_config(work, c)
    proc = tiny.snakemake(
        work,
        *SLURM_ARGS,
        "results/report.html",
        env={"LORA_SLURM_PARTITION": "cpu"},
    )
    out = proc.stdout + proc.stderr
    cluster_rules = re.findall(r"^rule (\w+):", out, re.M)
    assert sorted(cluster_rules) == ["finetune", "predict", "predict"] + ["prepare_data"] * 3 + ["prepare_model"], out[
        -4000:
    ]
    assert len(re.findall(r"submitted with SLURM jobid \d+", out)) == 7
    assert (work / "results/report.html").exists()
    for meth in ("zeroshot", "lora-s0"):
        m = tiny.read_json(work / f"results/emotion/tiny_llama/{meth}/metrics.json")
        assert m["n"] == 16
    assert "localrule report" in out and "localrule score" in out
    assert "nodes=1, tasks=2, cpus_per_task=1, mpi=srun" in out  # asked of SLURM for the fine-tune
    log = tiny.read_json(work / "results/emotion/tiny_llama/lora-s0/train_log.json")
    assert log["distributed"] == {"processes": 2, "strategy": "ddp", "gradient_accumulation": 1}
    launch = next(
        line
        for line in (work / "logs/finetune/emotion/tiny_llama/lora-s0.log").read_text().splitlines()
        if line.startswith("launch: ")
    )
    # one torchrun per node by srun, meeting at the allocation's first host (from SLURM, not written by hand)
    assert launch.startswith("launch: srun --nodes=1 --ntasks=1") and "--rdzv-endpoint" in launch, launch


@pytest.mark.slurm
def test_requeued_finetune_resumes_from_checkpoint(slurm_cluster, tmp_path):
    """Preemption as SLURM does it: `scontrol requeue` kills the running fine-tune job and starts it
    again under the same job id; the rerun must continue from the newest complete checkpoint."""
    import subprocess
    import sys
    import time

    tiny.make_tiny_llama(tmp_path / "models" / "llama")
    work = tmp_path / "work"
    c = tiny.tiny_config(tmp_path / "models", work)
    c["tokenizer_study"] = None
    task = c["tasks"]["emotion"]
    task["models"], task["raw_prompt_models"] = ["tiny_llama"], []
    task["finetune"] = {"tiny_llama": task["finetune"]["tiny_llama"]}
    task["finetune"]["tiny_llama"]["training"].update(max_steps=600, checkpoint_every=20, eval_every=200, patience=50)
    c["models"]["tiny_llama"]["resources"] = {"mem_mb": 2000, "runtime": 10}
    tiny.write_config(work, c)
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(work),
        "--cores",
        "1",
        *SLURM_ARGS,
        "results/emotion/tiny_llama/lora-s0/adapter",
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(__import__("os").environ, LORA_SLURM_PARTITION="cpu"),
    )
    requeued, deadline = None, time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list((work / "checkpoints").rglob("COMPLETE")):
            running = subprocess.run(
                ["squeue", "-h", "-t", "R", "-o", "%i"], capture_output=True, text=True
            ).stdout.split()
            if running:
                requeued = running[0]
                subprocess.run(["scontrol", "requeue", requeued], check=True)
                # SLURM holds a requeued job until a begin time in the future; once it is pending
                # again, move that to now (retried: right after the requeue it may still be completing)
                for _ in range(30):
                    time.sleep(1)
                    state = subprocess.run(
                        ["squeue", "-h", "-j", requeued, "-o", "%T"], capture_output=True, text=True
                    ).stdout.strip()
                    if state == "PENDING":
                        subprocess.run(["scontrol", "update", f"JobId={requeued}", "StartTime=now"], check=False)
                    elif state == "RUNNING":
                        break
                break
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=600)
    assert requeued, "the fine-tune finished before it could be requeued:\n" + out[-3000:]
    assert proc.returncode == 0, out[-4000:]
    log = tiny.read_json(work / "results/emotion/tiny_llama/lora-s0/train_log.json")
    assert log["final_step"] == 600 and len(log["resumed_from"]) == 1 and log["resumed_from"][0] % 20 == 0
    assert [h["step"] for h in log["history"]] == list(range(1, 601))
    restarts = subprocess.run(["scontrol", "show", "job", requeued], capture_output=True, text=True).stdout
    assert "Restarts=1" in restarts or not restarts  # the job record may already have aged out
