"""One fine-tune across several processes, with torch's own engine: the process group, the model
wrapped for DDP or FSDP2, which batches each process runs, the sums they share, and the checkpoints
(torch.distributed.checkpoint) they write together.

- World: this process's rank, the process count and the local device; SINGLE is one process.
  init() joins the group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK; gloo on CPU, nccl on CUDA).
- LossModule: the task type's loss as a module, so the loss runs through the wrapper's forward
  (the causal loss calls the backbone and the LM head apart, which DDP and FSDP would not see).
- wrap(): DDP replicates the model and averages gradients; FSDP2 (fully_shard) shards each decoder
  layer (the architecture's _no_split_modules; one unit where it names none) and the rest as the root: base weights, trainable
  weights, gradients and AdamW state are split over the processes, a layer gathered while it runs.
  The base weights keep the model's resolved dtype and the trained ones float32; the matmuls run
  under autocast in the resolved dtype, as in one process.
- step_batches(): the global stream of batches (each epoch's seeded, length-grouped order) is cut
  into optimizer steps of gradient_accumulation x processes batches; process r runs batches r,
  r + processes, ... of its step. So every step sees the examples one process with
  processes x gradient_accumulation would, and the gradient is the same mean over them.
- save_checkpoint / load_checkpoint: every process writes its shard into step-<n>.tmp with
  torch.distributed.checkpoint; only after all of them are done does rank 0 write the trainer state,
  rename the folder and mark it COMPLETE. A process killed mid-write leaves no marker, so its
  checkpoint is never resumed. DCP reshards on load, so another process count can resume it.
- full_trainable_state(): the trained tensors gathered whole, for the one saved adapter or model.
"""

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoints import COUNTERS, is_sharded, publish, trainable_state  # noqa: F401 (is_sharded: training, finetune_job)
from .common import PipelineError
from .loss import batch_loss


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    strategy: str = "ddp"

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.size > 1


SINGLE = World()


def init(strategy):
    """Join the process group torchrun started (env RANK, WORLD_SIZE, LOCAL_RANK); CUDA processes
    take the GPU of their local rank."""
    import torch.distributed as dist

    local = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), local, strategy)


def check_gpus(processes_per_node, strategy):
    """Where CUDA is available each process of a node takes a GPU of its own (init): refuse more
    processes per node than the node has GPUs, in one line, before any process starts."""
    if not torch.cuda.is_available():
        return
    have = torch.cuda.device_count()
    if processes_per_node > have:
        raise PipelineError(
            f"{strategy} fine-tune: {processes_per_node} processes per node take one GPU each, and this node "
            f"has {have}; set distributed.processes to at most {have} per node, or hide the GPUs "
            "(CUDA_VISIBLE_DEVICES=) to run the processes on the CPU"
        )


def close(world):
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(world):
    if world.distributed:
        torch.distributed.barrier()


class LossModule(torch.nn.Module):
    """forward(batch) = the task type's training loss of the model on that batch."""

    def __init__(self, model, task_type):
        super().__init__()
        self.model, self.task_type = model, task_type

    def forward(self, batch):
        return batch_loss(self.model, batch, self.task_type)


def _layers(model):
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    names = set(getattr(base, "_no_split_modules", None) or [])
    return [m for m in model.modules() if type(m).__name__ in names]


def wrap(model, task_type, world):
    """What the loss runs through: the model itself for one process, else LossModule wrapped for
    the world's strategy (see the module docstring)."""
    if not world.distributed:
        return None
    root = LossModule(model, task_type)
    if world.strategy == "ddp":
        dev = [world.local_rank] if torch.cuda.is_available() else None
        return torch.nn.parallel.DistributedDataParallel(root, device_ids=dev)
    from torch.distributed.fsdp import fully_shard

    layers = _layers(model)
    if not layers:  # no layer classes declared: the whole model is one unit, gathered for each forward
        print(f"fsdp: {type(model).__name__} declares no layer classes (_no_split_modules); sharded as one unit")
    for layer in layers:
        fully_shard(layer)
    fully_shard(root)
    return root


def step_batches(step, accumulation, world):
    """The indices into the global batch stream that this process runs at optimizer step `step`."""
    per_step = accumulation * world.size
    return [step * per_step + j for j in range(world.rank, per_step, world.size)]


def eval_share(batches, world):
    """This process's validation batches, as (batch, weight): every world.size-th batch, padded with
    weight-0 repeats so that every process runs the same number of forwards (FSDP gathers layers
    collectively)."""
    mine = [(b, 1.0) for b in batches[world.rank :: world.size]]
    rounds = -(-len(batches) // world.size)
    return mine + [(batches[0], 0.0)] * (rounds - len(mine))


def all_sum(values, world):
    """Element-wise sums of a list of floats over the processes (the list itself for one process)."""
    if not world.distributed:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    torch.distributed.all_reduce(t)
    return t.tolist()


def full_trainable_state(model):
    """{name: whole tensor on the CPU} of the trained parameters (FSDP shards gathered; every process
    must call it)."""
    return {
        n: (p.detach().full_tensor() if is_sharded(p) else p.detach()).cpu().contiguous()
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def _states(root, optimizer):
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(root, optimizer, options=StateDictOptions(ignore_frozen_params=True))


def save_checkpoint(ckpt_dir, step, root, model, best, optimizer, scheduler, state, world, counters, keep=2):
    """Write checkpoint step-<n> of a multi-process run together (see the module docstring)."""
    import torch.distributed.checkpoint as dcp

    ckpt_dir = Path(ckpt_dir)
    final, tmp = ckpt_dir / f"step-{step:08d}", ckpt_dir / f"step-{step:08d}.tmp"
    if world.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(world)
    msd, osd = _states(root, optimizer)
    dcp.save({"model": msd, "optimizer": osd, "best": best}, checkpoint_id=str(tmp / "sharded"))
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state()
    torch.save(rng, tmp / f"rng-{world.rank}.pt")
    barrier(world)  # every shard is on disk before the checkpoint is named complete
    if world.is_main:
        torch.save({"scheduler": scheduler.state_dict(), "world_size": world.size, **state}, tmp / "trainer_state.pt")
        (tmp / COUNTERS).write_text(json.dumps(counters))
        publish(tmp, final, step, keep)
    barrier(world)


def load_checkpoint(path, root, model, optimizer, scheduler, world):
    """Restore a multi-process checkpoint into this run (resharded to its process count); returns
    (the rest of the trainer state, the best weights as this process holds them)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    msd, osd = _states(root, optimizer)
    best = trainable_state(model)  # the template DCP loads into, sharded like the model
    target = {"model": msd, "optimizer": osd, "best": best}
    dcp.load(target, checkpoint_id=str(Path(path) / "sharded"))
    set_state_dict(
        root,
        optimizer,
        model_state_dict=target["model"],
        optim_state_dict=target["optimizer"],
        options=StateDictOptions(ignore_frozen_params=True, strict=False),  # the frozen base is not in it
    )
    st = torch.load(Path(path) / "trainer_state.pt", weights_only=True)
    scheduler.load_state_dict(st.pop("scheduler"))
    saved_world = st.pop("world_size")
    rng_file = Path(path) / f"rng-{world.rank}.pt"
    if saved_world == world.size and rng_file.is_file():  # the same processes: their random streams go on
        rng = torch.load(rng_file, weights_only=True)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state(rng["cuda"])
    return st, target["best"]
