"""Which floating-point type a model stage computes in: `dtype: auto` resolved once, at parse time.

`auto` becomes bfloat16 where the hardware computes it natively and float32 elsewhere:
- a model whose jobs request a GPU (`resources.gpus > 0`), or a machine with an NVIDIA device:
  bfloat16 (every GPU since Ampere has bf16 tensor cores);
- a CPU that reports native bf16 instructions: on x86 the `avx512_bf16` or `amx_bf16` flags, on
  Arm the `bf16` feature (both read from /proc/cpuinfo, what the CPU itself reports), or on macOS
  `hw.optional.arm.FEAT_BF16`;
- float32 otherwise. An explicit `dtype:` always wins.

The resolved name is what every model stage's key holds (keys.model_settings), what the job loads
the base weights in, what its provenance records and what the report shows per row. So a float32
result is never served for a bfloat16 run, nor the reverse; moving the results to a machine
without bf16 reruns the model stages once, in float32.

Only the frozen base weights and the matmuls run in bfloat16. What is trained (LoRA and the other
methods' parameters, classification heads, prompt embeddings), the optimizer state and the loss
stay float32 (training.train: autocast around a float32 master copy). A `full` fine-tune under
`auto` keeps float32 master weights as well (master_dtype); with an explicit `dtype: bfloat16` it
trains the bfloat16 weights themselves.

Standard library only: it runs at Snakemake parse time.
"""

import functools
import os
import platform
import subprocess

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags; Arm lists "bf16" among its Features


def cpu_flags_have_bf16(cpuinfo: str) -> bool:
    """Whether a /proc/cpuinfo text lists a native bf16 instruction set (x86 avx512_bf16 / amx_bf16,
    Arm bf16)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            words = set(value.split())
            if words & set(BF16_CPU_FLAGS) or "bf16" in words:
                return True
    return False


@functools.lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """What this machine's CPU reports (see cpu_flags_have_bf16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return cpu_flags_have_bf16(f.read())
    except OSError:
        pass
    if platform.system() == "Darwin":
        try:
            out = subprocess.run(
                ["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5
            )
            return out.stdout.strip() == "1"
        except (OSError, subprocess.SubprocessError):
            return False
    return False


@functools.lru_cache(maxsize=None)
def machine_has_gpu() -> bool:
    """An NVIDIA device node on this machine (without importing torch: parse time stays fast),
    unless CUDA_VISIBLE_DEVICES hides every GPU ('' or -1: the jobs then run on the CPU)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")


def resolve(requested: str, gpus: int = 0) -> str:
    """The dtype a model stage runs in: `requested` unless it is 'auto' (see the module docstring)."""
    if requested != "auto":
        return requested
    if gpus > 0 or machine_has_gpu() or cpu_has_native_bf16():
        return "bfloat16"
    return "float32"


def model_dtype(model: dict) -> str:
    """The resolved dtype of a validated config's model entry."""
    return resolve(model["dtype"], model.get("resources", {}).get("gpus", 0))


def master_dtype(model: dict, method: str) -> str:
    """What a fine-tune trains and stores its trained weights in. Everything but `full` trains small
    float32 parameters on frozen base weights. `full` trains every weight: float32 masters under
    `dtype: auto` (the matmuls still run in the resolved dtype), the requested dtype otherwise."""
    if method != "full" or model["dtype"] == "auto":
        return "float32"
    return model["dtype"]
