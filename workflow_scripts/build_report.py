"""Snakemake script: results/report.html from every task's data summary, metrics, predictions,
figures and training logs (rule report, rules/report.smk). Self-contained: figures are embedded."""
import json

import yaml

from lora_pipeline import common, plots, report
from lora_pipeline import tokenizer_study as ts
from lora_pipeline.report import esc, fmt

tasks = json.loads(snakemake.params.runs)
config = json.loads(snakemake.params.config)
N_SAMPLES = 8


def ci(m):
    return f"{m['mean']:.4f} [{m['low']:.4f}, {m['high']:.4f}]"


def generation_section(task, entry):
    base = f"results/{task}"
    summary = common.read_json(f"{base}/data/summary.json")
    out = [f"<h2>Task: {esc(task)} (generation)</h2>"]
    out.append(report.table(["split", "records", "with input"],
                            [[s, v["rows"], v["with_input"]] for s, v in summary["splits"].items()], num_cols=(1, 2)))
    decs = entry["decodings"]
    rows, samples = [], {}
    for m, meth, role in entry["runs"]:
        ppl = common.read_json(f"{base}/{m}/{meth}/perplexity.json")["corpus"]
        for d in decs:
            x = common.read_json(f"{base}/{m}/{meth}/gen/{d}/metrics.json")
            human = x.get("human")
            rows.append([plots.run_label(m, meth, role), d, ci(x["bleu"]), ci(x["rouge_l"]), ci(x["bertscore_f1"]),
                         fmt(ppl, 3), fmt(human["human_evaluation_average"], 3) if human else "-"])
            samples[(m, meth, d)] = common.read_jsonl(f"{base}/{m}/{meth}/gen/{d}/generations.jsonl")
    out.append("<h3>Scores on the test prompts (mean [95% bootstrap interval])</h3>")
    out.append(report.table(["run", "decoding", "BLEU", "ROUGE-L F", "BERTScore F1", "reference perplexity", "human score"],
                            rows, num_cols=(2, 3, 4, 5, 6)))
    dec_rows = [[d] + [p.get(k, "") for k in plots.SWEEP_PARAMS] + [p.get("do_sample")] for d, p in decs.items()]
    out.append("<details><summary>decoding settings</summary>" +
               report.table(["name"] + plots.SWEEP_PARAMS + ["do_sample"], dec_rows) + "</details>")
    if entry["human_eval"]:
        out.append("<p>Human scores: mean of grammatical correctness, coherence and correctness of the answer "
                   "(each 0, 0.5 or 1), imported from " + esc(", ".join(entry["human_eval"].values())) + ".</p>")
    out.append(report.image(f"{base}/figures/gen_scores.png", f"{task} generation scores"))
    out.append("<h3>Decoding sweep</h3>" + report.image(f"{base}/figures/sweep.png", f"{task} sweep"))
    out.append("<h3>Fine-tuning</h3>" + report.image(f"{base}/figures/gen_training.png", f"{task} training"))
    first = next(iter(decs))
    keys = [(m, meth, first) for m, meth, _ in entry["runs"]]
    table_rows = []
    for i, r in enumerate(samples[keys[0]][:N_SAMPLES]):
        instr = r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")
        table_rows.append([instr[:400], r["reference"][:400]] + [samples[k][i]["output"][:400] for k in keys])
    out.append(f"<h3>Side-by-side samples (decoding: {esc(first)})</h3>" +
               report.table(["instruction", "reference"] + [plots.run_label(m, meth, role) for m, meth, role in entry["runs"]],
                            table_rows))
    return "".join(out)


