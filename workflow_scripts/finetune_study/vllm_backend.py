"""Generation through vLLM, for the jobs whose stage key says `backend: vllm` (backends.py decides
at parse time). Imported only by such a job: vllm itself is imported inside, so a CPU install never
needs it.

The base model loads once; a LoRA fine-tune is served as saved, through a LoRARequest on that base
(no merged copy of the weights per adapter); a `full` fine-tune loads as its own model (with the
base's tokenizer). `tensor_parallel` (the model's resources.gpus) shards the model across that
many GPUs. The prompts go in as token ids, the same ids transformers gets, and each output is
decoded with the job's tokenizer and cut at its first stop string exactly as inference.generate
does, so the two backends' texts differ only where their arithmetic does.
"""

import json
import os
from pathlib import Path

from .decoding import cut_at_stop

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM takes


def sampling_kwargs(decoding, index=0):
    """vLLM SamplingParams arguments for a decoding entry, the counterpart of
    decoding.to_generate_kwargs: greedy is temperature 0; sampling takes temperature, top_k (0: no
    limit in both libraries), top_p and a seed per prompt (the decoding's seed + the prompt's index:
    vLLM seeds each request, transformers each batch); stop strings end the output, dropped."""
    kw = {
        "n": 1,
        "max_tokens": int(decoding.get("max_new_tokens", 8)),
        "repetition_penalty": float(decoding.get("repetition_penalty", 1.0)),
        "skip_special_tokens": True,
    }
    if decoding.get("do_sample"):
        kw.update(
            temperature=float(decoding.get("temperature", 1.0)),
            top_k=int(decoding.get("top_k", 0)),
            top_p=float(decoding.get("top_p", 1.0)),
            seed=int(decoding.get("seed", 0)) + index,
        )
    else:
        kw.update(temperature=0.0, top_k=0, top_p=1.0)
    if decoding.get("stop"):
        kw["stop"] = list(decoding["stop"])
    return kw


def lora_rank(adapter):
    """The max_lora_rank vLLM needs for a saved adapter: its r, rounded up to a rank vLLM takes."""
    r = json.loads((Path(adapter) / "adapter_config.json").read_text(encoding="utf-8"))["r"]
    return next(x for x in LORA_RANKS if x >= r)


def engine_args(model_dir, adapter, spec, decoding, kind):
    """The vllm.LLM arguments for a job: the base (or a full fine-tune's folder), its dtype, the
    tensor-parallel size, and LoRA switched on for an adapter (kind: models.artifact_kind)."""
    kw = {
        "model": str(adapter if kind == "full" else model_dir),
        "tokenizer": str(model_dir),
        "dtype": spec["dtype"],
        "tensor_parallel_size": int(decoding.get("tensor_parallel", 1)),
        "seed": int(decoding.get("seed", 0)),
        "trust_remote_code": bool(spec["trust_remote_code"]),
    }
    if kind == "peft":
        kw.update(enable_lora=True, max_loras=1, max_lora_rank=lora_rank(adapter))
    return kw


class Generator:
    """generate(tokenizer, prompt_token_ids, decoding, with_ids=False): like inference.generate."""

    def __init__(self, model_dir, adapter, spec, decoding):
        # the engine in this process: a Snakemake script is no __main__-guarded module to spawn from
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        from .models import artifact_kind

        kind = artifact_kind(adapter)
        self.llm = LLM(**engine_args(model_dir, adapter, spec, decoding, kind))
        self.lora = None
        if kind == "peft":
            from vllm.lora.request import LoRARequest

            self.lora = LoRARequest("adapter", 1, str(adapter))

    def generate(self, tokenizer, prompt_token_ids, decoding, with_ids=False, progress=True):
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = [SamplingParams(**sampling_kwargs(decoding, i)) for i in range(len(prompt_token_ids))]
        prompts = [TokensPrompt(prompt_token_ids=list(p)) for p in prompt_token_ids]
        outs = self.llm.generate(prompts, params, lora_request=self.lora, use_tqdm=progress)
        result = []
        for o in outs:
            new = list(o.outputs[0].token_ids)
            text = cut_at_stop(tokenizer.decode(new, skip_special_tokens=True), decoding.get("stop"))
            result.append((text, new) if with_ids else text)
        return result
