"""Training batches: padded or packed tensors from tokenized examples, and each epoch's batches.

- collate: right-padded {input_ids, attention_mask, labels}; labels are token labels (causal LMs,
  the prompt masked with -100) or one class index per example (encoders).
- collate_seq2seq: an encoder-decoder batch: the source right-padded with its attention mask, the
  target labels right-padded with -100 to their own width (source and target lengths differ).
- collate_packed / pack_rows: a batch's causal-LM examples laid end to end in rows of `pack_length`
  tokens (first-fit-decreasing); position ids restart at every example, and transformers' attention
  masks (built from those position ids) keep each example from seeing another. Same examples per
  step, same loss as padded, no padding.
- epoch_batches: deterministic per seed and epoch, grouped by length so little compute goes to padding.
"""

import torch


def right_padded(seqs, pad_id):
    """Token-id lists as one right-padded batch: (ids, attention mask). Every row starts at position 0,
    so an encoder's first token (CLS) and position ids never depend on the other rows of the batch."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def collate(examples, pad_id):
    """Right-padded batch tensors from examples {input_ids, labels} (labels: list or int)."""
    ids, mask = right_padded([e["input_ids"] for e in examples], pad_id)
    width = ids.shape[1]
    token_labels = isinstance(examples[0]["labels"], list)
    labels = (
        torch.full((len(examples), width), -100, dtype=torch.long)
        if token_labels
        else torch.zeros(len(examples), dtype=torch.long)
    )
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        if token_labels:
            labels[i, :n] = torch.tensor(e["labels"])
        else:
            labels[i] = e["labels"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def collate_seq2seq(examples, pad_id):
    """Encoder-decoder batch tensors from examples {input_ids: source ids, labels: target ids (with
    the EOS the tokenizer appends)}: {input_ids, attention_mask} right-padded to the longest source,
    labels right-padded with -100 to the longest target. The model builds its decoder inputs from
    the labels (shifted right after its decoder start token)."""
    ids, mask = right_padded([e["input_ids"] for e in examples], pad_id)
    width = max(len(e["labels"]) for e in examples)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        labels[i, : len(e["labels"])] = torch.tensor(e["labels"], dtype=torch.long)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


# PEFT task type -> its padded batch, where it is not `collate`
COLLATE = {"SEQ_2_SEQ_LM": collate_seq2seq}


def collate_for(task_type):
    """The padded-batch function of a PEFT task type: collate_seq2seq or collate."""
    return COLLATE.get(task_type, collate)


def token_counts(examples, batch, task_type=None):
    """(real, computed) tokens of a training batch: the examples' input tokens and the size of the
    batch's input_ids, padding included; an encoder-decoder batch (SEQ_2_SEQ_LM) adds its target
    tokens and the labels' size, as its decoder runs on them."""
    real, computed = sum(len(e["input_ids"]) for e in examples), batch["input_ids"].numel()
    if task_type == "SEQ_2_SEQ_LM":
        real += sum(len(e["labels"]) for e in examples)
        computed += batch["labels"].numel()
    return real, computed


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
            ids[r, at : at + n] = torch.tensor(e["input_ids"])
            pos[r, at : at + n] = torch.arange(n)
            labels[r, at + 1 : at + n] = torch.tensor(e["labels"][1:])
            at += n
        pos[r, at:] = torch.arange(width - at)
    return {"input_ids": ids, "position_ids": pos, "labels": labels}


def make_batch(examples, pad_id, cfg, task_type=None):
    """The training batch for these examples: packed when cfg asks for it (causal LMs), else padded
    (collate_for(task_type)); an encoder-decoder batch (SEQ_2_SEQ_LM) is never packed."""
    if task_type in COLLATE:
        return COLLATE[task_type](examples, pad_id)
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
        chunk = sorted(order[w : w + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]
