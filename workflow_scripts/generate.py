"""Snakemake script: responses of one model x method (zero-shot or fine-tuned) for a generation task's
test prompts under one decoding point, batched (length-sorted, left-padded) with a progress bar.
Also writes a blank human-evaluation template for these outputs. Run by rule generate."""

import json
import shutil
from pathlib import Path

from finetune_study import (
    common,
    hashing,
    human_eval,
    inference,
    model_kinds,
    models,
    prediction_job,
    prompting,
    provenance,
)

s = json.loads(snakemake.params.settings)
adapter = snakemake.input.get("adapter")

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
        lambda: model_kinds.get("causal_lm").load(snakemake.input.model, s["model"], adapter=adapter),
    )
    # prompt.fewshot: k train records with their outputs before every instruction (rows not fine-tuned)
    shots = prompting.fewshot_rows(common.read_jsonl(snakemake.input.train) if "fewshot" in s else [], s)
    prompts = [prompting.instruction_prompt(r, s["prompt_style"], tok, shots) for r in rows]

    def generate(part):
        ids = [prompting.prompt_ids(tok, prompts[r["id"]]) for r in part]
        outs = generate_ids(ids)
        return [
            {
                "id": r["id"],
                "instruction": r["instruction"],
                "input": r["input"],
                "reference": r["output"],
                "output": o.strip(),
            }
            for r, o in zip(part, outs)
        ]

    run = Path(snakemake.output.generations).parent.relative_to("results")
    chunk_dir = (
        Path(snakemake.config["checkpoint_dir"])
        / "generate"
        / run
        / hashing.short_hash([s, snakemake.params.code, provenance.weights_fingerprint(snakemake.input.model, adapter)])
    )
    out = inference.run_chunked(rows, generate, chunk_dir, snakemake.params.chunk_size)
    common.write_jsonl(snakemake.output.generations, out)
    human_eval.write_template(
        snakemake.output.human_eval_template,
        [prompts[r["id"]] for r in out],
        [r["reference"] for r in out],
        [r["output"] for r in out],
    )
    common.write_json(
        snakemake.output.provenance,
        prediction_job.test_split_provenance(snakemake, adapter, s["model"]["dtype"], decoding),
    )
    shutil.rmtree(chunk_dir, ignore_errors=True)
    print(f"wrote {len(out)} responses")
