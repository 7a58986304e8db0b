"""Batched inference: greedy/sampled generation, label-likelihood scoring for causal LMs, and
argmax of an encoder's classification head. Long runs are done in chunks saved to disk, so a
killed job resumes at the first unfinished chunk.

Generation sorts prompts by length and left-pads each batch, which keeps padding small and
gives the same greedy outputs as one prompt at a time (checked in tests). An encoder-decoder model
(config.is_encoder_decoder: T5, BART) takes the prompt as its encoder input, right-padded (so
positions never depend on the batch), and its output is the decoder's tokens after its start token.
"""

import json
from pathlib import Path

import torch
from tqdm import tqdm

from . import adapters
from .common import write_jsonl
from .decoding import cut_at_stop, to_generate_kwargs


def left_padded(seqs, pad):
    """Token-id lists as one left-padded batch: (ids, attention mask)."""
    width = max(len(p) for p in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, p in enumerate(seqs):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    return ids, mask


def _length_sorted_batches(lengths, batch_size):
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def is_encoder_decoder(model):
    """Whether a model (or a PEFT model around one) is an encoder-decoder (T5, BART): its config says."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


@torch.no_grad()
def generate(model, tokenizer, prompt_token_ids, decoding, progress=True, with_ids=False):
    """New text for each prompt (list of token-id lists), in input order; with_ids: (text, new token ids).
    An encoder-decoder model reads each prompt as its (right-padded) encoder input; its new tokens
    are the decoder's after the decoder start token, trailing padding and EOS dropped. With stop
    strings (decoding `stop`), each text ends before its first stop string (the ids are kept whole)."""
    from .batching import right_padded

    kw = to_generate_kwargs(decoding)
    if "stop_strings" in kw:  # transformers matches stop strings on the tokenizer's vocabulary
        kw["tokenizer"] = tokenizer
    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    seq2seq = is_encoder_decoder(model)
    eos = tokenizer.eos_token_id if seq2seq else None
    outputs = [None] * len(prompt_token_ids)
    batches = _length_sorted_batches([len(p) for p in prompt_token_ids], decoding.get("batch_size", 16))
    for batch in tqdm(batches, desc="generate", disable=not progress, mininterval=5):
        ids, mask = (right_padded if seq2seq else left_padded)([prompt_token_ids[i] for i in batch], pad)
        width = 1 if seq2seq else ids.shape[1]  # the decoder start token, or the prompt
        if kw.get("do_sample"):
            torch.manual_seed(decoding.get("seed", 0) + batch[0])
        out = model.generate(input_ids=ids.to(dev), attention_mask=mask.to(dev), pad_token_id=pad, **kw)
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            while new and new[-1] == pad:  # padding after an early end of sequence
                new.pop()
            if seq2seq and new and new[-1] == eos:
                new.pop()
            text = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), kw.get("stop_strings"))
            outputs[i] = (text, new) if with_ids else text
    return outputs


def _label_block(label_token_ids):
    """All labels' tokens end to end: ids, the label each token belongs to, its offset in that label."""
    ids, which, offset = [], [], []
    for j, t in enumerate(label_token_ids):
        ids += list(t)
        which += [j] * len(t)
        offset += range(len(t))
    return torch.tensor(ids), torch.tensor(which), torch.tensor(offset)


def label_attention_mask(prompt_mask, which, offset, dtype):
    """Additive 4D mask (B, 1, W+S, W+S) for left-padded prompts (mask (B, W)) followed by S label
    tokens: prompt tokens attend causally to real prompt tokens; a label token attends to the
    real prompt tokens and to its own label's tokens up to itself, never to another label."""
    b, w = prompt_mask.shape
    n = w + len(which)
    real = prompt_mask.bool()[:, None, :]
    allowed = torch.zeros((b, n, n), dtype=torch.bool)
    allowed[:, :w, :w] = torch.tril(torch.ones(w, w, dtype=torch.bool)) & real
    allowed[:, :w, :w] |= torch.eye(w, dtype=torch.bool)  # a pad row sees itself: no all-masked row, no NaN
    allowed[:, w:, :w] = real
    allowed[:, w:, w:] = (which[:, None] == which[None, :]) & (offset[None, :] <= offset[:, None])
    mask = torch.zeros((b, 1, n, n), dtype=dtype)
    return mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)


