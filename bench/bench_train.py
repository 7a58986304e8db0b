"""LoRA training throughput: the pipeline's own training code against the naive style of the
original studies, in one process, on a random-weight LLaMA-architecture model.

  naive             : fp32 weights, every example right-padded to --seq, loss = model(**batch).loss
                      (LM head and cross-entropy over every position's full-vocabulary logits)
  pipeline          : the pipeline's dtype (--dtype auto: bf16 on a GPU, fp32 on CPU), batches from
                      batching.epoch_batches (length-grouped), batching.make_batch without packing
                      (pad to the batch's longest), causal_answer_loss (LM head on answer
                      positions only, in chunks)
  pipeline +packing : the same, but make_batch with {"packing": True, "pack_length": --pack-length}:
                      each batch's examples laid end to end in rows, position ids restarting per
                      example, no padding between them

--grad-ckpt adds gradient checkpointing to the two pipeline variants. All three wrap the model
with adapters.lora_model (r 16, alpha 32, q/k/v/o) and take AdamW steps on the LoRA parameters
with gradient clipping, like training.train, over the same --steps * --batch synthetic examples
(prompts 32..480 tokens, answers 1..8, prompt masked with -100): the same useful work; only
padding, precision and the loss path differ. A last line checks that the first batch's loss is
the same packed and padded (same weights).

Run:  python bench/bench_train.py --size tiny --steps 4 --batch 4            (CPU, seconds)
      python bench/bench_train.py --size 7b --steps 20 --batch 8 --grad-ckpt   (GPU)
"""

import argparse

import torch
from common import (
    LORA,
    PAD_ID,
    Timer,
    add_ratio,
    build_llama,
    default_device,
    describe,
    dtype_name,
    free_memory,
    is_oom,
    n_params,
    peak_flops,
    peak_memory_gib,
    pipeline_dtype,
    print_table,
    reset_peak_memory,
    synthetic_examples,
)

from finetune_study import adapters, batching
from finetune_study.loss import causal_answer_loss

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "1b", "7b"])
p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per variant")
p.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first batches again)")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=512, help="naive pads every example to this length")
p.add_argument(
    "--pack-length",
    type=int,
    default=None,
    help="row length of the packed variant (default: --seq, as the pipeline uses max_length)",
)
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--grad-ckpt", action="store_true", help="gradient checkpointing in the pipeline variants")
p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="pipeline dtype")
p.add_argument("--device", default=default_device())
p.add_argument("--only", choices=["naive", "pipeline", "packing"], help="run one variant")
args = p.parse_args()

answer_len = (1, 8)
examples = synthetic_examples(
    args.steps * args.batch,
    args.vocab,
    seed=0,
    prompt_len=(min(32, args.seq - 8), min(480, args.seq - answer_len[1])),
    answer_len=answer_len,
)
lengths = [len(e["input_ids"]) for e in examples]
real_tokens = sum(lengths)
batches = batching.epoch_batches(lengths, args.batch, seed=0, epoch=0)  # both pipeline variants
args.pack_length = args.pack_length or args.seq
PACKED = {"packing": True, "pack_length": args.pack_length}
PADDED = {"packing": False}


def pad_to_seq(exs, seq):
    """Naive batch: every example right-padded to the fixed length seq."""
    ids = torch.full((len(exs), seq), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(exs), seq), dtype=torch.long)
    labels = torch.full((len(exs), seq), -100, dtype=torch.long)
    for i, e in enumerate(exs):
        n = len(e["input_ids"])
        ids[i, :n], mask[i, :n], labels[i, :n] = torch.tensor(e["input_ids"]), 1, torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def to_device(batch):
    return {k: v.to(args.device) for k, v in batch.items()}


@torch.no_grad()
def packed_vs_padded(model, b):
    """Loss of batch b computed from the padded batch and from the packed one, same weights."""
    exs = [examples[i] for i in b]
    padded = causal_answer_loss(model, to_device(batching.make_batch(exs, PAD_ID, PADDED)))
    packed = causal_answer_loss(model, to_device(batching.make_batch(exs, PAD_ID, PACKED)))
    return float(padded), float(packed)


