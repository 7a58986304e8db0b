"""Fine-tunes across processes (distributed: DDP and FSDP2 through torchrun, gloo on the CPU):
which batches each process runs, what the stage and resume keys hold, what SLURM is asked for,
the memory check that understands sharding, and the real pipeline: two processes match one process
with the same examples per step, and a process killed from outside fails the job cleanly and the
rerun resumes from the last complete checkpoint."""

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tiny
from conftest import REPO
from finetune_study import config as cfg
from finetune_study import keys, sharding
from finetune_study.common import ConfigError
from finetune_study.distributed import SINGLE, World, eval_share, step_batches

SCHEMA = REPO / "schemas" / "config.schema.yaml"


# ---------------------------------------------------------------- which batches, which keys


def test_each_step_runs_the_batches_of_one_process_with_accumulation():
    # hand-worked: step 1 of 2 processes x accumulation 2 is batches 4..7; rank 0 runs 4 and 6
    assert step_batches(1, 2, World(0, 2)) == [4, 6]
    assert step_batches(1, 2, World(1, 2)) == [5, 7]
    for size in (1, 2, 3, 4):
        for acc in (1, 2, 3):
            for step in range(4):
                ranks = [step_batches(step, acc, World(r, size)) for r in range(size)]
                assert sorted(sum(ranks, [])) == step_batches(step, acc * size, SINGLE)  # one process, size x acc
                assert len({len(r) for r in ranks}) == 1  # every process runs as many batches


def test_validation_batches_are_split_once_and_every_process_runs_as_many():
    batches = [[i] for i in range(7)]
    for size in (1, 2, 3, 4, 8):
        shares = [eval_share(batches, World(r, size)) for r in range(size)]
        assert len({len(s) for s in shares}) == 1
        counted = sorted(b[0] for s in shares for b, w in s if w == 1.0)
        assert counted == list(range(7))


def _config(**edit):
    c = yaml.safe_load((REPO / "config.yaml").read_text())
    c["executor"] = edit.pop("executor", "local")
    for f in edit.pop("fns", []):
        f(c)
    return cfg.validate(c, SCHEMA)


def _first_finetune(c):
    task = c["tasks"][next(iter(c["tasks"]))]
    model = next(iter(task["finetune"]))
    return task, model


def test_a_plain_run_keeps_its_key_and_processes_and_strategy_enter_it():
    plain = _config()
    task, model = _first_finetune(plain)
    key = keys.finetune_settings(plain, task, model, "lora-s0")
    assert "distributed" not in key and "gradient_accumulation" not in key["finetune"]["training"]
    assert keys.resume_settings(key) == key  # one process: checkpoints keyed as before

    def dist(processes, strategy="ddp", nodes=1, acc=1):
        def f(c):
            t = c["tasks"][next(iter(c["tasks"]))]
            m = next(iter(t["finetune"]))
            t["finetune"][m]["distributed"] = {"processes": processes, "strategy": strategy, "nodes": nodes}
            t["finetune"][m].setdefault("training", {})["gradient_accumulation"] = acc

        c = _config(fns=[f], executor="slurm" if nodes > 1 else "local")
        t, m = _first_finetune(c)
        return keys.finetune_settings(c, t, m, "lora-s0")

    two = dist(2)
    assert two["distributed"] == {"processes": 2, "strategy": "ddp"}
    assert dist(2, nodes=2) == two  # nodes is placement only
    assert dist(2, "fsdp") != two
    # the same examples per step resume each other's checkpoints; the strategy does not
    assert keys.resume_settings(dist(4)) == keys.resume_settings(dist(2, acc=2))
    assert keys.resume_settings(dist(4)) != keys.resume_settings(dist(4, "fsdp"))
    assert keys.resume_settings(dist(2)) != keys.resume_settings(dist(4))


