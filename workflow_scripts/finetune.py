"""Snakemake script: LoRA fine-tune of one model on one task; writes the PEFT adapter and a training log.

Run by rule finetune (rules/finetune.smk). Checkpoints go to params.checkpoints (outside the
declared outputs) so a killed or resubmitted job resumes. Causal LMs learn prompt -> label with
the loss on the answer tokens only; encoders train LoRA plus their classification head.
"""
import json

from lora_pipeline import common, models, prompting, training

s = json.loads(snakemake.params.settings)
spec, labels, tcfg = s["model"], s.get("labels"), s["finetune"]["training"]
use_chat = spec["chat_template"]

with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config)
    common.seed_everything(tcfg["seed"])
    tok = models.load_tokenizer(snakemake.input.model, spec["trust_remote_code"], padding_side="right")
    splits = {k: common.read_jsonl(snakemake.input[k]) for k in ("train", "validation")}
    if spec["type"] == "encoder":
        model = models.load_classifier(snakemake.input.model, spec, labels, seed=0)
        examples = {k: [{"input_ids": tok(r["text"], truncation=True, max_length=tcfg["max_length"])["input_ids"],
                         "labels": labels.index(r["label"])} for r in rows] for k, rows in splits.items()}
        task_type = "SEQ_CLS"
    else:
        model = models.load_causal_lm(snakemake.input.model, spec)
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
    model = training.lora_model(model, s["finetune"]["lora"], task_type, tcfg["gradient_checkpointing"])
    model.print_trainable_parameters()
    log = training.train(model, examples["train"], examples["validation"], tcfg, snakemake.params.checkpoints,
                         tok.pad_token_id, models.device())
    with common.atomic_dir(snakemake.output.adapter) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
    common.write_json(snakemake.output.train_log, log)
    print(f"best step {log['best_step']} (val loss {log['best_val_loss']:.4f}); adapter saved")
