"""Snakemake script: the outputs (summaries, translations) of one model x method for a source ->
target task's test sources under one decoding point (rule generate_targets). A causal LM continues
the prompt (left-padded, length-sorted batches); an encoder-decoder reads the prompt as its encoder
input. Each row keeps the source and all its references, so scoring reads this file only. Work is
saved in chunks under checkpoint_dir, keyed on the settings, code and weights, so a killed job
resumes where it stopped."""

import json

from finetune_study import common, model_kinds, models, prediction_job, prompting, source_prompting

s = json.loads(snakemake.params.settings)

with common.log_to(common.snakemake_log(snakemake)):
    # every setting it generates with: its key's, and the batch size, cache and compile flag in no key
    decoding = prediction_job.job_decoding(snakemake, s)
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    common.seed_everything(decoding.get("seed", 0))
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"])
    generate_ids = prediction_job.generator(
        snakemake,
        s,
        tok,
        decoding,
        lambda: model_kinds.get(s["model"]["type"]).load(
            snakemake.input.model,
            s["model"],
            adapter=snakemake.input.get("adapter"),
            task_type=snakemake.params.peft_task_type,
        ),
    )

    # prompt.fewshot: k train sources with their first reference before every source (rows not fine-tuned)
    shots = source_prompting.fewshot_pairs(common.read_jsonl(snakemake.input.train) if "fewshot" in s else [], s)

    def generate(part):
        ids = [prompting.prompt_ids(tok, source_prompting.model_input(r["text"], s, tok, shots)) for r in part]
        outs = generate_ids(ids)
        return [
            {"id": r["id"], "source": r["text"], "references": r["references"], "output": o.strip()}
            for r, o in zip(part, outs)
        ]

    preds = prediction_job.write_predictions(
        snakemake, rows, generate, s, "generate_targets", output="outputs", decoding=decoding
    )
    empty = sum(not p["output"] for p in preds)
    print(f"wrote {len(preds)} outputs ({empty} empty)")
