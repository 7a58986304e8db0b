"""Greedy generation throughput of the two backends a generation job can run (decoding.backend), on a
random-weight LLaMA-architecture model (common.build_llama), in one process.

  transformers : the pipeline's own inference.generate, prompts sorted by length and left-padded
                 in batches, with a static KV cache, compiled on a GPU (decoding cache: static,
                 compile: true; transformers compiles on a GPU only)
  vllm         : vLLM on the same weights, saved to a temporary folder as safetensors, through the
                 pipeline's vllm_backend (engine_args, sampling_kwargs); skipped, with a line
                 saying so, where vllm is not installed

One row per backend and prompt count: new tokens per second, and for vllm the greedy agreement
with transformers (prompts whose new token ids are identical, each cut after its first EOS). Both
run in the pipeline's dtype (--dtype auto: bf16 on a GPU, fp32 on a CPU).

Run:  python bench/bench_generate_backends.py --size tiny --prompts 8 --new-tokens 8      (CPU smoke)
      python bench/bench_generate_backends.py --size 7b --prompts 64 256 --new-tokens 128 --json out.json
"""

import argparse
import importlib.util
import json
import os
import tempfile

from common import (
    EOS_ID,
    StubTokenizer,
    Timer,
    build_llama,
    default_device,
    describe,
    dtype_name,
    free_memory,
    pipeline_dtype,
    print_table,
    synthetic_examples,
)

from finetune_study import inference, vllm_backend

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "1b", "7b"])
p.add_argument("--prompts", type=int, nargs="+", default=[64, 256], help="prompt counts, one row each")
p.add_argument("--new-tokens", type=int, default=128)
p.add_argument("--batch", type=int, default=64, help="inference.generate batch_size (transformers)")
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
p.add_argument("--device", default=default_device())
p.add_argument("--json", help="also write the rows to this JSON file")
args = p.parse_args()

dtype = pipeline_dtype(args.device, args.dtype)
on_gpu = str(args.device).startswith("cuda")
prompt_sets = {n: [e["prompt"] for e in synthetic_examples(n, args.vocab, seed=1)] for n in args.prompts}
decoding = {"max_new_tokens": args.new_tokens, "batch_size": args.batch, "cache": "static", "compile": on_gpu}


def upto_eos(ids):
    return ids[: ids.index(EOS_ID) + 1] if EOS_ID in ids else list(ids)


def row(backend, prompts, outs, seconds):
    n_new = sum(len(upto_eos(o)) for o in outs)
    return {
        "backend": backend,
        "prompts": len(prompts),
        "new_tokens": n_new,
        "seconds": seconds,
        "new_tok/s": n_new / seconds,
    }


print(
    f"bench_generate_backends: size {args.size}, device {describe(args.device)}, {dtype_name(dtype)}, prompts "
    f"{args.prompts}, max {args.new_tokens} new tokens, greedy"
)
rows, reference = [], {}
model = build_llama(args.size, args.vocab, args.device, dtype).eval()
tok = StubTokenizer()
label = "transformers (static cache" + (" + compile)" if on_gpu else ")")
for n, prompts in prompt_sets.items():
    inference.generate(model, tok, prompts[: args.batch], decoding, progress=False)  # warm-up (and compile)
    with Timer(args.device) as t:
        outs = [new for _, new in inference.generate(model, tok, prompts, decoding, progress=False, with_ids=True)]
    reference[n] = [upto_eos(o) for o in outs]
    rows.append(row(label, prompts, outs, t.seconds))
    print(f"  {label}, {n} prompts: {rows[-1]['new_tok/s']:,.1f} new tokens/s", flush=True)

if importlib.util.find_spec("vllm") is None:
    print("vllm: not installed (docs/decoding.md#generation-backends); transformers rows only")
else:
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process, as vllm_backend runs it
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder, safe_serialization=True)  # vLLM loads safetensors from a folder
        del model
        free_memory(args.device)
        spec = {"dtype": dtype_name(dtype), "trust_remote_code": False}
        engine = vllm_backend.engine_args(folder, None, spec, {"tensor_parallel": 1}, None)
        # token ids in, token ids out: no tokenizer for random weights; EOS from the model's config
        llm = LLM(**dict(engine, tokenizer=None, skip_tokenizer_init=True))
        params = SamplingParams(**vllm_backend.sampling_kwargs(decoding), detokenize=False)
        for n, prompts in prompt_sets.items():
            inputs = [TokensPrompt(prompt_token_ids=x) for x in prompts]
            llm.generate(inputs[: args.batch], params, use_tqdm=False)  # warm-up
            with Timer(args.device) as t:
                outs = [list(o.outputs[0].token_ids) for o in llm.generate(inputs, params, use_tqdm=False)]
            r = row("vllm", prompts, outs, t.seconds)
            same = sum(upto_eos(a) == b for a, b in zip(outs, reference[n]))
            r["greedy_agreement"] = f"{same}/{n}"
            rows.append(r)
            print(f"  vllm, {n} prompts: {r['new_tok/s']:,.1f} new tokens/s, {same}/{n} as transformers", flush=True)

print_table(rows)
if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(
            {"args": vars(args), "device": describe(args.device), "dtype": dtype_name(dtype), "rows": rows}, f, indent=1
        )
