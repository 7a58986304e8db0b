"""Snakemake script: one fine-tune (LoRA, DoRA, IA3, prompt or prefix tuning, full, QLoRA) of one
model on one task; writes what it trained (a PEFT adapter, or the whole model for `full`) and a
training log with the trainable and total parameter counts.

Run by rule finetune (rules/finetune.smk), once per model x method x seed; the method comes from
the run's name (<method>-s<seed>, or <method>-<grid point>-s<seed>) and the settings key. Checkpoints go under checkpoint_dir
(outside the declared outputs) in a folder named by provenance.resume_key: the settings, the code, the
content of the train/validation splits and the base weights. So a killed or resubmitted job resumes,
and a run with any other input starts afresh. After success the run folder's other resume keys
(superseded inputs) are deleted, and so are its own checkpoints unless keep_checkpoints is set.
Causal LMs learn prompt -> label with the loss on the answer tokens only; encoders train the
method's parameters plus their classification head.
"""

import json
from pathlib import Path

from finetune_study import adapters, checkpoints, common, model_kinds, models, provenance, runs, tasks, training

TASK_PART = "training"  # tasks/<type>_training.py: how rows become examples (fingerprints.py)

s = json.loads(snakemake.params.settings)
spec, labels, tcfg = s["model"], s.get("labels"), s["finetune"]["training"]
method = s["finetune"].get("method", "lora")
run = Path(snakemake.output.train_log).parent.relative_to("results")
# how often to checkpoint changes no result (resuming is exact), so it is not in the key: read the config
entry = runs.finetune_entry(
    snakemake.config["tasks"][snakemake.wildcards.task], snakemake.wildcards.model, method, runs.run_point(run.name)
)
tcfg["checkpoint_every"] = entry["training"]["checkpoint_every"]
task_part = tasks.part(s["task_type"], TASK_PART)
# the matmuls run in the resolved dtype; a full fine-tune loads its weights in its master dtype
# (float32 under dtype auto) and autocasts (precision.master_dtype)
compute_dtype = models.DTYPES[spec["dtype"]]
load_spec = {**spec, "dtype": s["finetune"]["master_dtype"]} if method == "full" else spec
ckpt_dir = (
    Path(snakemake.config["checkpoint_dir"])
    / run
    / provenance.resume_key(
        s, snakemake.params.code, [snakemake.input.train, snakemake.input.validation], snakemake.input.model
    )
)

with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    common.seed_everything(tcfg["seed"])
    tok = models.load_tokenizer(snakemake.input.model, spec["trust_remote_code"], padding_side="right")
    splits = {k: common.read_jsonl(snakemake.input[k]) for k in ("train", "validation")}
    # examples first: a row the task type cannot train on is an error before the model loads
    examples = {k: task_part.examples(rows, tok, s, spec["type"]) for k, rows in splits.items()}
    task_type = s["peft_task_type"]  # the loss it trains with (loss.LOSSES), by task type and model kind
    kind = model_kinds.get(spec["type"])
    model = kind.load(
        snakemake.input.model,
        load_spec,
        labels=labels,
        seed=tcfg["seed"],
        quantize=adapters.NF4 if method == "qlora" else None,
        task_type=task_type,
    )
    if hasattr(model, "head_kind"):
        print(f"head: {model.head_kind}")
    if tcfg.get("eval_sample") and tcfg["eval_sample"] < len(examples["validation"]):
        examples["validation"] = training.eval_subsample(examples["validation"], tcfg["eval_sample"], tcfg["seed"])
        print(f"validation loss on {len(examples['validation'])} of {len(splits['validation'])} examples")
    model = adapters.trainable_model(model, s["finetune"], task_type, tcfg["gradient_checkpointing"])
    counts = adapters.parameter_counts(model)
    print(
        f"{method}: {counts['trainable']:,} trainable of {counts['total']:,} parameters "
        f"({100 * counts['trainable_share']:.4f}%)"
    )
    print(f"checkpoints: {ckpt_dir}")
    print(f"compute dtype {spec['dtype']}, trained weights {s['finetune'].get('master_dtype', 'float32')}")
    log = training.train(
        model,
        examples["train"],
        examples["validation"],
        tcfg,
        ckpt_dir,
        tok.pad_token_id,
        models.device(),
        compute_dtype,
        task_type=task_type,
    )
    with common.atomic_dir(snakemake.output.adapter) as tmp:
        adapters.save_trained(model, tmp, method, snakemake.input.model)
    log["method"], log["parameters"] = method, counts
    log["dtype"] = {"compute": spec["dtype"], "trained_weights": s["finetune"].get("master_dtype", "float32")}
    log["provenance"] = provenance.provenance(
        snakemake.params.code,
        {k: snakemake.input[k] for k in ("train", "validation")},
        snakemake.input.model,
        snakemake.output.adapter,
        spec["dtype"],
    )
    common.write_json(snakemake.output.train_log, log)
    for gone in checkpoints.remove_after_success(ckpt_dir, keep_own=snakemake.config["keep_checkpoints"]):
        print(f"removed checkpoints {gone}" + ("" if gone == ckpt_dir else " (superseded resume key)"))
    print(f"best step {log['best_step']} (val loss {log['best_val_loss']:.4f}); {method} weights saved")
