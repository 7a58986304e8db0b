"""LoRA (or qlora) fine-tuning throughput over a grid of token-sized steps, through the pipeline's
own training step: the model is built once, then for every grid point the micro-batches come from
batching.stream (training.tokens_per_step, packed rows of --pack tokens), each optimizer step is
training.step_scales + training.take_step (the function training.train calls), and kernels and
checkpointing are the ones training_options applies. Prints one table and, with --json, writes it.

  python bench/bench_train_sweep.py --size tiny --tokens 1024 2048 --pack 256 512 --steps 2
  python bench/bench_train_sweep.py --size 7b --tokens 16384 32768 65536 --pack 2048 4096 \
      --ckpt off on --kernels none liger --budget-s 240 --json /tmp/sweep.json

The grid runs in the order kernels (none first: Liger's patches cannot be taken off a model) >
pack > checkpointing > tokens. A point is skipped, with the reason in its row, when liger cannot
run here (no CUDA, not installed), when a smaller step with the same micro-batch already ran out of
memory (the micro-batch, --micro-tokens, sets the memory; a larger step only accumulates more of
them), or when its predicted time (steps x tokens at the last measured rate of its pack and
checkpointing) does not fit what is left of --budget-s.
"""

import argparse
import importlib.util
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (  # noqa: E402
    LORA,
    PAD_ID,
    Timer,
    build_llama,
    default_device,
    describe,
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

from finetune_study import adapters, batching, training, training_options  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--size", default="tiny", choices=["tiny", "135m", "1b", "7b"])
p.add_argument("--method", default="lora", choices=["lora", "qlora"])
p.add_argument("--tokens", type=int, nargs="+", default=[16384, 32768, 65536], help="tokens_per_step values")
p.add_argument("--pack", type=int, nargs="+", default=[2048, 4096], help="pack_length values")
p.add_argument("--ckpt", nargs="+", default=["off", "on"], choices=["off", "on"])
p.add_argument("--kernels", nargs="+", default=["none", "liger"], choices=["none", "liger"])
p.add_argument("--micro-tokens", type=int, default=16384, help="tokens of one micro-batch (rows x pack)")
p.add_argument("--steps", type=int, default=2, help="timed optimizer steps per point")
p.add_argument("--warmup", type=int, default=1, help="untimed optimizer steps per point")
p.add_argument("--budget-s", type=float, default=240, help="seconds for the whole grid, model build included")
p.add_argument(
    "--compile",
    nargs="+",
    default=["off"],
    choices=["off", "on"],
    help="torch.compile the decoder stack (training.compile); 'off on' runs every point both ways",
)
p.add_argument("--device", default=default_device())
p.add_argument("--dtype", default="auto")
p.add_argument("--vocab", type=int, default=32000)
p.add_argument("--json", help="write the rows here")
args = p.parse_args()
start = time.perf_counter()
cuda = str(args.device).startswith("cuda")
dtype = pipeline_dtype(args.device, args.dtype)


def liger_problem():
    if not cuda:
        return "liger needs a CUDA GPU"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel not installed (pip install -e '.[liger]')"
    return None


def quantize_nf4(model):
    """The decoder's linear layers as bitsandbytes 4-bit nf4 (adapters.NF4's settings), in place on
    the GPU: what models.load_causal_lm(quantize='nf4') gives from a checkpoint, for random weights."""
    import bitsandbytes as bnb

    for module in list(model.model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                q = bnb.nn.Linear4bit(
                    child.in_features,
                    child.out_features,
                    bias=child.bias is not None,
                    compute_dtype=torch.bfloat16,
                    compress_statistics=True,
                    quant_type="nf4",
                    device="meta",
                )
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4").to(args.device)
                setattr(module, name, q)
    model.is_loaded_in_4bit = True
    torch.cuda.empty_cache()
    return model


def build():
    model = build_llama(args.size, args.vocab, args.device, dtype)
    matmul = n_params(model)
    if args.method == "qlora":
        model = adapters.qlora_model(quantize_nf4(model), LORA, "CAUSAL_LM", gradient_checkpointing=False)
    else:
        model = adapters.lora_model(model, LORA, "CAUSAL_LM")
    return model.train(), matmul


def set_checkpointing(model, on):
    base = model.get_base_model()
    if on and not base.is_gradient_checkpointing:
        training_options.enable_checkpointing(model)
    elif not on and base.is_gradient_checkpointing:
        base.gradient_checkpointing_disable()


def set_compiled(model, on):
    """training_options.compile_backbone, or back to eager (nn.Module.compile's wrapper dropped)."""
    backbone = model.get_base_model().model
    if on and backbone._compiled_call_impl is None:
        training_options.compile_backbone(model)
    elif not on:
        backbone._compiled_call_impl = None


def run_point(model, examples, cfg, matmul):
    """Warm-up and timed optimizer steps of one grid point; its row."""
    stream = batching.stream(examples, cfg, "CAUSAL_LM", PAD_ID)
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    acc = cfg["gradient_accumulation"]
    free_memory(args.device)
    reset_peak_memory(args.device)

    def step(s):
        micro = [stream.get(m) for m in range(s * acc, (s + 1) * acc)]
        scales = training.step_scales(micro, stream.weighted, "CAUSAL_LM")
        _, real, computed = training.take_step(
            model, None, micro, scales, params, opt, sched, args.device, dtype, "CAUSAL_LM"
        )
        return real, computed

    with Timer(args.device) as warm:  # compilation, where compiled, happens here
        for s in range(args.warmup):
            step(s)
    real = computed = 0
    with Timer(args.device) as t:
        for s in range(args.warmup, args.warmup + args.steps):
            r, c = step(s)
            real, computed = real + r, computed + c
    rate, peak = real / t.seconds, peak_flops(args.device)
    return {
        "real_tok/s": rate,
        "computed_tok/s": computed / t.seconds,
        "pad_frac": 1 - real / computed,
        "MFU": 4 * matmul * rate / peak if peak else None,
        "peak_GiB": peak_memory_gib(args.device),
        "s/step": t.seconds / args.steps,
        "warmup_s": warm.seconds,
    }


def static_skip(tokens, pack, kernels):
    """Why a point cannot run whatever happens before it, or None."""
    micro = min(args.micro_tokens, tokens)
    if tokens % pack or micro % pack or tokens % micro:
        return f"{tokens} tokens are not whole micro-batches of {micro} / rows of {pack}"
    return liger_problem() if kernels == "liger" else None


def grid():
    """The points in run order: kernels (none first) > pack > checkpointing > tokens > compile."""
    return [
        {"method": args.method, "tokens/step": t, "pack": pk, "ckpt": c, "kernels": k, "compile": comp}
        for k in args.kernels
        for pk in args.pack
        for c in args.ckpt
        for t in sorted(args.tokens)
        for comp in args.compile
    ]


def main():
    rows = grid()
    for row in rows:
        why = static_skip(row["tokens/step"], row["pack"], row["kernels"])
        if why:
            row["result"] = f"skipped: {why}"
    if all("result" in r for r in rows):
        print("bench_train_sweep: every point is skipped; no model built")
        return finish(rows)
    model, matmul = build()
    print(
        f"bench_train_sweep: {args.method} on {args.size} ({matmul / 1e9:.2f}B matmul params), {describe(args.device)}, "
        f"{str(dtype).replace('torch.', '')}, micro-batch {args.micro_tokens} tokens, {args.steps} timed + "
        f"{args.warmup} warm-up steps a point, budget {args.budget_s:.0f} s; built in {time.perf_counter() - start:.0f} s",
        flush=True,
    )
    need = max(args.tokens) * (args.steps + args.warmup)
    examples = {  # prompts of 32..480 tokens (~260 with the answer), shorter where a row is shorter
        pack: synthetic_examples(math.ceil(1.15 * need / 260) + 16, args.vocab, prompt_len=(32, min(480, pack - 8)))
        for pack in args.pack
    }
    oom, rate, liger_on = set(), {}, False
    for row in rows:
        if "result" in row:
            print(row, flush=True)
            continue
        tokens, pack, ckpt, kernels = row["tokens/step"], row["pack"], row["ckpt"], row["kernels"]
        micro = min(args.micro_tokens, tokens)
        left, why = args.budget_s - (time.perf_counter() - start), None
        if (kernels, pack, ckpt, micro) in oom:
            why = "predicted OOM: a smaller step with this micro-batch ran out of memory"
        elif (pack, ckpt) in rate and (args.steps + args.warmup) * tokens / rate[(pack, ckpt)] + 5 > left:
            predicted = (args.steps + args.warmup) * tokens / rate[(pack, ckpt)] + 5
            why = f"over the time budget (predicted {predicted:.0f} s, {left:.0f} s left)"
        elif left < 10:
            why = f"over the time budget ({left:.0f} s left)"
        if why:
            row["result"] = f"skipped: {why}"
            print(row, flush=True)
            continue
        if kernels == "liger" and not liger_on:
            training_options.apply_liger(model)
            liger_on = True
        set_checkpointing(model, ckpt == "on")
        set_compiled(model, row["compile"] == "on")
        cfg = {
            "seed": 0,
            "packing": True,
            "pack_length": pack,
            "max_length": pack,
            "tokens_per_step": tokens,
            "gradient_accumulation": tokens // micro,
        }
        try:
            row.update(run_point(model, examples[pack], cfg, matmul))
            rate[(pack, ckpt)] = row["computed_tok/s"]
            row["result"] = "ok"
        except (RuntimeError, torch.OutOfMemoryError) as err:
            if not is_oom(err):
                raise
            oom.add((kernels, pack, ckpt, micro))
            row["result"] = "OOM"
            model.zero_grad(set_to_none=True)
            free_memory(args.device)
        print(row, flush=True)
    finish(rows)


def finish(rows):
    print_table(rows)
    print(
        "real_tok/s: the examples' tokens per second (tokens/step counts packed rows x pack, padding "
        "included); MFU: 4 x matmul params x real_tok/s / 989e12 (bf16 dense peak, H100/H200); peak_GiB: "
        + ("torch.cuda.max_memory_allocated per point" if cuda else "process max RSS so far (CPU)")
    )
    if args.json:
        with open(args.json + ".tmp", "w") as f:
            json.dump(rows, f, indent=1)
        os.replace(args.json + ".tmp", args.json)


main()
