"""Snakemake script: responses of one model x method (zero-shot or LoRA) for a generation task's
test prompts under one decoding point, batched (length-sorted, left-padded) with a progress bar.
Also writes a blank human-evaluation template for these outputs. Run by rule generate."""
import json
import shutil
from pathlib import Path

from lora_pipeline import common, human_eval, inference, models, prompting
from lora_pipeline.config import short_hash

s = json.loads(snakemake.params.settings)
adapter = snakemake.input.get("adapter")

with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config)
    common.seed_everything(s["decoding"]["seed"])
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"])
    model = models.load_causal_lm(snakemake.input.model, s["model"], adapter=adapter)
    prompts = [prompting.instruction_prompt(r, s["prompt_style"], tok) for r in rows]

    def generate(part):
        ids = [prompting.prompt_ids(tok, prompts[r["id"]]) for r in part]
        outs = inference.generate(model, tok, ids, s["decoding"])
        return [{"id": r["id"], "instruction": r["instruction"], "input": r["input"], "reference": r["output"],
                 "output": o.strip()} for r, o in zip(part, outs)]

    chunk_dir = Path(snakemake.params.chunks) / short_hash([s, inference.weights_fingerprint(snakemake.input.model, adapter)])
    out = inference.run_chunked(rows, generate, chunk_dir, snakemake.params.chunk_size)
    common.write_jsonl(snakemake.output.generations, out)
    human_eval.write_template(snakemake.output.human_eval_template, [prompts[r["id"]] for r in out],
                              [r["reference"] for r in out], [r["output"] for r in out])
    shutil.rmtree(chunk_dir, ignore_errors=True)
    print(f"wrote {len(out)} responses")
