"""One fine-tune job, from a plain description of it (describe): the examples, the model, training,
the saved adapter or model, the training log and its provenance.

run(job) is what rule finetune runs, in the Snakemake job's own process for one process, and in
every process of a distributed run (finetune_worker.py, started by launch() through torchrun;
sharding.py). In a distributed run the processes build the same seeded model, train it wrapped
for DDP or FSDP (distributed.py), and rank 0 alone writes the outputs: the adapter or model once, in
the same PEFT or safetensors format as one process writes, so inference and the cache see no
difference. Under FSDP the trained tensors are gathered whole and saved from a fresh copy of the
trainable model on rank 0.
"""

import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from . import (
    adapters,
    attention,
    checkpoints,
    common,
    distributed,
    keys,
    model_kinds,
    models,
    provenance,
    runs,
    sharding,
    tasks,
    training,
)
from .distributed import SINGLE

TASK_PART = "training"  # tasks/<type>_training.py: how rows become examples (fingerprints.py)


def describe(smk):
    """The job of a Snakemake finetune job: everything run() reads, as plain values."""
    s = json.loads(smk.params.settings)
    method = s["finetune"].get("method", "lora")
    run = Path(smk.output.train_log).parent.relative_to("results")
    task = smk.config["tasks"][smk.wildcards.task]
    entry = runs.finetune_entry(task, smk.wildcards.model, method, runs.run_point(run.name))
    inputs = {k: str(smk.input[k]) for k in ("model", "train", "validation")}
    ckpt_dir = (
        Path(smk.config["checkpoint_dir"])
        / run
        / provenance.resume_key(
            keys.resume_settings(s), smk.params.code, [inputs["train"], inputs["validation"]], inputs["model"]
        )
    )
    return {
        "settings": s,
        "method": method,
        "code": smk.params.code,
        # how often to checkpoint changes no result (resuming is exact), so it is not in the key
        "checkpoint_every": entry["training"]["checkpoint_every"],
        "distributed": sharding.settings(smk.config["models"][smk.wildcards.model], entry),
        "inputs": inputs,
        "outputs": {"adapter": str(smk.output.adapter), "train_log": str(smk.output.train_log)},
        "checkpoint_dir": str(ckpt_dir),
        "keep_checkpoints": bool(smk.config["keep_checkpoints"]),
        "torch_threads": smk.config.get("torch_threads", 0),
        "threads": smk.threads,
        "executor": smk.config.get("executor", "local"),
    }


def examples(job):
    """(tokenizer, examples by split, rows by split): a row the task type cannot train on is an error
    here, before any model loads."""
    s = job["settings"]
    spec = s["model"]
    task_part = tasks.part(s["task_type"], TASK_PART)
    tok = models.load_tokenizer(job["inputs"]["model"], spec["trust_remote_code"], padding_side="right")
    splits = {k: common.read_jsonl(job["inputs"][k]) for k in ("train", "validation")}
    return tok, {k: task_part.examples(rows, tok, s, spec["type"]) for k, rows in splits.items()}, splits


def trainable(job):
    """The seeded model with what its method trains (every process builds the same one)."""
    s, method = job["settings"], job["method"]
    spec, tcfg = s["model"], s["finetune"]["training"]
    # a full fine-tune loads its weights in its master dtype (float32 under dtype auto) and autocasts
    load_spec = {**spec, "dtype": s["finetune"]["master_dtype"]} if method == "full" else spec
    model = model_kinds.get(spec["type"]).load(
        job["inputs"]["model"],
        load_spec,
        labels=s.get("labels"),
        seed=tcfg["seed"],
        quantize=adapters.NF4 if method == "qlora" else None,
        task_type=s["peft_task_type"],
    )
    if hasattr(model, "head_kind"):
        print(f"head: {model.head_kind}")
    # gradient_checkpointing: auto is decided by training.train (training_options), true here
    ckpt = tcfg["gradient_checkpointing"] is True
    model = adapters.trainable_model(model, s["finetune"], s["peft_task_type"], ckpt)
    if s["finetune"].get("attention_dtype") == "float32":  # float32 attention in a bf16 fine-tune (attention.py)
        attention.use_float32_attention(model)
    return model


def attention_dtype(job, model):
    """What the fine-tune's attention computed in: float32 where the key asks for it and the model's
    attention is sdpa (attention.use_float32_attention), the compute dtype otherwise."""
    compute, ran = job["settings"]["model"]["dtype"], attention.implementation(model)
    if ran == attention.NAME:
        return "float32"
    if job["settings"]["finetune"].get("attention_dtype") == "float32":
        return f"{compute} (float32 attention needs sdpa; this model's attention is {ran})"
    return compute


