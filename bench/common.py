"""Shared helpers for the bench/ scripts: a random-weight LLaMA-architecture model, synthetic
prompt/answer examples, a tokenizer stub, one-prompt-at-a-time greedy generation (the naive
style), timing, peak memory, peak FLOPs, output comparison and a table printer.

Not run directly; the bench_*.py scripts import it (`from common import ...`). Importing it puts
the installed finetune_study package (pip install -e .), so `from finetune_study import training, inference` works.
"""

import os
import random
import resource
import time
import warnings

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
warnings.filterwarnings("ignore", message=".*removed in v6.*", category=FutureWarning)  # peft on transformers 5: noise

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2  # synthetic token ids are drawn from [FIRST_ID, vocab), never these
FIRST_ID = 10

SIZES = {
    # name: hidden, layers, heads, kv heads, intermediate
    "tiny": dict(
        hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4, intermediate_size=344
    ),
    "135m": dict(  # SmolLM2-135M's shape, the default study's instruct model
        hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, intermediate_size=1536
    ),
    "1b": dict(
        hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8, intermediate_size=8192
    ),
    "7b": dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, intermediate_size=11008
    ),
}

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def pipeline_dtype(device, name="auto"):
    """The pipeline's dtype, from its own models.resolve_dtype: 'auto' is bf16 on a bf16-capable
    GPU and fp32 otherwise (CPU); any other name is that dtype."""
    from finetune_study.models import resolve_dtype

    return resolve_dtype(name, device)


def dtype_name(dtype):
    return str(dtype).replace("torch.", "")


def build_llama(size, vocab=32000, device="cpu", dtype=torch.float32):
    """LlamaForCausalLM with random weights, built directly on `device`, SDPA attention. The weights
    are drawn in fp32 from a fixed seed and then cast to `dtype` (one tensor at a time), so models
    of every dtype hold the same weights up to rounding."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        max_position_embeddings=4096,
        pad_token_id=PAD_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        tie_word_embeddings=False,
        **SIZES[size],
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(cfg, dtype=torch.float32, attn_implementation="sdpa")
    model.to(dtype)
    model.generation_config.pad_token_id = PAD_ID
    model.generation_config.eos_token_id = EOS_ID
    return model


def n_params(model, matmul_only=True):
    """Parameter count; matmul_only leaves out the input embedding (a lookup, no FLOPs)."""
    total = sum(p.numel() for p in model.parameters())
    if matmul_only:
        total -= model.get_input_embeddings().weight.numel()
    return total


class StubTokenizer:
    """Just what inference.generate needs: pad/eos ids and decode (ids joined by spaces)."""

    pad_token_id = PAD_ID
    eos_token_id = EOS_ID

    def decode(self, ids, skip_special_tokens=True):
        special = {PAD_ID, BOS_ID, EOS_ID}
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i in special))


def synthetic_examples(n, vocab=32000, seed=0, prompt_len=(32, 480), answer_len=(1, 8)):
    """n training-style examples {input_ids, labels, prompt, answer}: prompt length uniform in
    prompt_len, answer length uniform in answer_len, ids uniform in [FIRST_ID, vocab); labels
    mask the prompt with -100 like prompting.encode_prompt_answer."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt = [rng.randrange(FIRST_ID, vocab) for _ in range(rng.randint(*prompt_len))]
        answer = [rng.randrange(FIRST_ID, vocab) for _ in range(rng.randint(*answer_len))]
        out.append(
            {"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer, "prompt": prompt, "answer": answer}
        )
    return out


@torch.no_grad()
def generate_one_at_a_time(model, prompts, max_new_tokens):
    """The original studies' style: model.generate on each prompt alone (no padding, no attention
    mask needed), greedy. Returns each prompt's new token ids (EOS included when it ends early)."""
    dev = next(model.parameters()).device
    outs = []
    for prompt in prompts:
        ids = torch.tensor([prompt], device=dev)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=PAD_ID,
        )
        outs.append(out[0, len(prompt) :].tolist())
    return outs


def compare_outputs(a, b):
    """(number of identical sequences, sorted first differing positions of the others)."""
    same = sum(x == y for x, y in zip(a, b))
    first = sorted(
        next((k for k, (u, v) in enumerate(zip(x, y)) if u != v), min(len(x), len(y))) for x, y in zip(a, b) if x != y
    )
    return same, first


def add_ratio(rows, rate_key, base_row, column):
    """rows[i][column] = rows[i][rate_key] / base_row[rate_key] as '1.23x' ('-' where either is missing)."""
    base = base_row.get(rate_key) if base_row else None
    for r in rows:
        ok = isinstance(r.get(rate_key), float) and isinstance(base, float)
        r[column] = f"{r[rate_key] / base:.2f}x" if ok else "-"


def sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


class Timer:
    """with Timer(device) as t: ...  -> t.seconds (CUDA synchronized at both ends)."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        sync(self.device)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        sync(self.device)
        self.seconds = time.perf_counter() - self.t0


def reset_peak_memory(device):
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device):
    """GPU: max allocated since the last reset. CPU: the process's max RSS so far (never resets,
    so a later measurement in the same process is at least the earlier one)."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def free_memory(device):
    import gc

    gc.collect()
    if str(device).startswith("cuda"):
        torch.cuda.empty_cache()


def is_oom(err):
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()


def peak_flops(device):
    """Dense bf16 peak FLOP/s of the GPU, or None (CPU, unknown GPU)."""
    if not str(device).startswith("cuda"):
        return None
    name = torch.cuda.get_device_name()
    for key, flops in (("H100", 989e12), ("H200", 989e12), ("A100", 312e12)):
        if key in name:
            return flops
    return None


def describe(device):
    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name()
    return f"CPU, {torch.get_num_threads()} threads"


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        if abs(v) >= 0.01:
            return f"{v:.3f}"
        return f"{v:.2e}"
    return str(v)


def print_table(rows):
    """Print a list of dicts as aligned columns (keys of all rows, first-seen order)."""
    cols = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.rjust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths)))
