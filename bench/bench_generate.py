"""Greedy generation throughput: the pipeline's inference.generate against the naive style of the
original studies, in one process, on a random-weight LLaMA-architecture model.

  naive (fp32, 1 at a time) : fp32 weights, model.generate on one prompt at a time, no padding
  pipeline                  : the pipeline's dtype (--dtype auto: bf16 on a GPU, fp32 on CPU),
                              inference.generate: prompts sorted by length, left-padded, batched
  pipeline static cache     : the same with decoding {"cache": "static"} (a preallocated KV cache),
                              plus "compile": True on a GPU (transformers compiles the decoding
                              step; --no-compile turns that off)

Both models hold the same weights up to rounding (common.build_llama). The check after the table
compares each pipeline variant's new token ids with one-prompt-at-a-time greedy generation in the
pipeline's own dtype: batching must change nothing. (On CPU the pipeline's dtype is fp32, so the
naive run is that reference. In bf16 padding can flip a near-tie argmax; the line then shows where
outputs first differ.) Random weights seldom pick the end-of-sequence id, so most prompts run the
full --new-tokens; the rates count the new tokens actually generated.

Run:  python bench/bench_generate.py --size tiny --prompts 16 --new-tokens 16   (CPU, seconds)
      python bench/bench_generate.py --size 7b --prompts 64 --new-tokens 64     (GPU)
"""

import argparse

import torch
from common import (
    LORA,
    StubTokenizer,
    Timer,
    add_ratio,
    build_llama,
    compare_outputs,
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

from finetune_study import adapters, inference

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "1b", "7b"])
p.add_argument("--prompts", type=int, default=64)
p.add_argument("--new-tokens", type=int, default=64)
p.add_argument("--batch", type=int, default=64, help="inference.generate batch_size")
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"], help="pipeline dtype")
p.add_argument("--no-compile", action="store_true", help="static cache variant without torch.compile on a GPU")
p.add_argument("--lora", action="store_true", help="wrap in an (unmerged) LoRA adapter, as predict.py runs")
p.add_argument("--device", default=default_device())
args = p.parse_args()

dtype = pipeline_dtype(args.device, args.dtype)
on_gpu = str(args.device).startswith("cuda")
compile_ = on_gpu and not args.no_compile
tok = StubTokenizer()
prompts = [e["prompt"] for e in synthetic_examples(args.prompts, args.vocab, seed=1)]


def make_model(dt):
    model = build_llama(args.size, args.vocab, args.device, dt)
    if args.lora:
        model = adapters.lora_model(model, LORA, "CAUSAL_LM")
    return model.eval()


def pipeline(model, decoding):
    return lambda ps: [new for _, new in inference.generate(model, tok, ps, decoding, progress=False, with_ids=True)]


def timed(name, dt, fn, warm):
    """Warm up on `warm` prompts, then time fn on all of them: (row, outputs)."""
    fn(warm)
    reset_peak_memory(args.device)
    with Timer(args.device) as t:
        outs = fn(prompts)
    n_new = sum(map(len, outs))
    print(f"  {name}: {n_new / t.seconds:,.1f} new tokens/s ({t.seconds:.2f} s)", flush=True)  # survives a timeout
    return {
        "variant": name,
        "dtype": dtype_name(dt),
        "prompts": len(prompts),
        "new_tokens": n_new,
        "seconds": t.seconds,
        "new_tok/s": n_new / t.seconds,
        "prompts/s": len(prompts) / t.seconds,
        "peak_mem_GiB": peak_memory_gib(args.device),
    }, outs


print(
    f"bench_generate: size {args.size}, device {describe(args.device)}, pipeline {dtype_name(dtype)}"
    f"{' + LoRA' if args.lora else ''}, {args.prompts} prompts ({min(map(len, prompts))}..{max(map(len, prompts))} "
    f"tokens), max {args.new_tokens} new tokens, greedy, batch {args.batch}"
)
base = {"max_new_tokens": args.new_tokens, "batch_size": args.batch}
static = dict(base, cache="static", compile=compile_)
names = {
    "naive": "naive (fp32, 1 at a time)",
    "pipe": f"pipeline (batch {args.batch})",
    "static": "pipeline static cache" + (" +compile" if compile_ else ""),
}
rows, outputs = [], {}

naive_model = make_model(torch.float32)
row, outputs["naive"] = timed(
    names["naive"], torch.float32, lambda ps: generate_one_at_a_time(naive_model, ps, args.new_tokens), prompts[:2]
)
rows.append(row)
if dtype == torch.float32:
    model = naive_model  # same dtype, same weights: one model, and the naive outputs are the reference
else:
    del naive_model
    free_memory(args.device)
    model = make_model(dtype)
# Batched variants warm up on every prompt: the same batch shapes as the timed run (compile included).
row, outputs["pipe"] = timed(names["pipe"], dtype, pipeline(model, base), prompts)
rows.append(row)
row, outputs["static"] = timed(names["static"], dtype, pipeline(model, static), prompts)
rows.append(row)
if dtype == torch.float32:
    reference = outputs["naive"]
else:
    reference = generate_one_at_a_time(model, prompts, args.new_tokens)
for r, key in zip(rows[1:], ("pipe", "static")):
    same, _ = compare_outputs(outputs[key], reference)
    r["same_as_1x1"] = f"{same}/{len(prompts)}"
add_ratio(rows, "new_tok/s", rows[0], "vs_naive")
print_table(rows)
print(
    f"same_as_1x1: prompts whose new token ids equal one-prompt-at-a-time greedy generate in {dtype_name(dtype)} "
    f"(the pipeline's dtype); peak_mem: "
    + ("torch.cuda.max_memory_allocated (weights included)" if on_gpu else "process max RSS so far")
)
for key in ("pipe", "static"):
    same, first = compare_outputs(outputs[key], reference)
    line = (
        "all identical"
        if same == len(prompts)
        else f"{len(prompts) - same} differ, first at new-token positions {first[:20]}"
    )
    print(f"batched == unbatched, {names[key]}: {same}/{len(prompts)} identical; {line}")
