"""LoRA fine-tuning loop with resumable checkpoints, validation perplexity and early stopping.

- Causal LMs: examples are prompt + answer token ids with the prompt masked (-100), so the loss
  is on the answer only. Encoders: token ids + a label index, the classification head trained too.
- Batches are grouped by length (shuffled per epoch from the seed), so little compute goes to padding.
  With `packing`, a batch's examples are laid end to end in rows of `pack_length` (default: max_length) tokens instead:
  position ids restart at every example, and transformers' attention masks (built from those
  position ids) keep each example from seeing another. Same examples per step, same loss, no padding.
- The LM head runs on answer positions only, in checkpointed chunks: the full-vocabulary logits
  of the prompt are never computed, and those of long answers never held all at once.
- Every `checkpoint_every` steps a checkpoint is written to a temporary folder, renamed into
  place, and marked COMPLETE last. A rerun resumes from the newest complete checkpoint:
  weights, optimizer, scheduler, RNG, data position and early-stopping state. Incomplete ones are skipped.
- Checkpoints hold only tensors and plain values, loaded with torch.load(weights_only=True).
"""
import math
import os
import random
import shutil
import signal
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

MARKER = "COMPLETE"


def lora_model(model, lora_cfg, task_type, gradient_checkpointing=False):
    from peft import LoraConfig, get_peft_model

    # SEQ_CLS: PEFT adds `classifier` to modules_to_save (trained and saved in full with the adapter);
    # so are weights the checkpoint lacked (models.load_classifier: head_new_modules, e.g. a BERT
    # pooler), which would otherwise be initialized afresh, from another seed, when the adapter is loaded
    modules_to_save = (list(getattr(model, "head_new_modules", [])) or None) if task_type == "SEQ_CLS" else None
    config = LoraConfig(task_type=task_type, r=lora_cfg["r"], lora_alpha=lora_cfg["alpha"],
                        lora_dropout=lora_cfg["dropout"], target_modules=list(lora_cfg["target_modules"]),
                        modules_to_save=modules_to_save)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    missing = [t for t in lora_cfg["target_modules"] if not any(n.split(".")[-1] == t for n, _ in model.named_modules())]
    if missing:
        names = sorted({n.split(".")[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
        raise ValueError(f"LoRA target_modules {missing} are not in this model; its linear layers are: {', '.join(names)}")
    return get_peft_model(model, config)


def collate(examples, pad_id):
    """Right-padded batch tensors from examples {input_ids, labels} (labels: list or int)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    token_labels = isinstance(examples[0]["labels"], list)
    labels = torch.full((len(examples), width), -100, dtype=torch.long) if token_labels else torch.zeros(len(examples), dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        mask[i, :n] = 1
        if token_labels:
            labels[i, :n] = torch.tensor(e["labels"])
        else:
            labels[i] = e["labels"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack_rows(lengths, capacity):
    """First-fit-decreasing: example indices grouped into rows of at most `capacity` tokens
    (an example longer than that gets a row of its own)."""
    rows, room = [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    return rows


def collate_packed(examples, pad_id, row_length):
    """Causal-LM examples {input_ids, labels (list)} packed end to end into rows of at most
    row_length tokens: {input_ids, position_ids, labels}, no attention_mask. Positions restart
    at 0 for every example; transformers reads those restarts as sequence boundaries and masks
    attention across them. The first label of each example is -100, so no example is trained to
    predict the next one's first token. A row's tail padding is a segment of its own (positions
    from 0, labels -100)."""
    rows = pack_rows([len(e["input_ids"]) for e in examples], row_length)
    width = max(sum(len(examples[i]["input_ids"]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            e = examples[i]
            n = len(e["input_ids"])
            ids[r, at:at + n] = torch.tensor(e["input_ids"])
            pos[r, at:at + n] = torch.arange(n)
            labels[r, at + 1:at + n] = torch.tensor(e["labels"][1:])
            at += n
        pos[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "position_ids": pos, "labels": labels}


def make_batch(examples, pad_id, cfg):
    """The training batch for these examples: packed when cfg asks for it (causal LMs), else padded."""
    if cfg.get("packing") and isinstance(examples[0]["labels"], list):
        return collate_packed(examples, pad_id, cfg.get("pack_length") or cfg.get("max_length") or 2048)
    return collate(examples, pad_id)


def epoch_batches(lengths, batch_size, seed, epoch):
    """Deterministic batches for one epoch: shuffled, then grouped by length in windows of 50 batches."""
    g = torch.Generator().manual_seed(seed * 1000003 + epoch)
    order = torch.randperm(len(lengths), generator=g).tolist()
    window = batch_size * 50
    batches = []
    for w in range(0, len(order), window):
        chunk = sorted(order[w:w + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]


LOSS_CHUNK = 2048  # answer positions per LM-head chunk


def _head_nll(head, hidden, targets, cap):
    logits = head(hidden).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


def answer_token_nll(model, batch, chunk=LOSS_CHUNK):
    """NLL of every answer token (label != -100) of a padded (attention_mask) or packed
    (position_ids) batch, and the batch row of each. The LM head runs on those positions only,
    `chunk` at a time; with more than one chunk each chunk's logits are recomputed in the backward
    pass (checkpointing), so memory holds one chunk's fp32 logits, not every answer token's.
    Models without a .model/.lm_head split get their full logits instead."""
    from torch.utils.checkpoint import checkpoint

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone, head = getattr(base, "model", None), getattr(base, "lm_head", None)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    targets = batch["labels"][:, 1:]  # position t predicts token t + 1
    keep = targets != -100
    rows = keep.nonzero()[:, 0]
    # use_cache=False: no KV cache here, and transformers only reads packed position ids as
    # sequence boundaries when there is none
    if backbone is None or head is None:
        logits = model(**inputs, use_cache=False).logits[:, :-1][keep]
        return torch.nn.functional.cross_entropy(logits.float(), targets[keep], reduction="none"), rows
    hidden = backbone(**inputs, use_cache=False).last_hidden_state[:, :-1][keep]
    targets, cap = targets[keep], getattr(base.config, "final_logit_softcapping", None)
    if len(targets) <= chunk:
        return _head_nll(head, hidden, targets, cap), rows
    return torch.cat([checkpoint(_head_nll, head, hidden[i:i + chunk], targets[i:i + chunk], cap, use_reentrant=False)
                      for i in range(0, len(targets), chunk)]), rows


def causal_answer_loss(model, batch, chunk=LOSS_CHUNK):
    """Mean cross-entropy on the answer tokens only (answer_token_nll): the vocabulary projection
    of every prompt token is skipped, so less compute and memory."""
    nll, _ = answer_token_nll(model, batch, chunk)
    return nll.sum() / max(len(nll), 1)


def batch_loss(model, batch):
    return causal_answer_loss(model, batch) if batch["labels"].dim() == 2 else model(**batch).loss


def n_loss_tokens(batch):
    labels = batch["labels"]
    return int((labels[:, 1:] != -100).sum()) if labels.dim() == 2 else labels.numel()


@torch.no_grad()
def evaluate(model, examples, batch_size, pad_id, device):
    """Mean loss per target token (causal) or per example (classifier) on the validation set."""
    model.eval()
    total, count = 0.0, 0
    for b in epoch_batches([len(e["input_ids"]) for e in examples], batch_size, seed=0, epoch=0):
        batch = {k: v.to(device) for k, v in collate([examples[i] for i in b], pad_id).items()}
        n = n_loss_tokens(batch)
        total += float(batch_loss(model, batch)) * n
        count += n
    model.train()
    return total / max(count, 1)


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


def trainable_state(model):
    return {n: p.detach().cpu().clone().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def latest_checkpoint(ckpt_dir):
    """Newest checkpoint folder with its COMPLETE marker; half-written ones are ignored."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    done = sorted(p for p in ckpt_dir.glob("step-*") if (p / MARKER).exists() and not p.name.endswith(".tmp"))
    return done[-1] if done else None


def save_checkpoint(ckpt_dir, step, model, best_weights, optimizer, scheduler, state, keep=2):
    ckpt_dir = Path(ckpt_dir)
    final = ckpt_dir / f"step-{step:08d}"
    tmp = ckpt_dir / f"step-{step:08d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(model), tmp / "trainable.safetensors")
    if best_weights is not None:
        save_file(best_weights, tmp / "best.safetensors")
    rng = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng, **state},
               tmp / "trainer_state.pt")
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    (final / MARKER).write_text(f"{step}\n")
    for old in sorted(p for p in ckpt_dir.glob("step-*") if (p / MARKER).exists())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_checkpoint(path, model, optimizer, scheduler):
    weights = load_file(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    for n, t in weights.items():
        params[n].data.copy_(t)
    st = torch.load(path / "trainer_state.pt", weights_only=True)
    optimizer.load_state_dict(st.pop("optimizer"))
    scheduler.load_state_dict(st.pop("scheduler"))
    rng = st.pop("rng")
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    best = load_file(path / "best.safetensors") if (path / "best.safetensors").exists() else None
    return st, best


def _maybe_die(step):
    # Fault injection for the resume tests: LORA_WF_KILL_AFTER_STEP=N kills this process with
    # SIGKILL right after step N is done (and its checkpoint, if one was due, written).
    if os.environ.get("LORA_WF_KILL_AFTER_STEP") == str(step):
        os.kill(os.getpid(), signal.SIGKILL)


def train(model, train_examples, val_examples, cfg, ckpt_dir, pad_id, device):
    """Train the trainable (LoRA) parameters in place; returns the training log. The model ends
    holding the weights of the best validation step."""
    torch.manual_seed(cfg["seed"])
    random.seed(cfg["seed"])
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["learning_rate"], weight_decay=cfg["weight_decay"])
    lengths = [len(e["input_ids"]) for e in train_examples]
    per_epoch = math.ceil(len(train_examples) / cfg["batch_size"])
    total = cfg["max_steps"] or max(1, math.ceil(cfg["epochs"] * per_epoch))
    warmup = int(cfg["warmup_ratio"] * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
    stopper = EarlyStopping(cfg["patience"])
    log = {"history": [], "evals": [], "resumed_from": [], "total_steps": total, "stopped_early": False}
    step, best_weights = 0, None

    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is not None:
        st, best_weights = load_checkpoint(ckpt, model, optimizer, scheduler)
        step, log = st["step"], st["log"]
        stopper.load(st["stopper"])
        log["resumed_from"].append(step)
        print(f"resumed from {ckpt} at step {step}")
    else:
        val_loss = evaluate(model, val_examples, cfg["batch_size"], pad_id, device)
        log["evals"].append({"step": 0, "val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50))})
        stopper.update(0, val_loss)
        best_weights = trainable_state(model)

    t0, tokens, computed = time.time(), 0, 0
    bar = tqdm(total=total, initial=step, desc="fine-tune", mininterval=5)
    while step < total and not stopper.stop:
        epoch, pos = divmod(step, per_epoch)
        batch_ids = epoch_batches(lengths, cfg["batch_size"], cfg["seed"], epoch)[pos]
        batch = {k: v.to(device) for k, v in make_batch([train_examples[i] for i in batch_ids], pad_id, cfg).items()}
        loss = batch_loss(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens += sum(lengths[i] for i in batch_ids)
        computed += batch["input_ids"].numel()
        log["history"].append({"step": step, "epoch": round(step / per_epoch, 4), "train_loss": float(loss.detach()),
                               "lr": scheduler.get_last_lr()[0]})
        bar.update(1)
        if step % cfg["eval_every"] == 0 or step == total:
            val_loss = evaluate(model, val_examples, cfg["batch_size"], pad_id, device)
            log["evals"].append({"step": step, "val_loss": val_loss, "val_perplexity": math.exp(min(val_loss, 50))})
            if stopper.update(step, val_loss):
                best_weights = trainable_state(model)
            print(f"step {step}: train loss {float(loss.detach()):.4f}, val loss {val_loss:.4f}, "
                  f"val perplexity {math.exp(min(val_loss, 50)):.3f}")
            log["stopped_early"] = stopper.stop
        if step % cfg["checkpoint_every"] == 0 or stopper.stop or step == total:
            save_checkpoint(ckpt_dir, step, model, best_weights, optimizer, scheduler,
                            {"step": step, "log": log, "stopper": stopper.state()})
        _maybe_die(step)
    bar.close()
    elapsed = time.time() - t0
    log.update(best_step=stopper.best_step, best_val_loss=stopper.best, final_step=step,
               train_tokens_per_second=tokens / elapsed if elapsed > 0 else None,
               padding_fraction=1 - tokens / computed if computed else None, packing=bool(cfg.get("packing")))
    params_by_name = dict(model.named_parameters())
    for n, t in best_weights.items():
        params_by_name[n].data.copy_(t.to(params_by_name[n].device))
    return log