def test_slurm_gets_nodes_one_task_per_process_and_gpus_per_node():
    res = {"cpus_per_task": 4, "gpus": 8, "gpu_mem_gb": 80, "mem_mb": 400000, "runtime": 600}
    two_nodes = {"processes": 16, "nodes": 2, "strategy": "fsdp"}
    assert sharding.slurm_resources(two_nodes, res) == {
        "nodes": 2,
        "tasks": 16,
        "tasks_per_gpu": 1,
        "gres": "gpu:8",
        "mpi": "srun",
        "cpus_per_task": 4,
    }
    assert sharding.slurm_resources(sharding.ONE_PROCESS, res) is None  # a plain job asks for what it did
    cpu = sharding.slurm_resources({"processes": 2, "nodes": 1, "strategy": "ddp"}, {**res, "gpus": 0})
    assert "gres" not in cpu and cpu["tasks"] == 2
    assert sharding.threads(two_nodes, res) == 32  # 8 processes on this node x 4 cores


def test_the_launch_is_standalone_here_and_srun_plus_torchrun_in_slurm():
    dist = {"processes": 16, "nodes": 2, "strategy": "fsdp"}
    local = sharding.torchrun_command({"processes": 2, "nodes": 1, "strategy": "ddp"}, "w.py", ["job.json"])
    assert local[1:3] == ["-m", "torch.distributed.run"] and "--standalone" in local
    assert local[local.index("--nproc-per-node") + 1] == "2" and local[-2:] == ["w.py", "job.json"]
    cmd = sharding.torchrun_command(
        dist, "w.py", ["job.json"], slurm_job="77", hosts=["gpu-a", "gpu-b"], cpus_per_process=4
    )
    assert cmd[0] == "srun" and "--ntasks=2" in cmd and "--ntasks-per-node=1" in cmd and "--cpus-per-task=32" in cmd
    assert cmd[cmd.index("--rdzv-endpoint") + 1] == "gpu-a:20077"
    assert cmd[cmd.index("--nproc-per-node") + 1] == "8" and cmd[cmd.index("--rdzv-id") + 1] == "77"


# ---------------------------------------------------------------- the parse-time checks


def test_the_cluster_example_passes_the_memory_check_and_dry_run():
    c = yaml.safe_load((REPO / "configs" / "distributed_example.yaml").read_text())
    c["executor"] = "slurm"
    c = cfg.validate(c, SCHEMA)
    cfg.check_resources(c, {"slurm_partition": "gpu"})
    proc = tiny.snakemake(
        REPO,
        "-n",
        "--configfile",
        str(REPO / "configs" / "distributed_example.yaml"),
        "--config",
        "executor=slurm",
        "--default-resources",
        "slurm_partition=gpu",
        env={"LORA_WF_HUB_CHECK": "0", "LORA_WF_CUDA": "1"},
    )
    out = proc.stdout + proc.stderr
    # the 7B full fine-tune: 4 tasks on one node; the 70B LoRA: 16 tasks on 2 nodes, 8 GPUs each
    assert "nodes=1, tasks=4, tasks_per_gpu=1, gres=gpu:4" in out, out[-3000:]
    assert "nodes=2, tasks=16, tasks_per_gpu=1, gres=gpu:8" in out, out[-3000:]


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"strategy": "ddp"}, "use strategy fsdp or more processes"),  # 7B full: ~140 GB on each GPU under DDP
        ({"processes": 2}, "processes per node, one per GPU"),
        ({"processes": 6, "nodes": 4}, "do not split evenly"),
    ],
)
def test_the_memory_check_understands_sharding(edit, message):
    c = yaml.safe_load((REPO / "configs" / "distributed_example.yaml").read_text())
    c["executor"] = "slurm"
    c["models"]["llama2_7b"]["distributed"].update(edit)  # the 7B full fine-tune's, set on its model
    with pytest.raises(ConfigError, match=message):
        c = cfg.validate(c, SCHEMA)
        cfg.check_resources(c, {"slurm_partition": "gpu"})


