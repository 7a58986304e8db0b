"""Shared helpers for the bench/ scripts: a random-weight LLaMA-architecture model, synthetic
prompt/answer examples, a tokenizer stub, timing, peak memory, peak FLOPs and a table printer.

Not run directly; the bench_*.py scripts import it (`from common import ...`). Importing it puts
<repo>/workflow_scripts on sys.path, so `from lora_pipeline import training, inference` works.
"""
import os
import random
import resource
import sys
import time
import warnings

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "workflow_scripts"))
warnings.filterwarnings("ignore", message=".*removed in v6.*", category=FutureWarning)  # peft on transformers 5: noise

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2   # synthetic token ids are drawn from [FIRST_ID, vocab), never these
FIRST_ID = 10

SIZES = {
    # name: hidden, layers, heads, kv heads, intermediate
    "tiny": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                 intermediate_size=344),
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192),
    "7b": dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
               intermediate_size=11008),
}

LORA = {"r": 16, "alpha": 32, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def pipeline_dtype(device, name="auto"):
    """The pipeline's usual dtype: bf16 on a GPU, fp32 on CPU (or the one named)."""
    if name != "auto":
        return DTYPES[name]
    return torch.bfloat16 if str(device).startswith("cuda") else torch.float32


def build_llama(size, vocab=32000, device="cpu", dtype=torch.float32):
    """LlamaForCausalLM with random weights, built directly on `device` in `dtype`, SDPA attention."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=4096, pad_token_id=PAD_ID, bos_token_id=BOS_ID,
                      eos_token_id=EOS_ID, tie_word_embeddings=False, **SIZES[size])
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(cfg, dtype=dtype, attn_implementation="sdpa")
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
        out.append({"input_ids": prompt + answer, "labels": [-100] * len(prompt) + answer,
                    "prompt": prompt, "answer": answer})
    return out


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
