"""The fine-tuning loop: train with validation loss, early stopping and resumable checkpoints.

The other concerns live in their own modules: adapters (the trainable model of each method and
saving it), batching (padded or packed batches, each by the PEFT task type: an encoder-decoder's
source and target padded apart; each epoch's length-grouped batches), loss (the
answer-token loss, the LM head only where needed) and checkpoints (atomic, COMPLETE-marked
checkpoints and finding the newest).

- train() takes whatever parameters of the model require grad (LoRA and other adapters, prompt
  embeddings, or every weight for a full fine-tune) and trains them with AdamW, linear warmup and
  decay, gradient clipping at 1.0.
- Every `eval_every` steps the validation loss is computed (evaluate); EarlyStopping stops after
  `patience` evaluations without improvement and the model ends holding its best weights.
- Every `checkpoint_every` steps a checkpoint is written; a rerun resumes from the newest complete
  one: weights, optimizer, scheduler, RNG, data position and early-stopping state, and the run's
  cumulative counters (real and computed tokens, training seconds), so the log's padding_fraction
  and tokens/s cover the whole run, not only the steps after the last resume.
"""

import math
import random
import time

import torch
from tqdm import tqdm

from . import distributed, training_options
from .batching import COLLATE, collate_for, epoch_batches, stream, token_counts
from .checkpoints import latest_checkpoint, load_checkpoint, read_counters, save_checkpoint, trainable_state
from .distributed import SINGLE
from .loss import autocast, batch_loss, n_loss_tokens  # noqa: F401 (training.autocast: tests, bench)


def _loss(model, root, batch, task_type):
    """The training loss of one batch: through the distributed wrapper where there is one."""
    return root(batch) if root is not None else batch_loss(model, batch, task_type)


@torch.no_grad()
def evaluate(
    model, examples, batch_size, pad_id, device, compute_dtype=torch.float32, *, task_type, root=None, world=SINGLE
):
    """Mean loss per target token (causal, seq2seq) or per example (classifier) on the validation set.
    A multi-process run splits the batches over its processes (distributed.eval_share) and sums."""
    run = root or model
    run.eval()
    collate = collate_for(task_type)
    total, count = 0.0, 0
    batches = epoch_batches([len(e["input_ids"]) for e in examples], batch_size, seed=0, epoch=0)
    for b, weight in distributed.eval_share(batches, world):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in b], pad_id).items()}
        n = n_loss_tokens(batch, task_type) * weight
        with autocast(device, compute_dtype):
            loss = _loss(model, root, batch, task_type)
        total += float(loss) * n
        count += n
    total, count = distributed.all_sum([total, count], world)
    run.train()
    return total / max(count, 1)


def eval_subsample(examples, n, seed):
    """n of the validation examples, chosen by `seed`, in their original order (training.eval_sample):
    the same subset at every evaluation, so validation losses stay comparable."""
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def new_counters(saved=None):
    """The run's cumulative counters: real_tokens (the examples' tokens), computed_tokens (the batch
    tensors' size, padding included) and train_seconds (time in the training loop), starting from
    those `saved` with a checkpoint."""
    counters = {"real_tokens": 0, "computed_tokens": 0, "train_seconds": 0.0}
    counters.update({k: v for k, v in (saved or {}).items() if k in counters})
    return counters


def throughput(counters):
    """The log's figures from the counters: tokens per second and the share of computed tokens that
    were padding (None where undefined)."""
    real, computed, seconds = counters["real_tokens"], counters["computed_tokens"], counters["train_seconds"]
    return {
        "train_tokens_per_second": real / seconds if seconds > 0 else None,
        "padding_fraction": 1 - real / computed if computed else None,
    }


class EarlyStopping:
    """Stop when validation loss has not improved for `patience` evaluations; remember the best step."""

    def __init__(self, patience):
        self.patience, self.best, self.best_step, self.bad = patience, math.inf, None, 0

    def update(self, step, val_loss):
        if val_loss < self.best - 1e-6:
            self.best, self.best_step, self.bad = val_loss, step, 0
            return True
        self.bad += 1
        return False

    @property
    def stop(self):
        return self.bad >= self.patience

    def state(self):
        return {"best": self.best, "best_step": self.best_step, "bad": self.bad}

    def load(self, st):
        self.best, self.best_step, self.bad = st["best"], st["best_step"], st["bad"]


def step_scales(micro, weighted, task_type):
    """Each micro-batch's factor in its step's loss: None for all (the mean of their mean losses:
    each loss / gradient_accumulation) or, weighted (a token-sized step), its answer tokens over
    the step's, so a step split into micro-batches trains as the step in one batch would."""
    if not weighted:
        return [None] * len(micro)
    n = [n_loss_tokens(batch, task_type) for _, batch in micro]
    return [k / sum(n) if sum(n) else 1 / len(n) for k in n]


def take_step(model, root, micro, scales, params, optimizer, scheduler, device, compute_dtype, task_type):
    """One optimizer step over its micro-batches [(examples, batch tensors)] (this process's share):
    forward and backward of each, loss scaled (step_scales), clipping at 1.0, AdamW and the
    schedule. Returns (the scaled losses' sum, real tokens, computed tokens)."""
    loss_sum, real, computed = 0.0, 0, 0
    for (chosen, tensors), scale in zip(micro, scales):
        batch = {k: v.to(device) for k, v in tensors.items()}
        with autocast(device, compute_dtype):
            loss = _loss(model, root, batch, task_type)
        if scale is None:
            (loss / len(micro) if len(micro) > 1 else loss).backward()
            loss_sum += float(loss.detach())
        else:
            (loss * scale).backward()
            loss_sum += float(loss.detach()) * scale * len(micro)
        r, c = token_counts(chosen, batch, task_type)
        real, computed = real + r, computed + c
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum, real, computed