def run(job, world=SINGLE):
    """Train and, on rank 0, write the outputs (see the module docstring)."""
    s, method = job["settings"], job["method"]
    spec, tcfg = s["model"], {**s["finetune"]["training"], "checkpoint_every": job["checkpoint_every"]}
    ckpt_dir = Path(job["checkpoint_dir"])
    common.use_cpu_threads({"torch_threads": job["torch_threads"]}, job["threads"])
    common.seed_everything(tcfg["seed"])
    tok, ex, splits = examples(job)
    model = trainable(job)
    if tcfg.get("eval_sample") and tcfg["eval_sample"] < len(ex["validation"]):
        ex["validation"] = training.eval_subsample(ex["validation"], tcfg["eval_sample"], tcfg["seed"])
        print(f"validation loss on {len(ex['validation'])} of {len(splits['validation'])} examples")
    counts = adapters.parameter_counts(model)
    print(
        f"{method}: {counts['trainable']:,} trainable of {counts['total']:,} parameters "
        f"({100 * counts['trainable_share']:.4f}%)"
    )
    print(f"checkpoints: {ckpt_dir}")
    print(
        f"compute dtype {spec['dtype']}, trained weights {s['finetune'].get('master_dtype', 'float32')}, "
        f"attention {attention_dtype(job, model)}"
    )
    if world.distributed:
        print(f"{world.strategy}: {world.size} processes, gradient accumulation {tcfg.get('gradient_accumulation', 1)}")
    root = distributed.wrap(model, s["peft_task_type"], world)
    log = training.train(
        model,
        ex["train"],
        ex["validation"],
        tcfg,
        ckpt_dir,
        tok.pad_token_id,
        models.device(),
        models.DTYPES[spec["dtype"]],  # the matmuls run in the resolved dtype (autocast)
        task_type=s["peft_task_type"],
        root=root,
        world=world,
    )
    if any(distributed.is_sharded(p) for p in model.parameters()):  # FSDP: gather, save from a whole copy
        state = distributed.full_trainable_state(model)
        del root, model
        if world.is_main:
            model = trainable(job)
            params = dict(model.named_parameters())
            for n, t in state.items():
                params[n].data.copy_(t)
    if world.is_main:
        _write_outputs(job, model, log, counts)
    distributed.barrier(world)


def _write_outputs(job, model, log, counts):
    s, method = job["settings"], job["method"]
    with common.atomic_dir(job["outputs"]["adapter"]) as tmp:
        adapters.save_trained(model, tmp, method, job["inputs"]["model"])
    log["method"], log["parameters"] = method, counts
    log["dtype"] = {
        "compute": s["model"]["dtype"],
        "trained_weights": s["finetune"].get("master_dtype", "float32"),
        "attention": attention_dtype(job, model),
    }
    log["provenance"] = provenance.provenance(
        job["code"],
        {k: job["inputs"][k] for k in ("train", "validation")},
        job["inputs"]["model"],
        job["outputs"]["adapter"],
        s["model"]["dtype"],
        models.device_name(),
    )
    # what training_options.prepare did on this machine: kernels, compile, checkpointing and why
    log["provenance"]["training_options"] = log.pop("training_options", None)
    common.write_json(job["outputs"]["train_log"], log)
    ckpt_dir = Path(job["checkpoint_dir"])
    for gone in checkpoints.remove_after_success(ckpt_dir, keep_own=job["keep_checkpoints"]):
        print(f"removed checkpoints {gone}" + ("" if gone == ckpt_dir else " (superseded resume key)"))
    print(f"best step {log['best_step']} (val loss {log['best_val_loss']:.4f}); {method} weights saved")


WORKER = Path(__file__).resolve().parent.parent / "finetune_worker.py"


def launch(job):
    """Run a distributed job's processes through torchrun (sharding.torchrun_command), their output
    into this job's log. The examples are built here first, so a bad row is one line before any
    process loads a model. A process that fails fails the job."""
    examples(job)
    dist = job["distributed"]
    n = sharding.per_node(dist)
    distributed.check_gpus(n, dist["strategy"])
    per_process = max(1, int(job["threads"]) // n)
    worker_job = {**job, "threads": per_process, "torch_threads": job["torch_threads"] or per_process}
    slurm_job = os.environ.get("SLURM_JOB_ID") if job["executor"] == "slurm" else None
    hosts = sharding.slurm_hosts() if slurm_job else ()
    Path(job["checkpoint_dir"]).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=job["checkpoint_dir"], prefix=".job.", suffix=".json", delete=False) as f:
        json.dump(worker_job, f)
    cmd = sharding.torchrun_command(
        dist, str(WORKER), [f.name], slurm_job=slurm_job, hosts=hosts, cpus_per_process=per_process
    )
    print(f"launch: {shlex.join(cmd)}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")])}
    env["OMP_NUM_THREADS"] = str(worker_job["torch_threads"])
    sys.stdout.flush()
    try:
        done = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr, env=env, check=False)
    finally:
        Path(f.name).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"{dist['strategy']} fine-tune on {dist['processes']} processes exited with {done.returncode}"
        )