def test_nodes_need_slurm():
    def nodes(c):
        t = c["tasks"][next(iter(c["tasks"]))]
        t["finetune"][next(iter(t["finetune"]))]["distributed"] = {"processes": 4, "nodes": 2}

    with pytest.raises(ConfigError, match=r"distributed.nodes: 2 nodes need the SLURM profile"):
        _config(fns=[nodes])


@pytest.mark.parametrize("processes", [2, 1])
def test_qlora_stays_one_process(monkeypatch, processes):
    """A qlora fine-tune over two processes is refused for that reason, before (and whatever) the
    GPU check says; in one process only the GPU check speaks (LORA_WF_CUDA=0: no GPU here)."""
    monkeypatch.setenv("LORA_WF_CUDA", "0")

    def qlora(c):
        t = c["tasks"][next(iter(c["tasks"]))]
        ft = t["finetune"][next(iter(t["finetune"]))]
        ft["method"] = "qlora"
        ft["distributed"] = {"processes": processes}

    with pytest.raises(ConfigError) as err:
        _config(fns=[qlora])
    one_process = "qlora trains one process (bitsandbytes 4-bit); set processes: 1 or method: lora"
    assert (one_process in str(err.value)) is (processes == 2), err.value
    assert ("qlora needs a CUDA GPU" in str(err.value)) is (processes == 1), err.value


# ---------------------------------------------------------------- the real pipeline on two CPU processes

STEPS = 12
RUNS = {  # model entry -> distributed (None: one process with gradient_accumulation 2)
    "one": None,
    "ddp": {"processes": 2, "strategy": "ddp"},
    "fsdp": {"processes": 2, "strategy": "fsdp"},
}


def _dist_config(models_dir, work, runs):
    c = tiny.tiny_config(models_dir, work)
    c["tokenizer_study"] = None
    task = c["tasks"]["emotion"]
    ft = copy.deepcopy(task["finetune"]["tiny_llama"])
    ft["lora"]["dropout"] = 0.0  # dropout draws per process: off, so the runs can be compared
    ft["training"].update(max_steps=STEPS, eval_every=4, checkpoint_every=1, batch_size=4, patience=50)
    task["finetune"], task["models"], task["raw_prompt_models"] = {}, ["tiny_llama"], []
    for name in runs:
        c["models"][name] = {**c["models"]["tiny_llama"], "dtype": "float32"}
        task["finetune"][name] = copy.deepcopy(ft)
        if RUNS[name]:
            task["finetune"][name]["distributed"] = RUNS[name]
        else:
            task["finetune"][name]["training"]["gradient_accumulation"] = 2
    return c


def _log(work, name):
    return tiny.read_json(work / f"results/emotion/{name}/lora-s0/train_log.json")


