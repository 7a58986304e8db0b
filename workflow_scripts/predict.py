"""Snakemake script: predictions of one model x method on a task's test split.

Run by rule predict (rules/inference.smk). Causal LMs answer a prompt (greedy generation parsed
to a label, or the most likely label); encoders take the argmax of their classification head.
A fine-tuned run loads its folder: a PEFT adapter on the base, or a full fine-tune instead of it.
Work is saved in chunks under checkpoint_dir so a killed job resumes where it stopped; the chunks
are keyed on the settings, the code and the weights, so another run's chunks are never reused.
"""

import json

from finetune_study import common, inference, model_kinds, models, prediction_job, prompting

s = json.loads(snakemake.params.settings)
adapter = snakemake.input.get("adapter")
labels = s["labels"]
# Not in the stage key where outputs are batch-invariant (greedy, likelihood, encoders; tested), so
# read from the config itself: changing it reruns nothing.
batch_size = snakemake.config["tasks"][snakemake.wildcards.task]["decoding"]["batch_size"]


with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    common.seed_everything(s.get("decoding", {}).get("seed", 0))
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"])

    def encoder_predictor():
        # untrained head: initialized from head_seed, the fine-tune's first seed (with an adapter, the trained head loads)
        model = model_kinds.get("encoder").load(
            snakemake.input.model, s["model"], labels=labels, seed=s.get("head_seed", 0), adapter=adapter
        )
        head = model.head_kind
        print(f"classification head: {head}")

        def predict(part):
            # the fine-tune's tokenization: same truncation (max_length), right padding (heads.encode)
            out = inference.classify(
                model, tok, [r["text"] for r in part], max_length=s["max_length"], batch_size=batch_size
            )
            return [
                {
                    "id": r["id"],
                    "text": r["text"],
                    "gold": r["label"],
                    "pred": labels[i],
                    "output": labels[i],
                    "scores": logits,
                    "head": head,
                }
                for r, (i, logits) in zip(part, out)
            ]

        return predict

    def causal_lm_predictor():
        model = model_kinds.get("causal_lm").load(snakemake.input.model, s["model"], adapter=adapter)
        answers = [prompting.answer_text(lab, s["prompt"], s["chat_template"]) for lab in labels]
        label_ids = [tok(a, add_special_tokens=False)["input_ids"] for a in answers]
        # prompt.fewshot: k train examples with their labels before every question (rows not fine-tuned)
        shots = [
            (r["text"], r["label"])
            for r in prompting.fewshot_rows(common.read_jsonl(snakemake.input.train) if "fewshot" in s else [], s)
        ]

        def predict(part):
            prompts = [
                prompting.build_prompt(r["text"], s["prompt"], labels, tok, s["chat_template"], shots) for r in part
            ]
            ids = [prompting.prompt_ids(tok, p) for p in prompts]
            if s["scoring"] == "likelihood":
                scores = inference.label_logprobs(
                    model, ids, label_ids, batch_size, normalization=s["likelihood_normalization"], label_texts=answers
                )
                return [
                    {
                        "id": r["id"],
                        "text": r["text"],
                        "gold": r["label"],
                        "pred": labels[max(range(len(labels)), key=sc.__getitem__)],
                        "output": "",
                        "scores": sc,
                    }
                    for r, sc in zip(part, scores)
                ]
            outs = inference.generate(model, tok, ids, decoding, with_ids=True)
            return [
                {
                    "id": r["id"],
                    "text": r["text"],
                    "gold": r["label"],
                    "pred": prompting.parse_label(o, labels),
                    "output": o,
                    "output_ids": new,
                    "output_tokens": [tok.decode([t]) for t in new],
                }
                for r, (o, new) in zip(part, outs)
            ]

        return predict

    # scoring: generate: every setting it generates with (its key's, and the batch size, cache and compile flag)
    decoding = prediction_job.job_decoding(snakemake, s) if "decoding" in s else None
    predict = {"encoder": encoder_predictor, "causal_lm": causal_lm_predictor}[s["model"]["type"]]()

    preds = prediction_job.write_predictions(snakemake, rows, predict, s, "predict", decoding=decoding)
    print(f"wrote {len(preds)} predictions; unparsed: {sum(p['pred'] is None for p in preds)}")
