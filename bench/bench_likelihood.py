"""Classification throughput: generate-and-parse (the original studies' way) against the pipeline's
label-likelihood scoring, in one process, on a random-weight LLaMA-architecture model.

  naive generate+parse   : fp32 weights, model.generate on one prompt at a time (8 new tokens,
                           greedy), then prompting.parse_label on the decoded text
  batched generate+parse : the pipeline's dtype (--dtype auto: bf16 on a GPU, fp32 on CPU),
                           inference.generate (length-sorted, left-padded, batch --batch), then
                           prompting.parse_label
  label_logprobs         : the pipeline's dtype, inference.label_logprobs (one forward pass per
                           batch scores every label, kept apart by a 4D mask), argmax over labels

Labels are --labels random token sequences of 1..3 tokens. The stub tokenizer decodes ids as
space-separated numbers, so a label "parses" when its ids appear in the generated ids. Random
weights almost never produce a label, so generate-and-parse leaves most examples unparsed;
likelihood scoring always picks one. Both models hold the same weights up to rounding.

Checks after the table, on the first --check examples: label_logprobs against one unpadded
forward pass of prompt + label per (example, label), both the scores (max |diff| in nats) and the
argmax; and, where generate-and-parse parsed a label, whether it is the likelihood's prediction.

Run:  python bench/bench_likelihood.py --size tiny --examples 16 --labels 6   (CPU, seconds)
      python bench/bench_likelihood.py --size 7b --examples 64 --labels 6     (GPU)
"""

import argparse
import random

import torch
from common import (
    FIRST_ID,
    StubTokenizer,
    Timer,
    add_ratio,
    build_llama,
    default_device,
    describe,
    dtype_name,
    free_memory,
    generate_one_at_a_time,
    peak_memory_gib,
    pipeline_dtype,
    print_table,
    reset_peak_memory,
    synthetic_examples,
)

from finetune_study import inference, prompting

NEW_TOKENS = 8

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "1b", "7b"])
p.add_argument("--examples", type=int, default=64)
p.add_argument("--labels", type=int, default=6)
p.add_argument("--batch", type=int, default=16, help="batch size of the pipeline variants (its decoding default)")
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="pipeline dtype")
p.add_argument("--check", type=int, default=16, help="examples checked against unpadded per-label scoring")
p.add_argument("--device", default=default_device())
args = p.parse_args()

dtype = pipeline_dtype(args.device, args.dtype)
tok = StubTokenizer()
prompts = [e["prompt"] for e in synthetic_examples(args.examples, args.vocab, seed=2)]
rng = random.Random(3)
label_ids = [[rng.randrange(FIRST_ID, args.vocab) for _ in range(rng.randint(1, 3))] for _ in range(args.labels)]
label_names = [" ".join(map(str, ids)) for ids in label_ids]


def argmax(scores):
    return max(range(len(scores)), key=scores.__getitem__)


def naive_generate_and_parse(model):
    return lambda ps: [
        prompting.parse_label(tok.decode(new), label_names) for new in generate_one_at_a_time(model, ps, NEW_TOKENS)
    ]


def batched_generate_and_parse(model):
    decoding = {"max_new_tokens": NEW_TOKENS, "batch_size": args.batch}
    return lambda ps: [
        prompting.parse_label(o, label_names) for o in inference.generate(model, tok, ps, decoding, progress=False)
    ]


def likelihood(model):
    return lambda ps: [
        label_names[argmax(s)]
        for s in inference.label_logprobs(model, ps, label_ids, batch_size=args.batch, progress=False)
    ]


def timed(name, dt, fn):
    fn(prompts[:2])  # warm-up
    reset_peak_memory(args.device)
    with Timer(args.device) as t:
        preds = fn(prompts)
    return {
        "variant": name,
        "dtype": dtype_name(dt),
        "examples": len(prompts),
        "seconds": t.seconds,
        "examples/s": len(prompts) / t.seconds,
        "parsed": sum(x is not None for x in preds),
        "peak_mem_GiB": peak_memory_gib(args.device),
    }, preds


print(
    f"bench_likelihood: size {args.size}, device {describe(args.device)}, pipeline {dtype_name(dtype)}, "
    f"{args.examples} examples ({min(map(len, prompts))}..{max(map(len, prompts))} tokens), {args.labels} labels "
    f"of {min(map(len, label_ids))}..{max(map(len, label_ids))} tokens, batch {args.batch}"
)
rows, preds = [], {}
naive_model = build_llama(args.size, args.vocab, args.device, torch.float32).eval()
row, preds["naive"] = timed("naive generate+parse", torch.float32, naive_generate_and_parse(naive_model))
rows.append(row)
if dtype == torch.float32:
    model = naive_model
else:
    del naive_model
    free_memory(args.device)
    model = build_llama(args.size, args.vocab, args.device, dtype).eval()
row, preds["batched"] = timed(f"batched generate+parse (batch {args.batch})", dtype, batched_generate_and_parse(model))
rows.append(row)
row, preds["likelihood"] = timed("label_logprobs", dtype, likelihood(model))
rows.append(row)
for r, key in zip(rows, ("naive", "batched")):
    agree = sum(x == y for x, y in zip(preds[key], preds["likelihood"]) if x is not None)
    r["agree_w_likelihood"] = f"{agree}/{r['parsed']}"
add_ratio(rows, "examples/s", rows[0], "vs_naive")
add_ratio(rows, "examples/s", rows[1], "vs_batched_generate")
print_table(rows)
print(
    "parsed: examples with a label found in the output; agree_w_likelihood: of those, how many equal the "
    "label_logprobs prediction"
)

# Correctness: label_logprobs (padded batch, all labels in one pass) vs an unpadded prompt + label forward per label.
k = min(args.check, len(prompts))
got = inference.label_logprobs(model, prompts[:k], label_ids, batch_size=args.batch, progress=False)
worst, same_argmax = 0.0, 0
with torch.no_grad():
    for i in range(k):
        ref = []
        for lab in label_ids:
            ids = torch.tensor([prompts[i] + lab], device=args.device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            n = len(prompts[i])
            ref.append(sum(float(logp[n - 1 + t, lab[t]]) for t in range(len(lab))))
        worst = max(worst, max(abs(a - b) for a, b in zip(ref, got[i])))
        same_argmax += argmax(ref) == argmax(got[i])
print(
    f"label_logprobs vs unpadded per-label forward ({dtype_name(dtype)}), first {k} examples x {args.labels} labels: "
    f"max |diff| {worst:.2e} nats; same argmax {same_argmax}/{k}"
)