def _worker_pids(rank):
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
            env = (p / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"finetune_worker.py" in cmd and f"RANK={rank}".encode() in env:
            pids.append(int(p.name))
    return pids


def _kill_rank_mid_run(work, target, rank=1, after_step=2):
    """Run snakemake for `target` and SIGKILL process `rank` from outside once checkpoint
    step-<after_step> is complete: (snakemake's return code, its output, the killed pids, the
    checkpoint markers left behind)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "workflow_scripts"), **CPU_ONLY)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(work), "--cores", "2", target]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    ckpts = work / "checkpoints/emotion/fsdp/lora-s0"
    deadline, killed = time.time() + 300, []
    while time.time() < deadline and proc.poll() is None and not killed:
        if any(ckpts.glob(f"*/step-{after_step:08d}/COMPLETE")):
            for pid in _worker_pids(rank):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    out = proc.communicate(timeout=300)[0]
    return proc.returncode, out, killed, sorted(ckpts.glob("*/step-*/COMPLETE"))


# The pipeline runs below are the gloo path on the CPU, on a machine with GPUs too (there each
# process would take a GPU of its own, and one GPU cannot hold two: distributed.check_gpus).
CPU_ONLY = {"CUDA_VISIBLE_DEVICES": ""}


def test_more_processes_than_gpus_is_one_line_before_any_process_starts(monkeypatch):
    from finetune_study import distributed
    from finetune_study.common import PipelineError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(
        PipelineError, match=r"^ddp fine-tune: 2 processes per node take one GPU each, and this node has 1;"
    ):
        distributed.check_gpus(2, "ddp")
    distributed.check_gpus(1, "fsdp")  # one process per GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    distributed.check_gpus(2, "ddp")  # no CUDA: gloo processes on the CPU


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The three runs to their train logs; the FSDP one first killed mid-run (rank 1, from outside)
    and then rerun, so it resumes."""
    base = tmp_path_factory.mktemp("dist")
    tiny.make_tiny_llama(base / "models" / "llama")
    work = base / "work"
    c = _dist_config(base / "models", work, RUNS)
    tiny.write_config(work, c)
    tiny.snakemake(work, *[f"results/emotion/{n}/lora-s0/train_log.json" for n in RUNS if n != "fsdp"], env=CPU_ONLY)
    target = "results/emotion/fsdp/lora-s0/train_log.json"
    killed = _kill_rank_mid_run(work, target)
    left = {
        "outputs": (work / target).exists(),
        "files": {str(m.parent): sorted(str(p.relative_to(m.parent)) for p in m.parent.rglob("*")) for m in killed[3]},
    }
    tiny.snakemake(work, target, env=CPU_ONLY)
    return base, work, c, killed, left


def test_two_processes_train_as_one_process_with_the_same_examples_per_step(trained):
    _, work, *_ = trained
    one = _log(work, "one")
    ref = [h["train_loss"] for h in one["history"]]
    assert len(ref) == STEPS and "distributed" not in one
    adapter = load_file(work / "results/emotion/one/lora-s0/adapter/adapter_model.safetensors")
    for name in ("ddp", "fsdp"):
        log = _log(work, name)
        assert log["distributed"] == {"processes": 2, "strategy": name, "gradient_accumulation": 1}
        # float32: the same examples and the same mean gradient, summed in another order
        assert [h["train_loss"] for h in log["history"]] == pytest.approx(ref, abs=1e-5)
        assert [e["val_loss"] for e in log["evals"]] == pytest.approx([e["val_loss"] for e in one["evals"]], abs=1e-5)
        assert log["real_tokens"] == one["real_tokens"]  # both processes' tokens counted
        theirs = load_file(work / f"results/emotion/{name}/lora-s0/adapter/adapter_model.safetensors")
        assert theirs.keys() == adapter.keys()  # saved once, in the one-process format
        for k in adapter:
            torch.testing.assert_close(theirs[k], adapter[k], atol=1e-5, rtol=1e-4)
        text = (work / f"logs/finetune/emotion/{name}/lora-s0.log").read_text()
        assert "--standalone" in text and "--nproc-per-node 2" in text


def test_a_killed_process_fails_the_job_cleanly_and_the_rerun_resumes(trained):
    _, work, _, (returncode, out, killed, complete), left = trained
    assert killed, out[-3000:]
    assert returncode != 0 and not left["outputs"]
    assert complete and not any(".tmp" in str(p) for p in complete)
    for files in left["files"].values():  # what is marked complete is whole: every shard, the trainer state
        assert "sharded/.metadata" in files and "trainer_state.pt" in files
        assert {"rng-0.pt", "rng-1.pt", "counters.json"} <= set(files)
        assert sum(f.startswith("sharded/") and f.endswith(".distcp") for f in files) == 2  # one per process
    log = _log(work, "fsdp")
    assert log["resumed_from"] and log["resumed_from"][0] >= 2
    # resumed exactly: the curve of one uninterrupted process (checked, with the adapter, above too)
    one = _log(work, "one")
    assert [h["train_loss"] for h in log["history"]] == pytest.approx(
        [h["train_loss"] for h in one["history"]], abs=1e-5
    )
