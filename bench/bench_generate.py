"""Greedy generation throughput: the pipeline's inference.generate (prompts sorted by length,
left-padded, batched) against the naive style of the original studies (model.generate on one
prompt at a time), in one process, on the same random-weight LLaMA-architecture model.

Also checks that batching changes nothing: each prompt's batched new tokens are compared with
its unbatched ones. (In fp32 they should all match; bf16 padding can flip a near-tie argmax.)
Random weights rarely pick the end-of-sequence id, so most prompts run the full --new-tokens;
the rates count the new tokens actually generated.

Run:  python bench/bench_generate.py --size tiny --prompts 16 --new-tokens 16   (CPU, seconds)
      python bench/bench_generate.py --size 7b --prompts 64 --new-tokens 64     (GPU)
"""
import argparse

import torch

from common import (LORA, StubTokenizer, Timer, build_llama, default_device, describe, peak_memory_gib,
                    pipeline_dtype, print_table, reset_peak_memory, synthetic_examples)
from lora_pipeline import inference, training

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "1b", "7b"])
p.add_argument("--prompts", type=int, default=64)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--batch", type=int, default=64, help="inference.generate batch_size")
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="auto: bf16 GPU, fp32 CPU")
p.add_argument("--lora", action="store_true", help="wrap in an (unmerged) LoRA adapter, as predict.py runs")
p.add_argument("--device", default=default_device())
args = p.parse_args()

dtype = pipeline_dtype(args.device, args.dtype)
model = build_llama(args.size, args.vocab, args.device, dtype)
if args.lora:
    model = training.lora_model(model, LORA, "CAUSAL_LM")
model.eval()
tok = StubTokenizer()
prompts = [e["prompt"] for e in synthetic_examples(args.prompts, args.vocab, seed=1)]
decoding = {"max_new_tokens": args.new_tokens, "batch_size": args.batch}


@torch.no_grad()
def naive(prompt_list):
    outs = []
    for prompt in prompt_list:
        ids = torch.tensor([prompt], device=args.device)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
        outs.append(out[0, len(prompt):].tolist())
    return outs


def pipeline(prompt_list):
    return [new for _, new in inference.generate(model, tok, prompt_list, decoding, progress=False, with_ids=True)]


print(f"bench_generate: size {args.size}, device {describe(args.device)}, {str(dtype).replace('torch.', '')}"
      f"{' + LoRA' if args.lora else ''}, {args.prompts} prompts "
      f"({min(map(len, prompts))}..{max(map(len, prompts))} tokens), max {args.new_tokens} new tokens, greedy")
rows, outputs = [], {}
for name, fn in (("naive (1 at a time)", naive), (f"pipeline (batch {args.batch})", pipeline)):
    fn(prompts[:2])  # warm-up
    reset_peak_memory(args.device)
    with Timer(args.device) as t:
        outputs[name] = fn(prompts)
    n_new = sum(map(len, outputs[name]))
    rows.append({"variant": name, "prompts": len(prompts), "new_tokens": n_new, "seconds": t.seconds,
                 "new_tok/s": n_new / t.seconds, "prompts/s": len(prompts) / t.seconds,
                 "peak_mem_GiB": peak_memory_gib(args.device)})
for r in rows:
    r["vs_naive"] = f"{r['new_tok/s'] / rows[0]['new_tok/s']:.2f}x"
print_table(rows)

a, b = outputs.values()
same = sum(x == y for x, y in zip(a, b))
print(f"batched == unbatched: {same}/{len(prompts)} prompts identical")
diverge = [next((k for k, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y)))
           for x, y in zip(a, b) if x != y]
if diverge:
    print(f"  differing prompts first differ at new-token positions {sorted(diverge)[:20]}")
