"""Snakemake script: one fine-tune (LoRA, DoRA, IA3, prompt or prefix tuning, full, QLoRA) of one
model on one task; writes what it trained (a PEFT adapter, or the whole model for `full`) and a
training log with the trainable and total parameter counts.

Run by rule finetune (rules/finetune.smk), once per model x method x seed; the method comes from
the run's name (<method>-s<seed>, or <method>-<grid point>-s<seed>) and the settings key. Checkpoints go under checkpoint_dir
(outside the declared outputs) in a folder named by keys.resume_key: the settings, the code, the
content of the train/validation splits and the base weights. So a killed or resubmitted job resumes,
and a run with any other input starts afresh. After success the run folder's other resume keys
(superseded inputs) are deleted, and so are its own checkpoints unless keep_checkpoints is set.
Causal LMs learn prompt -> label with the loss on the answer tokens only; encoders train the
method's parameters plus their classification head.
"""

import json
from pathlib import Path

from lora_pipeline import adapters, checkpoints, common, heads, keys, models, prompting, training

s = json.loads(snakemake.params.settings)
spec, labels, tcfg = s["model"], s.get("labels"), s["finetune"]["training"]
method = s["finetune"].get("method", "lora")
run = Path(snakemake.output.train_log).parent.relative_to("results")
# how often to checkpoint changes no result (resuming is exact), so it is not in the key: read the config
entry = keys.finetune_entry(
    snakemake.config["tasks"][snakemake.wildcards.task], snakemake.wildcards.model, method, keys.run_point(run.name)
)
tcfg["checkpoint_every"] = entry["training"]["checkpoint_every"]
use_chat = spec.get("chat_template", False)
# the matmuls run in the resolved dtype; a full fine-tune loads its weights in its master dtype
# (float32 under dtype auto) and autocasts (precision.master_dtype)
compute_dtype = models.DTYPES[spec["dtype"]]
load_spec = {**spec, "dtype": s["finetune"]["master_dtype"]} if method == "full" else spec
ckpt_dir = (
    Path(snakemake.config["checkpoint_dir"])
    / run
    / keys.resume_key(
        s, snakemake.params.code, [snakemake.input.train, snakemake.input.validation], snakemake.input.model
    )
)

with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    common.seed_everything(tcfg["seed"])
    tok = models.load_tokenizer(snakemake.input.model, spec["trust_remote_code"], padding_side="right")
    splits = {k: common.read_jsonl(snakemake.input[k]) for k in ("train", "validation")}
    if spec["type"] == "encoder":
        model = models.load_classifier(snakemake.input.model, load_spec, labels, seed=tcfg["seed"])
        print(f"classification head: {model.head_kind}")
        # heads.encode: the tokenization predict.py's classify uses too (same truncation, right padding)
        examples = {
            k: [
                {"input_ids": ids, "labels": labels.index(r["label"])}
                for r, ids in zip(rows, heads.encode(tok, [r["text"] for r in rows], tcfg["max_length"]))
            ]
            for k, rows in splits.items()
        }
        task_type = "SEQ_CLS"
    else:
        model = models.load_causal_lm(
            snakemake.input.model, load_spec, quantize=adapters.NF4 if method == "qlora" else None
        )
        examples = {}
        for k, rows in splits.items():
            examples[k] = []
            for r in rows:
                if s["task_type"] == "generation":  # instruction tuning: loss on the response only
                    prompt, answer = prompting.instruction_prompt(r, s["prompt_style"], tok), r["output"]
                else:
                    prompt = prompting.build_prompt(r["text"], s["prompt"], labels, tok, use_chat)
                    answer = prompting.answer_text(r["label"], s["prompt"], use_chat)
                ids, lab = prompting.encode_prompt_answer(tok, prompt, answer, tcfg["max_length"])
                examples[k].append({"input_ids": ids, "labels": lab})
        task_type = "CAUSAL_LM"
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
    log["provenance"] = keys.provenance(
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
