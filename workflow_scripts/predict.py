"""Snakemake script: predictions of one model x method on a task's test split.

Run by rule predict (rules/inference.smk). Causal LMs answer a prompt (greedy generation parsed
to a label, or the most likely label); encoders take the argmax of their classification head.
Work is saved in chunks under checkpoint_dir so a killed job resumes where it stopped.
"""
import json
import shutil
from pathlib import Path

from lora_pipeline import common, inference, models, prompting
from lora_pipeline.config import short_hash

s = json.loads(snakemake.params.settings)
adapter = snakemake.input.get("adapter")
labels = s["labels"]


with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config)
    common.seed_everything(s["decoding"]["seed"])
    rows = common.read_jsonl(snakemake.input.test)
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"])
    if s["model"]["type"] == "encoder":
        model = models.load_classifier(snakemake.input.model, s["model"], labels, seed=0, adapter=adapter)

        def predict(part):
            out = inference.classify(model, tok, [r["text"] for r in part], batch_size=s["decoding"]["batch_size"])
            return [{"id": r["id"], "text": r["text"], "gold": r["label"], "pred": labels[i], "output": labels[i],
                     "scores": logits} for r, (i, logits) in zip(part, out)]
    else:
        model = models.load_causal_lm(snakemake.input.model, s["model"], adapter=adapter)
        label_ids = [tok(prompting.answer_text(lab, s["prompt"], s["chat_template"]), add_special_tokens=False)["input_ids"]
                     for lab in labels]

        def predict(part):
            prompts = [prompting.build_prompt(r["text"], s["prompt"], labels, tok, s["chat_template"]) for r in part]
            ids = [prompting.prompt_ids(tok, p) for p in prompts]
            if s["scoring"] == "likelihood":
                scores = inference.label_logprobs(model, ids, label_ids, s["decoding"]["batch_size"])
                return [{"id": r["id"], "text": r["text"], "gold": r["label"], "pred": labels[max(range(len(labels)), key=sc.__getitem__)],
                         "output": "", "scores": sc} for r, sc in zip(part, scores)]
            outs = inference.generate(model, tok, ids, s["decoding"], with_ids=True)
            return [{"id": r["id"], "text": r["text"], "gold": r["label"], "pred": prompting.parse_label(o, labels),
                     "output": o, "output_ids": new, "output_tokens": [tok.decode([t]) for t in new]}
                    for r, (o, new) in zip(part, outs)]

    chunk_dir = Path(snakemake.params.chunks) / short_hash([s, inference.weights_fingerprint(snakemake.input.model, adapter)])
    preds = inference.run_chunked(rows, predict, chunk_dir, snakemake.params.chunk_size)
    common.write_jsonl(snakemake.output.predictions, preds)
    shutil.rmtree(chunk_dir, ignore_errors=True)
    print(f"wrote {len(preds)} predictions; unparsed: {sum(p['pred'] is None for p in preds)}")
