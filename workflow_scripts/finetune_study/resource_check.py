"""The parse-time check of what each model's jobs ask for: the weights against the memory its jobs
request, a fine-tune's share of weights, gradients and optimizer state against one of its devices
(sharding understood), a GPU-sized model without a GPU request under SLURM, no partition. Standard
library only (no torch), like config.py, which calls it."""

from . import precision, sharding
from .common import ConfigError, selected_tasks
from .sources import finetune_items, key_path, source_of

BYTES_PER_PARAM = {"float32": 4, "bfloat16": 2, "float16": 2}


def check_resources(config, default_resources=(), files=("config.yaml",)):
    """Catch at parse time what would otherwise die on the cluster: a model whose weights do not
    fit the memory its jobs ask for, a fine-tune whose share of weights, gradients and optimizer
    state does not fit one of its devices (sharding understood: FSDP divides it by the process
    count, DDP does not), a GPU-sized model without a GPU request, no partition. Each error names the
    config file that set the key (files: the config files in merge order)."""

    def source(*parts):
        return source_of(parts, files)

    used = {m for t in selected_tasks(config).values() for m in t["models"] + list(t["finetune"])}
    slurm = config["executor"] == "slurm"
    if slurm and "slurm_partition" not in default_resources:
        raise ConfigError(
            f"{source('executor')}: executor: slurm, but no slurm_partition in default-resources; set it in profiles/slurm/config.yaml "
            "(or LORA_SLURM_PARTITION)"
        )
    for name in sorted(used):
        model = config["models"][name]
        res = model["resources"]
        dtype = precision.model_dtype(model)  # 'auto' resolved: bf16 on a GPU or a bf16 CPU, else float32
        need = model["params_b"] * BYTES_PER_PARAM[dtype] * 1.25  # GB: weights + 25% working memory
        if res["gpus"] > 0 and res["gpu_mem_gb"] > 0:
            have, what = res["gpus"] * res["gpu_mem_gb"], "resources.gpus x gpu_mem_gb"
        elif res["gpus"] > 0:
            have = None  # GPU size unknown: nothing to compare
        else:
            have, what = res["mem_mb"] / 1000, "resources.mem_mb"
        if have is not None and need > have:
            raise ConfigError(
                f"{source('models', name)}: models.{name}: {model['params_b']}B parameters in {dtype} need about {need:.0f} GB, "
                f"but its jobs ask for {have:.0f} GB ({what}); raise it or pick a smaller model or dtype"
            )
        if slurm and model["params_b"] >= 1 and res["gpus"] == 0:
            raise ConfigError(
                f"{source('models', name)}: models.{name}: a {model['params_b']}B model's jobs request no GPU; "
                f"set models.{name}.resources.gpus (and gpu_mem_gb)"
            )
    for task_name, task in selected_tasks(config).items():
        for m, ft, parts in finetune_items(task_name, task):
            _check_finetune_memory(config["models"][m], m, ft, f"{source(*parts)}: {key_path(parts)}")


def _check_finetune_memory(model, name, ft, where):
    """One fine-tune's memory on each of its devices (sharding.device_memory_gb) against one GPU's
    memory (resources.gpu_mem_gb), or on a CPU node against resources.mem_mb for the processes there."""
    res, dist = model["resources"], sharding.settings(model, ft)
    master = precision.master_dtype(model, ft["method"]) if ft["method"] == "full" else "float32"
    dtype = precision.model_dtype(model)
    one = sharding.device_memory_gb(
        model["params_b"], BYTES_PER_PARAM[dtype], ft["method"], dist, BYTES_PER_PARAM[master]
    )
    how = f"{dist['strategy']} over {dist['processes']} processes" if sharding.is_distributed(dist) else "one process"
    if res["gpus"] > 0:
        if res["gpu_mem_gb"] <= 0:
            return
        have, what = res["gpu_mem_gb"], f"models.{name}.resources.gpu_mem_gb"
        if sharding.is_distributed(dist) and res["gpus"] != sharding.per_node(dist):
            raise ConfigError(
                f"{where}.distributed: {sharding.per_node(dist)} processes per node, one per GPU, but "
                f"models.{name}.resources.gpus is {res['gpus']}; make them equal"
            )
    else:
        one *= sharding.per_node(dist) if sharding.is_distributed(dist) else 1
        have, what = res["mem_mb"] / 1000, f"models.{name}.resources.mem_mb"
    if one > have:
        hint = (
            "use strategy fsdp or more processes"
            if dist["strategy"] == "ddp" or not sharding.is_distributed(dist)
            else "use more processes"
        )
        raise ConfigError(
            f"{where}: a {ft['method']} fine-tune of {model['params_b']}B parameters ({how}) needs about "
            f"{one:.0f} GB on each device, but {what} is {have:.0f} GB; {hint}, or a smaller model"
        )