@torch.no_grad()
def label_logprobs(
    model, prompt_token_ids, label_token_ids, batch_size=16, progress=True, normalization="sum", label_texts=None
):
    """Sum of log-probabilities of each label's tokens after each prompt: a [n_prompts][n_labels]
    list. One forward pass per batch scores every label: the left-padded prompts are followed by
    all labels' tokens end to end, a 4D mask (label_attention_mask) keeps the labels apart, and
    position ids continue each label from its prompt's end. The LM head runs only at the
    positions whose next token is scored (the prompt's last token and non-final label tokens).
    normalization: "sum" (the default), "mean" (divided by the label's token count) or "chars"
    (divided by len(label_texts[j]), the label's text, which must then be given). A prompt- or
    prefix-tuned model's virtual tokens go before every prompt (adapters.with_virtual_tokens), as
    in its training loss."""
    if normalization == "sum":
        divisor = None
    elif normalization == "mean":
        divisor = torch.tensor([float(len(t)) for t in label_token_ids])
    elif normalization == "chars":
        if label_texts is None or len(label_texts) != len(label_token_ids):
            raise ValueError("normalization='chars' needs label_texts, one string per label")
        divisor = torch.tensor([float(len(t)) for t in label_texts])
    else:
        raise ValueError(f"normalization must be 'sum', 'mean' or 'chars', got {normalization!r}")
    if divisor is not None and (divisor == 0).any():
        raise ValueError(f"a label has no tokens or no characters to normalize by ({normalization})")
    dev = next(model.parameters()).device
    dtype = model.get_input_embeddings().weight.dtype
    lab_ids, which, offset = _label_block(label_token_ids)
    scores = [None] * len(prompt_token_ids)
    batches = _length_sorted_batches([len(p) for p in prompt_token_ids], batch_size)
    for batch in tqdm(batches, desc="label likelihood", disable=not progress, mininterval=5):
        ids, mask = left_padded([prompt_token_ids[i] for i in batch], 0)
        b, w = ids.shape
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        full_ids = torch.cat([ids, lab_ids.expand(b, -1)], 1)
        full_pos = torch.cat([pos, pos[:, -1:] + 1 + offset], 1)
        # label token k is predicted by the prompt's last position (offset 0) or by token k - 1
        src = torch.where(offset == 0, w - 1, w + torch.arange(len(offset)) - 1)
        keep, col = torch.unique(src, return_inverse=True)
        inputs = {
            "input_ids": full_ids.to(dev),
            "position_ids": full_pos.to(dev),
            "attention_mask": label_attention_mask(mask, which, offset, dtype).to(dev),
        }
        run, shift = model, 0
        if adapters.virtual_tokens(model):
            inputs, shift = adapters.with_virtual_tokens(model, inputs)
            run = model.get_base_model()
        out = run(**inputs, use_cache=False, logits_to_keep=(keep + shift).to(dev))
        logp = torch.log_softmax(out.logits.float(), -1)  # (B, kept positions, V)
        token_logp = logp[:, col.to(dev)].gather(2, lab_ids.to(dev).expand(b, -1)[:, :, None]).squeeze(2)
        total = torch.zeros((b, len(label_token_ids)), device=dev).index_add_(1, which.to(dev), token_logp).cpu()
        if divisor is not None:
            total = total / divisor
        for row, i in enumerate(batch):
            scores[i] = total[row].tolist()
    return scores


@torch.no_grad()
def classify(model, tokenizer, texts, max_length=256, batch_size=32, progress=True):
    """Predicted label index and logits of an encoder classifier, in input order. Tokenized as in
    fine-tuning (heads.encode: the same truncation at max_length, which must be the fine-tune's) and
    right-padded as there, so a row's prediction does not depend on the other rows of its batch."""
    from .batching import right_padded
    from .heads import encode

    dev = next(model.parameters()).device
    ids = encode(tokenizer, texts, max_length)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    preds = [None] * len(texts)
    batches = _length_sorted_batches([len(t) for t in ids], batch_size)
    for batch in tqdm(batches, desc="classify", disable=not progress, mininterval=5):
        input_ids, mask = right_padded([ids[i] for i in batch], pad)
        logits = model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev)).logits.float().cpu()
        for row, i in enumerate(batch):
            preds[i] = (int(logits[row].argmax()), logits[row].tolist())
    return preds


@torch.no_grad()
def tag_words(model, tokenizer, sentences, labels, batch_size=32, progress=True):
    """One tag per word of each sentence (a list of words) from a token-classification head: the
    argmax at the word's first sub-word (word_tokens.encode_words, as in fine-tuning), O for a word
    with no sub-word. Right-padded, so a sentence's tags do not depend on its batch."""
    from .batching import right_padded
    from .word_tokens import encode_words

    dev = next(model.parameters()).device
    encoded = [encode_words(tokenizer, words) for words in sentences]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tags = [None] * len(sentences)
    batches = _length_sorted_batches([len(ids) for ids, _ in encoded], batch_size)
    for batch in tqdm(batches, desc="tag", disable=not progress, mininterval=5):
        input_ids, mask = right_padded([encoded[i][0] for i in batch], pad)
        best = model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev)).logits.float().argmax(-1).cpu()
        for row, i in enumerate(batch):
            tags[i] = [labels[int(best[row, t])] if t is not None else "O" for t in encoded[i][1]]
    return tags


def run_chunked(rows, predict_fn, chunk_dir, chunk_size=256):
    """Apply predict_fn to rows chunk by chunk, saving each finished chunk atomically in chunk_dir;
    chunks already on disk (from a killed run with the same settings) are not recomputed."""
    chunk_dir = Path(chunk_dir)
    chunk_dir.mkdir(parents=True, exist_ok=True)
    results = []
    n_chunks = (len(rows) + chunk_size - 1) // chunk_size
    for c in range(n_chunks):
        path = chunk_dir / f"chunk-{c:05d}.jsonl"
        part = rows[c * chunk_size : (c + 1) * chunk_size]
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