def _resume(ckpt, model, root, optimizer, scheduler, world):
    if world.distributed:
        return distributed.load_checkpoint(ckpt, root, model, optimizer, scheduler, world)
    return load_checkpoint(ckpt, model, optimizer, scheduler)


def _checkpoint(ckpt_dir, step, model, root, best, optimizer, scheduler, state, counters, world):
    if world.distributed:
        distributed.save_checkpoint(
            ckpt_dir, step, root, model, best, optimizer, scheduler, state, world, counters=counters
        )
    else:
        save_checkpoint(ckpt_dir, step, model, best, optimizer, scheduler, state, counters=counters)


def train(
    model,
    train_examples,
    val_examples,
    cfg,
    ckpt_dir,
    pad_id,
    device,
    compute_dtype=torch.float32,
    *,
    task_type,
    root=None,
    world=SINGLE,
):
    """Train the parameters that require grad in place; returns the training log. The model ends
    holding the weights of the best validation step. compute_dtype: the dtype of the forward and
    backward matmuls (autocast); the trained parameters keep their own (float32) dtype. Each
    optimizer step sums the gradients of gradient_accumulation batches per process (world: the
    processes of a distributed run, root: the wrapped loss they run, distributed.wrap). The batches:
    batching.stream; kernels, auto checkpointing and compile: training_options.prepare."""
    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    model.to(device).train()
    batches = stream(train_examples, cfg, task_type, pad_id)
    options = training_options.prepare(model, batches, cfg, task_type, device, compute_dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    accumulation = cfg.get("gradient_accumulation", 1)
    per_epoch = batches.per_epoch  # micro-batches
    per_step = accumulation * world.size  # batches per optimizer step
    total = cfg["max_steps"] or max(1, math.ceil(cfg["epochs"] * per_epoch / per_step))
    warmup = int(cfg["warmup_ratio"] * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))
    )
    stopper = EarlyStopping(cfg["patience"])
    log = {"history": [], "evals": [], "resumed_from": [], "total_steps": total, "stopped_early": False}
    step, best_weights, counters = 0, None, new_counters()

    def validation_loss():
        return evaluate(
            model,
            val_examples,
            cfg["batch_size"],
            pad_id,
            device,
            compute_dtype,
            task_type=task_type,
            root=root,
            world=world,
        )

    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None:
        st, best_weights = _resume(ckpt, model, root, optimizer, scheduler, world)
        step, log, counters = st["step"], st["log"], new_counters(read_counters(ckpt))
        stopper.load(st["stopper"])
        log["resumed_from"].append(step)
        print(f"resumed from {ckpt} at step {step}")
    else:
        val_loss = validation_loss()
        log["evals"].append({"step": 0, "val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50))})
        stopper.update(0, val_loss)
        best_weights = trainable_state(model)

    t0, seconds_before = time.time(), counters["train_seconds"]
    bar = tqdm(total=total, initial=step, desc="fine-tune", mininterval=5, disable=not world.is_main)
    while step < total and not stopper.stop:
        micro = [batches.get(m) for m in distributed.step_batches(step, accumulation, world)]
        scales = step_scales(micro, batches.weighted, task_type)
        loss_sum, real, computed = take_step(
            model, root, micro, scales, params, optimizer, scheduler, device, compute_dtype, task_type
        )
        step += 1
        loss_sum, real, computed = distributed.all_sum([loss_sum, real, computed], world)
        train_loss = loss_sum / per_step
        counters["real_tokens"] += int(real)
        counters["computed_tokens"] += int(computed)
        log["history"].append(
            {
                "step": step,
                "epoch": round(step * per_step / per_epoch, 4),
                "train_loss": train_loss,
                "lr": scheduler.get_last_lr()[0],
                **({"tokens": int(computed)} if batches.weighted else {}),  # a token-sized step's size
            }
        )
        bar.update(1)
        if step % cfg["eval_every"] == 0 or step == total:
            val_loss = validation_loss()
            log["evals"].append({"step": step, "val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50))})
            if stopper.update(step, val_loss):
                best_weights = trainable_state(model)
            if world.is_main:
                print(
                    f"step {step}: train loss {train_loss:.4f}, val loss {val_loss:.4f}, "
                    f"val perplexity {math.exp(min(val_loss, 50)):.3f}"
                )
            log["stopped_early"] = stopper.stop
        if step % cfg["checkpoint_every"] == 0 or stopper.stop or step == total:
            counters["train_seconds"] = seconds_before + time.time() - t0
            state = {"step": step, "log": log, "stopper": stopper.state()}
            _checkpoint(ckpt_dir, step, model, root, best_weights, optimizer, scheduler, state, counters, world)
    bar.close()
    counters["train_seconds"] = seconds_before + time.time() - t0
    log.update(
        best_step=stopper.best_step,
        best_val_loss=stopper.best,
        final_step=step,
        **counters,
        **throughput(counters),
        packing=bool(cfg.get("packing")) and task_type not in COLLATE,
        training_options=options,
    )
    if world.distributed:
        log["distributed"] = {
            "processes": world.size,
            "strategy": world.strategy,
            "gradient_accumulation": accumulation,
        }
    params_by_name = dict(model.named_parameters())
    for n, t in best_weights.items():
        params_by_name[n].data.copy_(t if distributed.is_sharded(t) else t.to(params_by_name[n].device))
    return log
