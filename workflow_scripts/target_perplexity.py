"""Snakemake script: perplexity of a source -> target task's test references under one model x
method (rule target_perplexity): every (source, reference) pair, the reference's tokens scored given
the model's input for that source (a causal LM: the prompt, masked; an encoder-decoder: its encoder
input), so only reference tokens count. The corpus value pools the tokens of every pair."""

import json

from finetune_study import common, generation_metrics, model_kinds, models, source_prompting

s = json.loads(snakemake.params.settings)
with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"], padding_side="right")
    model = model_kinds.get(s["model"]["type"]).load(
        snakemake.input.model,
        s["model"],
        adapter=snakemake.input.get("adapter"),
        task_type=snakemake.params.peft_task_type,
    )
    pairs = [(r, ref) for r in rows for ref in r["references"]]
    prompts = [source_prompting.model_input(r["text"], s, tok) for r, _ in pairs]
    refs = [source_prompting.target_text(ref, s, s["model"]["type"]) for _, ref in pairs]
    result = generation_metrics.perplexity(model, tok, prompts, refs)
    result.update(dtype=s["model"]["dtype"], pairs=len(pairs))
    del result["per_example"]
    common.write_json(snakemake.output.perplexity, result)
    print(f"reference perplexity {result['corpus']:.3f} over {result['n_tokens']} tokens of {len(pairs)} references")
