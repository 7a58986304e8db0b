"""How a fine-tune job spans processes, decided at parse time: its resolved `distributed:` settings,
what it asks SLURM for, how much memory each device needs, and the torchrun command that starts it.

- settings(): a fine-tune entry's `distributed:`, else its model's, else one process. processes is
  the total count (one per GPU where there are GPUs), nodes the machines they span.
- key(): what of it is part of the fine-tune's stage key (processes and strategy; nothing for one
  process, so a plain run's key is what it always was). nodes is placement only.
- slurm_resources(): the snakemake-executor-plugin-slurm resources of a multi-process job: nodes,
  tasks (one per process), tasks_per_gpu 1 and gres gpu:<per node> where the model has GPUs, and
  mpi "srun", which tells the plugin that the job starts its own srun (one torchrun per node).
- device_memory_gb(): what one device holds during a fine-tune, sharding understood (FSDP divides
  weights, gradients and optimizer state by the process count; DDP does not).
- torchrun_command(): the launch, standalone on one machine, or srun + torchrun with the
  rendezvous on the allocation's first node inside a SLURM job.

Standard library only: it runs at Snakemake parse time.
"""

import os
import subprocess
import sys

from .runs import finetune_entry, parse_run_point

ONE_PROCESS = {"processes": 1, "nodes": 1, "strategy": "ddp"}
RENDEZVOUS_BASE = 20000  # rendezvous port: this plus the SLURM job id modulo 20000, so jobs sharing a node differ


def rendezvous_port(slurm_job):
    return RENDEZVOUS_BASE + int(slurm_job) % 20000


def settings(model, entry):
    """The distributed settings of one fine-tune: the entry's, else the model's, else one process."""
    d = entry.get("distributed") or model.get("distributed") or {}
    return {**ONE_PROCESS, **d}


def of_run(config, task, model_name, run):
    """settings() of a fine-tuned run ('<method>[-<point>]-s<seed>') of a task."""
    method, point, _ = parse_run_point(run)
    return settings(config["models"][model_name], finetune_entry(task, model_name, method, point))


def is_distributed(dist):
    return dist["processes"] > 1


def key(dist):
    """The part of a fine-tune's stage key: the process count and the strategy change how the sums
    are rounded (and with gradient_accumulation, which examples share a step), so a result is not
    served across them. One process adds nothing."""
    return {"processes": dist["processes"], "strategy": dist["strategy"]} if is_distributed(dist) else None


def resume_key(dist, training):
    """What a checkpoint's resumability depends on: the examples per optimizer step (processes x
    gradient_accumulation) and the strategy, not how the processes are split. So a run killed on 4
    processes resumes on 2 with gradient_accumulation doubled: torch.distributed.checkpoint reshards
    its weights and optimizer state. One process keeps its own checkpoint format (None)."""
    if not is_distributed(dist):
        return None
    return {"per_step": dist["processes"] * training.get("gradient_accumulation", 1), "strategy": dist["strategy"]}


def per_node(dist):
    return dist["processes"] // dist["nodes"]


def slurm_resources(dist, resources):
    """The SLURM resources of a multi-process fine-tune job (snakemake-executor-plugin-slurm names);
    None for one process, so a plain job asks for what it always did."""
    if not is_distributed(dist):
        return None
    out = {
        "nodes": dist["nodes"],
        "tasks": dist["processes"],
        "mpi": "srun",
        "cpus_per_task": resources["cpus_per_task"],
    }
    if resources["gpus"] > 0:
        out.update(tasks_per_gpu=1, gres=f"gpu:{per_node(dist)}")
    return out


def threads(dist, resources):
    """Snakemake threads of a fine-tune job: cpus_per_task for each of its processes on this node."""
    return resources["cpus_per_task"] * (per_node(dist) if is_distributed(dist) else 1)


def device_memory_gb(params_b, dtype_bytes, method, dist, master_bytes=4):
    """GB one device holds during a fine-tune, 25% working memory included: the base weights in the
    compute dtype; for `full` the trained weights in their master dtype, their gradients and AdamW's
    two moments instead. FSDP shards all of it over the processes; DDP keeps a whole copy on each."""
    if method == "full":
        per_param = master_bytes * 4  # weights, gradients, exp_avg, exp_avg_sq
    else:
        per_param = dtype_bytes  # frozen base; adapters are a rounding error
    total = params_b * per_param
    if dist["strategy"] == "fsdp":
        total /= dist["processes"]
    return total * 1.25


def check(dist, where, slurm, method):
    """One line naming the key for a distributed setting this run cannot use, else None."""
    if dist["processes"] % dist["nodes"]:
        return (
            f"{where}.distributed: {dist['processes']} processes do not split evenly over "
            f"{dist['nodes']} nodes; make processes a multiple of nodes"
        )
    if dist["nodes"] > 1 and not slurm:
        return (
            f"{where}.distributed.nodes: {dist['nodes']} nodes need the SLURM profile "
            "(--workflow-profile profiles/slurm); on one machine set nodes: 1"
        )
    if is_distributed(dist) and method == "qlora":
        return f"{where}.distributed: qlora trains one process (bitsandbytes 4-bit); set processes: 1 or method: lora"
    return None


def slurm_hosts():
    """The hosts of this SLURM job's allocation, first one first (the rendezvous host); [] outside
    one. The executor strips SLURM_JOB_NODELIST from a job step's environment but keeps
    SLURM_JOB_ID, so the node list is asked of squeue."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return []
    nodelist = (
        os.environ.get("SLURM_JOB_NODELIST")
        or subprocess.run(
            ["squeue", "-h", "-j", job, "-o", "%N"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, check=True)
    return out.stdout.split()


def torchrun_command(dist, worker, args, *, slurm_job=None, hosts=(), cpus_per_process=1):
    """The command that starts one fine-tune's processes: `python -m torch.distributed.run` (torchrun,
    from the job's own interpreter) with the worker script and its arguments. Outside SLURM:
    standalone, every process on this machine. Inside SLURM job `slurm_job`: srun starts one
    torchrun per node of the allocation, which meet at the first host (c10d rendezvous keyed on the
    job id), so no host list is written by hand. torchrun's --max-restarts 0: a process that dies
    ends the job (the others are stopped), and the rerun resumes from the last complete checkpoint."""
    run = [sys.executable, "-m", "torch.distributed.run", "--max-restarts", "0"]
    n = per_node(dist)
    if slurm_job is None:
        return [*run, "--standalone", "--nnodes", "1", "--nproc-per-node", str(n), worker, *args]
    if not hosts:
        raise RuntimeError("inside a SLURM job but its node list is empty")
    srun = [
        "srun",
        f"--nodes={dist['nodes']}",
        f"--ntasks={dist['nodes']}",
        "--ntasks-per-node=1",
        f"--cpus-per-task={cpus_per_process * n}",
        "--kill-on-bad-exit=1",
    ]
    rdzv = [
        "--nnodes",
        str(dist["nodes"]),
        "--nproc-per-node",
        str(n),
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"{hosts[0]}:{rendezvous_port(slurm_job)}",
        "--rdzv-id",
        str(slurm_job),
    ]
    return [*srun, *run, *rdzv, worker, *args]
