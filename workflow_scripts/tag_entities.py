"""Snakemake script: the entities one model x method finds in a token-classification task's test
sentences (rule tag_entities, rules/token_classification.smk).

An encoder tags every word with its token-classification head (the untrained head for the zero-shot
row, the fine-tuned one with an adapter); a causal LM is prompted for the entities as `type: text`
lines and its output parsed (ner_prompting.py). Each row: the words, gold tags and (type, text)
pairs, predicted tags (taggers only) and pairs, the raw output and its unparsed lines. Work is
saved in chunks under checkpoint_dir, keyed on the settings, code and weights, so a killed job
resumes where it stopped.
"""

import json

from finetune_study import (
    common,
    conll,
    inference,
    model_kinds,
    models,
    ner_prompting,
    prediction_job,
    prompting,
    word_tokens,
)

s = json.loads(snakemake.params.settings)
adapter = snakemake.input.get("adapter")
types = s["entity_types"]
task = snakemake.config["tasks"][snakemake.wildcards.task]
# not in the stage key where outputs are batch-invariant (float32; tested): changing it reruns nothing
batch_size = task["decoding"]["batch_size"]


def row_out(r, **pred):
    return {
        "id": r["id"],
        "tokens": r["tokens"],
        "gold_tags": r["tags"],
        "gold_pairs": conll.tag_pairs(r["tokens"], r["tags"]),
        **pred,
    }


with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    common.seed_everything(0)
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"])

    def encoder_tagger():
        test_file = task.get("files", {}).get("test", "the test split")
        word_tokens.check_lengths(
            rows,
            tok,
            s["max_length"],
            lambda r: f"{test_file}:{r['line']} (sentence {r['id']} of {snakemake.input.test})",
            f"the max_length of {snakemake.wildcards.model}'s fine-tune (training.max_length)",
        )
        model = model_kinds.get("encoder").load(
            snakemake.input.model,
            s["model"],
            labels=s["labels"],
            seed=s.get("head_seed", 0),
            adapter=adapter,
            task_type="TOKEN_CLS",
        )
        print(f"head: {model.head_kind}")

        def tag(part):
            tags = inference.tag_words(model, tok, [r["tokens"] for r in part], s["labels"], batch_size)
            return [
                row_out(r, pred_tags=t, pred_pairs=conll.tag_pairs(r["tokens"], t), output="", unparsed_lines=0)
                for r, t in zip(part, tags)
            ]

        return tag

    def causal_lm_tagger():
        generate_ids = prediction_job.generator(
            snakemake,
            s,
            tok,
            decoding,
            lambda: model_kinds.get("causal_lm").load(snakemake.input.model, s["model"], adapter=adapter),
        )
        # prompt.fewshot: k train sentences with their entity lines before every sentence (rows not fine-tuned)
        train = common.read_jsonl(snakemake.input.train) if "fewshot" in s else []
        shots = [(r["tokens"], conll.tag_pairs(r["tokens"], r["tags"])) for r in prompting.fewshot_rows(train, s)]

        def tag(part):
            prompts = [
                ner_prompting.build_prompt(r["tokens"], s["prompt"], types, tok, s["chat_template"], shots)
                for r in part
            ]
            ids = [prompting.prompt_ids(tok, p) for p in prompts]
            outs = generate_ids(ids)
            out = []
            for r, o in zip(part, outs):
                pairs, unparsed = ner_prompting.parse_entities(o, types)
                out.append(row_out(r, pred_tags=None, pred_pairs=pairs, output=o, unparsed_lines=unparsed))
            return out

        return tag

    # a prompted LLM: every setting it generates with (its key's, and the batch size, cache and compile flag)
    decoding = prediction_job.job_decoding(snakemake, s) if "decoding" in s else None
    tag = {"encoder": encoder_tagger, "causal_lm": causal_lm_tagger}[s["model"]["type"]]()
    preds = prediction_job.write_predictions(snakemake, rows, tag, s, "tag", decoding=decoding)
    print(f"tagged {len(preds)} sentences; unparsed output lines: {sum(p['unparsed_lines'] for p in preds)}")