def task_section(task, entry):
    runs = entry["runs"]
    base = f"results/{task}"
    summary = common.read_json(f"{base}/data/summary.json")
    out = [f"<h2>Task: {esc(task)}</h2>"]
    out.append(report.table(["split", "rows"] + summary["labels"],
                            [[s, v["rows"]] + [v["label_counts"][lab] for lab in summary["labels"]]
                             for s, v in summary["splits"].items()], num_cols=range(1, 2 + len(summary["labels"]))))
    names = [plots.run_label(m, meth, role) for m, meth, role in runs]
    metrics = [common.read_json(f"{base}/{m}/{meth}/metrics.json") for m, meth, _ in runs]
    out.append("<h3>Metrics on the test split</h3>")
    out.append(report.table(["run", "accuracy", "macro F1", "weighted F1", "unparsed", "n"],
                            [[n, fmt(x["accuracy"]), fmt(x["macro_f1"]), fmt(x["weighted_f1"]),
                              f"{x['unparsed_share']:.1%}", x["n"]] for n, x in zip(names, metrics)],
                            num_cols=(1, 2, 3, 4, 5)))
    out.append(report.image(f"{base}/figures/scores.png", f"{task} scores"))
    per_class = "".join(
        f"<h4>{esc(n)}</h4>" + report.table(["label", "precision", "recall", "F1", "support"],
                                            [[lab, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"]]
                                             for lab, v in x["per_class"].items()], num_cols=(1, 2, 3, 4))
        for n, x in zip(names, metrics))
    out.append(f"<details><summary>per-class precision and recall</summary>{per_class}</details>")
    out.append("<h3>Confusion matrices</h3>" + report.image(f"{base}/figures/confusion.png", f"{task} confusion"))
    lora = [m for m, meth, _ in runs if meth == "lora"]
    out.append("<h3>Fine-tuning</h3>")
    if lora:
        logs = [common.read_json(f"{base}/{m}/lora/train_log.json") for m in lora]
        out.append(report.table(["model", "steps", "best step", "best val loss", "best val perplexity", "stopped early", "resumed at"],
                                [[m, g["final_step"], g["best_step"], fmt(g["best_val_loss"]),
                                  fmt(min(e["val_perplexity"] for e in g["evals"]), 3), g["stopped_early"],
                                  ", ".join(map(str, g["resumed_from"])) or "-"] for m, g in zip(lora, logs)]))
    out.append(report.image(f"{base}/figures/training.png", f"{task} training curves"))
    preds = [{r["id"]: r for r in common.read_jsonl(f"{base}/{m}/{meth}/predictions.jsonl")} for m, meth, _ in runs]
    rows = []
    for i in sorted(preds[0])[:N_SAMPLES]:
        first = preds[0][i]
        cells = [first["text"][:300], first["gold"]]
        for p in preds:
            r = p[i]
            shown = r["pred"] if r["pred"] is not None else "(unparsed)"
            cells.append(shown + (f" [{r['output'].strip()[:60]}]" if r.get("output") and r["output"] != r["pred"] else ""))
        rows.append(cells)
    out.append("<h3>Sample predictions</h3>" + report.table(["text", "gold"] + names, rows))
    return "".join(out)


def tokenizer_section():
    table = common.read_json("results/tokenizers/table.json")
    pieces = common.read_json("results/tokenizers/pieces.json")
    rendered = common.read_json("results/tokenizers/chat_templates.json")
    out = ["<h2>Tokenizers across model families</h2>", ts.stats_table_html(table["rows"]),
           report.image("results/tokenizers/stats.png", "tokenizer statistics"),
           "<h3>One sentence per language, as token pieces</h3><p>Pieces in red carry part of a character "
           "(a word split into bytes).</p>"]
    for lang, sentence in pieces["sentences"].items():
        out.append(f"<h4>{esc(lang)}: {esc(sentence)}</h4>")
        out += [ts.render_pieces_html(name, pieces["pieces"][name][lang]) for name in pieces["order"]]
    out.append("<h3>Chat templates</h3><p>The same system + user + assistant conversation rendered through each "
               "model's chat template, special tokens shown verbatim.</p>")
    out.append(ts.chat_templates_html({m: rendered[m] for m in sorted(rendered)}))
    return "".join(out)


def prompt_form_section(task, entry):
    """Raw prompt vs chat template for the same instruct model: accuracy and outputs side by side."""
    base = f"results/{task}"
    out = []
    for m, meth, role in entry["runs"]:
        if meth != "raw":
            continue
        raw = common.read_jsonl(f"{base}/{m}/raw/predictions.jsonl")
        chat = common.read_jsonl(f"{base}/{m}/zeroshot/predictions.jsonl")
        acc = {k: common.read_json(f"{base}/{m}/{k}/metrics.json")["accuracy"] for k in ("raw", "zeroshot")}
        out.append(f"<h3>Raw prompt vs chat template: {esc(m)}</h3><p>accuracy with the chat template "
                   f"{acc['zeroshot']:.4f}, with the raw prompt {acc['raw']:.4f}</p>")
        out.append(report.table(["text", "gold", "chat template output", "raw prompt output"],
                                [[c["text"][:200], c["gold"], c["output"], r["output"]] for c, r in zip(chat[:N_SAMPLES], raw)]))
        if chat and chat[0].get("output_ids"):
            ids = chat[0]["output_ids"]
            out.append("<h4>Decoding, token by token (first test example)</h4>" +
                       report.table(["token id", "decoded"], [[i, t] for i, t in zip(ids, chat[0]["output_tokens"])]) +
                       f"<p>decoded together: <code>{esc(chat[0]['output'])}</code></p>")
    return "".join(out)


with common.log_to(common.snakemake_log(snakemake)):
    sections = [tokenizer_section()] if snakemake.input.tokenizer_study else []
    sections += [generation_section(t, e) if e["type"] == "generation" else task_section(t, e) + prompt_form_section(t, e)
                 for t, e in tasks.items()]
    text = report.page(config["report_title"], sections, config["notes"], yaml.safe_dump(config, sort_keys=False))
    common.atomic_write_text(snakemake.output.html, text)
    print(f"wrote {snakemake.output.html} ({len(text) // 1024} KiB)")