def run(variant):
    naive = variant == "naive"
    ckpt = args.grad_ckpt and not naive
    dtype = torch.float32 if naive else pipeline_dtype(args.device, args.dtype)
    free_memory(args.device)
    model = build_llama(args.size, args.vocab, args.device, dtype)
    reset_peak_memory(args.device)  # after the build (drawn in fp32, then cast); the weights still count
    matmul_params = n_params(model)
    model = adapters.lora_model(model, LORA, "CAUSAL_LM", gradient_checkpointing=ckpt)
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    check = None
    if naive:
        order = list(range(len(examples)))
        runs = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]

        def make(b):
            return pad_to_seq([examples[i] for i in b], args.seq)

        def loss_fn(m, batch):
            return m(**batch).loss

    else:
        runs = batches
        cfg = PACKED if variant == "pipeline +packing" else PADDED

        def make(b, cfg=cfg):
            return batching.make_batch([examples[i] for i in b], PAD_ID, cfg)

        loss_fn = causal_answer_loss
        if cfg is PACKED:
            check = packed_vs_padded(model, runs[0])  # before any step: the freshly built weights

    def step(b):
        batch = to_device(make(b))
        loss = loss_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return batch["input_ids"].numel()

    for b in runs[: args.warmup]:
        step(b)
    computed = 0
    with Timer(args.device) as t:
        for b in runs:
            computed += step(b)
    tok_s = real_tokens / t.seconds
    peak = peak_flops(args.device)
    row = {
        "variant": variant + (" +ckpt" if ckpt else ""),
        "dtype": dtype_name(dtype),
        "steps": len(runs),
        "real_tok": real_tokens,
        "computed_tok": computed,
        "pad_frac": 1 - real_tokens / computed,
        "seconds": t.seconds,
        "real_tok/s": tok_s,
        "MFU": 4 * matmul_params * tok_s / peak if peak else None,
        "peak_mem_GiB": peak_memory_gib(args.device),
    }
    return row, check


print(
    f"bench_train: size {args.size}, device {describe(args.device)}, batch {args.batch}, "
    f"{len(examples)} examples ({real_tokens} real tokens), naive seq {args.seq}, pack length {args.pack_length}"
)
variants = {"pipeline": "pipeline", "packing": "pipeline +packing", "naive": "naive"}
rows, check = [], None
# Pipeline variants first: on CPU peak memory is the process's max RSS so far, so the (smaller)
# pipeline footprints are measured before the naive run raises it.
for key, variant in variants.items():
    if args.only not in (None, key):
        continue
    try:
        row, c = run(variant)
        check = c or check
    except RuntimeError as err:
        if not is_oom(err):
            raise
        row = {"variant": variant, "real_tok/s": "OOM"}
    rows.append(row)
    free_memory(args.device)
add_ratio(rows, "real_tok/s", next((r for r in rows if r["variant"] == "naive"), None), "vs_naive")
print_table(rows)
print(
    "real_tok/s: non-pad tokens per second; pad_frac: 1 - real_tok / computed_tok (computed: numel of the "
    "input_ids fed in); MFU: 4 x matmul params x real_tok/s / peak bf16 FLOP/s (LoRA: forward 2N + "
    "input-gradient backward 2N); peak_mem: "
    + ("torch.cuda.max_memory_allocated" if str(args.device).startswith("cuda") else "process max RSS so far")
)
if check:
    padded, packed = check
    tol = 1e-4 if pipeline_dtype(args.device, args.dtype) == torch.float32 else 2e-2
    rel = abs(packed - padded) / abs(padded)
    print(
        f"first batch loss, same weights: padded {padded:.6f}, packed {packed:.6f}, "
        f"|diff| {abs(packed - padded):.2e} ({rel:.1e} relative): {'equal' if rel < tol else 'NOT EQUAL'} "
        f"(tolerance {tol:g} relative for {dtype_name(pipeline_dtype(args.device, args.dtype))})"
    )
