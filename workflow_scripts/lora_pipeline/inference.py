"""Batched inference: greedy/sampled generation, label-likelihood scoring for causal LMs, and
argmax of an encoder's classification head. Long runs are done in chunks saved to disk, so a
killed job resumes at the first unfinished chunk.

Generation sorts prompts by length and left-pads each batch, which keeps padding small and
gives the same greedy outputs as one prompt at a time (checked in tests).
"""
import hashlib
import json
from pathlib import Path

import torch
from tqdm import tqdm

from .common import write_jsonl
from .decoding import to_generate_kwargs

def left_padded(seqs, pad):
    """Token-id lists as one left-padded batch: (ids, attention mask)."""
    width = max(len(p) for p in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, p in enumerate(seqs):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    return ids, mask


def weights_fingerprint(model_dir, adapter=None):
    """Fingerprints of a model's (and adapter's) safetensors: content hashes up to 256 MiB, else
    name, size and mtime. Keys resumable chunks so chunks of other weights are never reused."""
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if adapter:
        files += sorted(Path(adapter).glob("*.safetensors"))
    return [hashlib.sha256(f.read_bytes()).hexdigest() if f.stat().st_size < 2**28
            else f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]


def _length_sorted_batches(lengths, batch_size):
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


@torch.no_grad()
def generate(model, tokenizer, prompt_token_ids, decoding, progress=True, with_ids=False):
    """New text for each prompt (list of token-id lists), in input order; with_ids: (text, new token ids)."""
    kw = to_generate_kwargs(decoding)
    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    outputs = [None] * len(prompt_token_ids)
    batches = _length_sorted_batches([len(p) for p in prompt_token_ids], decoding.get("batch_size", 16))
    for batch in tqdm(batches, desc="generate", disable=not progress, mininterval=5):
        ids, mask = left_padded([prompt_token_ids[i] for i in batch], pad)
        width = ids.shape[1]
        if kw.get("do_sample"):
            torch.manual_seed(decoding.get("seed", 0) + batch[0])
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), pad_token_id=pad, **kw)
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            while new and new[-1] == pad:  # padding after an early end of sequence
                new.pop()
            text = tokenizer.decode(new, skip_special_tokens=True)
            outputs[i] = (text, new) if with_ids else text
    return outputs


@torch.no_grad()
def label_logprobs(model, prompt_token_ids, label_token_ids, batch_size=16, progress=True):
    """Sum of log-probabilities of each label's tokens after each prompt: a [n_prompts][n_labels]
    list. The prompt is run once per batch; its KV cache is then shared by all labels."""
    dev = next(model.parameters()).device
    n_labels = len(label_token_ids)
    lab_width = max(len(t) for t in label_token_ids)
    lab_ids = torch.zeros((n_labels, lab_width), dtype=torch.long)
    lab_mask = torch.zeros((n_labels, lab_width), dtype=torch.long)
    for j, t in enumerate(label_token_ids):
        lab_ids[j, : len(t)] = torch.tensor(t)
        lab_mask[j, : len(t)] = 1
    scores = [None] * len(prompt_token_ids)
    batches = _length_sorted_batches([len(p) for p in prompt_token_ids], batch_size)
    for batch in tqdm(batches, desc="label likelihood", disable=not progress, mininterval=5):
        ids, mask = left_padded([prompt_token_ids[i] for i in batch], 0)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        # only the last prompt position's logits are needed: skip the vocabulary projection of the rest
        out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True,
                    logits_to_keep=1)
        first = torch.log_softmax(out.logits[:, -1].float(), -1)  # (B, V): next-token after the prompt
        cache = out.past_key_values
        cache.batch_repeat_interleave(n_labels)
        b = len(batch)
        rep_ids = lab_ids.repeat(b, 1)
        rep_lab_mask = lab_mask.repeat(b, 1)
        full_mask = torch.cat([mask.repeat_interleave(n_labels, 0), rep_lab_mask], 1)
        rep_pos = pos[:, -1:].repeat_interleave(n_labels, 0) + 1 + torch.arange(lab_width)
        out2 = model(input_ids=rep_ids.to(dev), attention_mask=full_mask.to(dev), position_ids=rep_pos.to(dev),
                     past_key_values=cache, use_cache=True)
        logp = torch.log_softmax(out2.logits.float(), -1).cpu()  # (B*L, T, V)
        first = first.cpu().repeat_interleave(n_labels, 0)
        total = first.gather(1, rep_ids[:, :1]).squeeze(1)
        if lab_width > 1:
            later = logp[:, :-1].gather(2, rep_ids[:, 1:, None]).squeeze(2) * rep_lab_mask[:, 1:]
            total = total + later.sum(1)
        total = total.view(b, n_labels)
        for row, i in enumerate(batch):
            scores[i] = total[row].tolist()
    return scores


@torch.no_grad()
def classify(model, tokenizer, texts, max_length=256, batch_size=32, progress=True):
    """Predicted label index and logits of an encoder classifier, in input order."""
    dev = next(model.parameters()).device
    preds = [None] * len(texts)
    batches = _length_sorted_batches([len(t) for t in texts], batch_size)
    for batch in tqdm(batches, desc="classify", disable=not progress, mininterval=5):
        enc = tokenizer([texts[i] for i in batch], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(dev)
        logits = model(**enc).logits.float().cpu()
        for row, i in enumerate(batch):
            preds[i] = (int(logits[row].argmax()), logits[row].tolist())
    return preds


def run_chunked(rows, predict_fn, chunk_dir, chunk_size=256):
    """Apply predict_fn to rows chunk by chunk, saving each finished chunk atomically in chunk_dir;
    chunks already on disk (from a killed run with the same settings) are not recomputed."""
    chunk_dir = Path(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    results = []
    n_chunks = (len(rows) + chunk_size - 1) // chunk_size
    for c in range(n_chunks):
        path = chunk_dir / f"chunk-{c:05d}.jsonl"
        part = rows[c * chunk_size:(c + 1) * chunk_size]
        if path.exists():
            done = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
            if len(done) == len(part):
                print(f"chunk {c + 1}/{n_chunks}: already done, skipped")
                results.extend(done)
                continue
        out = predict_fn(part)
        write_jsonl(path, out)
        print(f"chunk {c + 1}/{n_chunks}: {len(out)} rows")
        results.extend(out)
    return results
