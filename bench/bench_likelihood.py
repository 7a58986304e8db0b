"""Classification throughput: generate-and-parse (the original studies' way: batched greedy
inference.generate with max_new_tokens 8, then prompting.parse_label on the text) against the
pipeline's label-likelihood scoring (inference.label_logprobs: one prompt pass per batch, its KV
cache shared by all labels, argmax over labels), in one process, same random-weight model.

Labels are --labels random token sequences of 1..3 tokens; the stub tokenizer decodes ids as
space-separated numbers, so a label "parses" when its ids appear in the generated ids. Random
weights almost never produce a label, so the unparsed count is high for generate-and-parse;
likelihood scoring always picks one. As a correctness check, label_logprobs is compared with
one unpadded forward pass of prompt + label per (example, label) on the first few examples.

Run:  python bench/bench_likelihood.py --size tiny --examples 16 --labels 6   (CPU, seconds)
      python bench/bench_likelihood.py --size 7b --examples 64 --labels 6     (GPU)
"""
import argparse
import random

import torch

from common import (FIRST_ID, StubTokenizer, Timer, build_llama, default_device, describe, peak_memory_gib,
                    pipeline_dtype, print_table, reset_peak_memory, synthetic_examples)
from lora_pipeline import inference, prompting

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "1b", "7b"])
p.add_argument("--examples", type=int, default=64)
p.add_argument("--labels", type=int, default=6)
p.add_argument("--batch", type=int, default=16, help="batch size of both (the pipeline's decoding default)")
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="auto: bf16 GPU, fp32 CPU")
p.add_argument("--check", type=int, default=4, help="examples checked against unpadded per-label scoring")
p.add_argument("--device", default=default_device())
args = p.parse_args()

dtype = pipeline_dtype(args.device, args.dtype)
model = build_llama(args.size, args.vocab, args.device, dtype).eval()
tok = StubTokenizer()
prompts = [e["prompt"] for e in synthetic_examples(args.examples, args.vocab, seed=2)]
rng = random.Random(3)
label_ids = [[rng.randrange(FIRST_ID, args.vocab) for _ in range(rng.randint(1, 3))] for _ in range(args.labels)]
label_names = [" ".join(map(str, ids)) for ids in label_ids]


def generate_and_parse(ps):
    outs = inference.generate(model, tok, ps, {"max_new_tokens": 8, "batch_size": args.batch}, progress=False)
    return [prompting.parse_label(o, label_names) for o in outs]


def likelihood(ps):
    scores = inference.label_logprobs(model, ps, label_ids, batch_size=args.batch, progress=False)
    return [label_names[max(range(len(s)), key=s.__getitem__)] for s in scores]


print(f"bench_likelihood: size {args.size}, device {describe(args.device)}, {str(dtype).replace('torch.', '')}, "
      f"{args.examples} examples ({min(map(len, prompts))}..{max(map(len, prompts))} tokens), {args.labels} labels "
      f"of {min(map(len, label_ids))}..{max(map(len, label_ids))} tokens, batch {args.batch}")
rows = []
for name, fn in (("generate (8 new) + parse", generate_and_parse), ("label_logprobs", likelihood)):
    fn(prompts[:2])  # warm-up
    reset_peak_memory(args.device)
    with Timer(args.device) as t:
        preds = fn(prompts)
    rows.append({"variant": name, "examples": len(prompts), "seconds": t.seconds,
                 "examples/s": len(prompts) / t.seconds, "unparsed": sum(x is None for x in preds),
                 "peak_mem_GiB": peak_memory_gib(args.device)})
for r in rows:
    r["vs_generate"] = f"{r['examples/s'] / rows[0]['examples/s']:.2f}x"
print_table(rows)

# Correctness: label_logprobs (padded batch, shared cache) vs an unpadded prompt+label forward per label.
k = min(args.check, len(prompts))
got = inference.label_logprobs(model, prompts[:k], label_ids, batch_size=args.batch, progress=False)
worst = 0.0
with torch.no_grad():
    for i in range(k):
        for j, lab in enumerate(label_ids):
            ids = torch.tensor([prompts[i] + lab], device=args.device)
            logp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
            n = len(prompts[i])
            ref = sum(float(logp[n - 1 + t, lab[t]]) for t in range(len(lab)))
            worst = max(worst, abs(ref - got[i][j]))
print(f"label_logprobs vs unpadded per-label forward, first {k} examples x {args.labels} labels: "
      f"max |diff| {worst:.2e} nats")
