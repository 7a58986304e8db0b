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
- stream: what training.train steps through, micro-batch by micro-batch: ExampleStream (batches of
  batch_size examples, each padded or packed) or, with training.tokens_per_step, TokenStream (the
  training set packed once into rows of pack_length tokens, the rows shuffled every epoch and
  taken micro_rows at a time, every row pack_length wide: step_sizes.token_step).
"""

import math

import torch

from . import step_sizes


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
    return collate_rows(examples, pack_rows([len(e["input_ids"]) for e in examples], row_length), pad_id)


def collate_rows(examples, rows, pad_id, width=None):
    """collate_packed for rows already chosen (lists of indices into examples), each row `width`
    tokens wide (default: the longest row's length)."""
    longest = max(sum(len(examples[i]["input_ids"]) for i in row) for row in rows)
    if width is not None and longest > width:
        raise ValueError(f"a packed row of {longest} tokens does not fit rows of {width}")
    width = width or longest
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


def _epoch_order(n, seed, epoch):
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000003 + epoch)).tolist()


class ExampleStream:
    """Micro-batch m of a run: batches of batch_size examples (epoch_batches), padded or packed
    (make_batch); per_epoch batches an epoch."""

    weighted = False  # an optimizer step averages its micro-batches' mean losses

    def __init__(self, examples, cfg, task_type, pad_id):
        self.examples, self.cfg, self.task_type, self.pad_id = examples, cfg, task_type, pad_id
        self.lengths = [len(e["input_ids"]) for e in examples]
        self.per_epoch = math.ceil(len(examples) / cfg["batch_size"])
        self._order = {}  # epoch -> its batches, the newest kept

    def indices(self, m):
        epoch, pos = divmod(m, self.per_epoch)
        if epoch not in self._order:
            self._order = {epoch: epoch_batches(self.lengths, self.cfg["batch_size"], self.cfg["seed"], epoch)}
        return self._order[epoch][pos]

    def get(self, m):
        """(the examples of micro-batch m, its batch tensors)."""
        chosen = [self.examples[i] for i in self.indices(m)]
        return chosen, make_batch(chosen, self.pad_id, self.cfg, self.task_type)

    def largest(self):
        """The micro-batch of the first epoch with the most input tokens (rows x width when padded)."""
        return max(
            range(self.per_epoch), key=lambda m: len(self.indices(m)) * max(self.lengths[i] for i in self.indices(m))
        )


class TokenStream:
    """Micro-batch m of a token-sized run (step_sizes.token_step): micro_rows packed rows of
    pack_length tokens. The rows are packed once (pack_rows over the whole training set) and
    shuffled every epoch; an epoch's last micro-batch may hold fewer rows."""

    weighted = True  # an optimizer step weights each micro-batch's mean loss by its answer tokens

    def __init__(self, examples, cfg, task_type, pad_id):
        self.examples, self.pad_id, self.seed = examples, pad_id, cfg["seed"]
        self.size = step_sizes.token_step(cfg)
        self.rows = pack_rows([len(e["input_ids"]) for e in examples], self.size["pack_length"])
        self.per_epoch = math.ceil(len(self.rows) / self.size["micro_rows"])
        self._order = {}

    def get(self, m):
        epoch, pos = divmod(m, self.per_epoch)
        if epoch not in self._order:
            self._order = {epoch: _epoch_order(len(self.rows), self.seed, epoch)}
        micro = self.size["micro_rows"]
        rows = [self.rows[r] for r in self._order[epoch][pos * micro : (pos + 1) * micro]]
        chosen = [self.examples[i] for row in rows for i in row]
        at, local = 0, []
        for row in rows:
            local.append(list(range(at, at + len(row))))
            at += len(row)
        return chosen, collate_rows(chosen, local, self.pad_id, self.size["pack_length"])

    def largest(self):
        return 0  # every full micro-batch has the same shape


def stream(examples, cfg, task_type, pad_id):
    """The micro-batches a run trains on: TokenStream with tokens_per_step, else ExampleStream."""
    cls = TokenStream if cfg.get("tokens_per_step") else ExampleStream
    return cls(examples, cfg, task_type, pad_id)
