"""Snakemake script: perplexity of the test references under one model (for a fine-tuned run, with
its adapter, or its fully fine-tuned weights), the prompt masked so only reference tokens count.
Run by rule reference_perplexity."""

import json

from finetune_study import common, generation_metrics, models, prompting

s = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"], padding_side="right")
    model = models.load_causal_lm(snakemake.input.model, s["model"], adapter=snakemake.input.get("adapter"))
    prompts = [prompting.instruction_prompt(r, s["prompt_style"], tok) for r in rows]
    result = generation_metrics.perplexity(model, tok, prompts, [r["output"] for r in rows])
    result["dtype"] = s["model"]["dtype"]
    common.write_json(snakemake.output.perplexity, result)
    print(f"reference perplexity {result['corpus']:.3f}")
