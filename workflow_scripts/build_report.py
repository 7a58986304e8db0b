"""Snakemake script: results/report.html from every task's data summary, metrics, comparison,
predictions, figures and training logs, and results/metrics.csv, one row per run (rule report,
rules/report.smk). Self-contained: figures are embedded. Each task opens with its headline table
(intervals, the majority baseline, paired tests), then its figures; the tokenizer study follows the
tasks; the footer lists the hashes every run was built from."""

import json

import yaml

from lora_pipeline import common, comparison, keys, plots, report, results_table
from lora_pipeline import tokenizer_study as ts
from lora_pipeline.report import esc, fmt

tasks = json.loads(snakemake.params.runs)
config = json.loads(snakemake.params.config)
N_SAMPLES = 8
METHOD = {
    "zeroshot": "zero-shot",
    "raw": "raw prompt (no chat template)",
    "baseline": "majority class of train",
    **plots.METHOD_LABELS,
}


def short_dtype(name):
    return {"bfloat16": "bf16", "float32": "fp32", "float16": "fp16"}.get(name, name or "-")


def ci(m, digits=3):
    """'mean [low, high]' for one run, 'mean ± sd (k seeds)' across seeds."""
    if "sd" in m:
        return f"{m['mean']:.{digits}f} ± {(m['sd'] or 0):.{digits}f}"
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def pvalue(p):
    return "" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def generation_section(task, entry):
    base = f"results/{task}"
    summary = common.read_json(f"{base}/data/summary.json")
    out = [f"<h2>Task: {esc(task)} (generation)</h2>"]
    out.append(
        report.table(
            ["split", "records", "with input"],
            [[s, v["rows"], v["with_input"]] for s, v in summary["splits"].items()],
            num_cols=(1, 2),
        )
    )
    decs, shared = entry["decodings"], entry["shared"]
    rows, samples = [], {}
    for m, meth, role in entry["runs"]:
        ppl = common.read_json(f"{base}/{m}/{meth}/perplexity.json")["corpus"]
        for d in decs:
            folder = f"{base}/{m}/{meth}/gen/{shared[d]}"  # equivalent points share one generation
            x = common.read_json(f"{folder}/metrics.json")
            human = x.get("human")
            rows.append(
                [
                    plots.run_label(m, meth, role),
                    d + (f" (= {shared[d]})" if shared[d] != d else ""),
                    short_dtype(results_table.run_dtype(folder)),
                    ci(x["bleu"]),
                    ci(x["rouge_l"]),
                    ci(x["bertscore_f1"]),
                    fmt(ppl, 3),
                    fmt(human["human_evaluation_average"], 3) if human else "-",
                ]
            )
            samples[(m, meth, d)] = common.read_jsonl(f"{folder}/generations.jsonl")
    for p in entry.get("published", []):
        x = p["metrics"]
        rows.append(
            [f"published, not reproduced: {p['run']}", "as published", "-"]
            + [
                fmt(x[k], 3) if k in x else "-"
                for k in ("bleu", "rouge_l", "bertscore_f1", "perplexity", "human_score")
            ]
        )
    out.append("<h3>Scores on the test prompts (mean [95% bootstrap interval])</h3>")
    out.append(
        report.table(
            ["run", "decoding", "dtype", "BLEU", "ROUGE-L F", "BERTScore F1", "reference perplexity", "human score"],
            rows,
            num_cols=(3, 4, 5, 6, 7),
        )
    )
    out.append(published_caption(entry))
    if any(shared[d] != d for d in decs):
        out.append(
            "<p class='caption'>A point marked (= other) has the same generate arguments as that point "
            "(without sampling, top_k, top_p and temperature do nothing): it shares its generation and "
            "scores.</p>"
        )
    dec_rows = [[d] + [p.get(k, "") for k in plots.SWEEP_PARAMS] + [p.get("do_sample")] for d, p in decs.items()]
    out.append(
        "<details><summary>decoding settings</summary>"
        + report.table(["name"] + plots.SWEEP_PARAMS + ["do_sample"], dec_rows)
        + "</details>"
    )
    if entry["human_eval"]:
        out.append(
            "<p>Human scores: mean of grammatical correctness, coherence and correctness of the answer "
            "(each 0, 0.5 or 1), imported from " + esc(", ".join(entry["human_eval"].values())) + ".</p>"
        )
    out.append(report.image(f"{base}/figures/gen_scores.png", f"{task} generation scores"))
    out.append(grid_section(task, entry))
    out.append("<h3>Decoding sweep</h3>" + report.image(f"{base}/figures/sweep.png", f"{task} sweep"))
    out.append(
        "<h3>Fine-tuning</h3>"
        + finetune_cost_table(task, [(m, meth) for m, meth, _ in entry["runs"]])
        + report.image(f"{base}/figures/gen_training.png", f"{task} training")
    )
    first = next(iter(decs))
    keys = [(m, meth, first) for m, meth, _ in entry["runs"]]
    table_rows = []
    for i, r in enumerate(samples[keys[0]][:N_SAMPLES]):
        instr = r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")
        table_rows.append([instr[:400], r["reference"][:400]] + [samples[k][i]["output"][:400] for k in keys])
    out.append(
        f"<h3>Side-by-side samples (decoding: {esc(first)})</h3>"
        + report.table(
            ["instruction", "reference"] + [plots.run_label(m, meth, role) for m, meth, role in entry["runs"]],
            table_rows,
        )
    )
    return "".join(out)


def finetune_cost_table(task, runs):
    """What each fine-tune (model x method x seed) trained and cost: its trainable parameters and their
    share of the model (train_log.json), its finetune job's wall time and peak RSS (Snakemake's
    benchmark TSV). Empty when the task has no fine-tune."""
    rows = []
    for m, meth in runs:
        if keys.method_seed(meth) is None:
            continue
        c = results_table.finetune_cost(task, m, meth)
        share = c["trainable_share"]
        point = keys.run_point(meth)
        rows.append(
            [
                m,
                METHOD[keys.run_method(meth)] + (f" {point}" if point else ""),
                keys.method_seed(meth),
                "" if c["trainable_params"] is None else f"{c['trainable_params']:,}",
                "" if share is None else f"{100 * share:.4g} %",
                fmt(c["finetune_time_s"], 1),
                fmt(c["finetune_peak_rss_mib"], 0),
            ]
        )
    if not rows:
        return ""
    return (
        report.table(
            [
                "model",
                "method",
                "seed",
                "trainable params",
                "share of the model",
                "training time (s)",
                "peak RSS (MiB)",
            ],
            rows,
            num_cols=(2, 3, 4, 5, 6),
        )
        + "<p class='caption'>Trainable parameters against all of the model's (adapters included). Time and "
        "memory: Snakemake's benchmark of the whole finetune job (loading, training, validation, saving): "
        "wall time and peak resident memory of its processes (on a GPU, device memory is not in it).</p>"
    )


def published_caption(entry):
    """Where each published reference row comes from and how its setup differs; empty without any."""
    items = [
        f"<li><b>{esc(p['run'])}</b>: {esc(p['source'])}" + (f". {esc(p['note'])}" if p["note"] else "") + "</li>"
        for p in entry.get("published", [])
    ]
    if not items:
        return ""
    return (
        "<p class='caption'>Rows marked <i>published, not reproduced</i> are the original study's own numbers, "
        "read from its output files; this workflow did not compute them, they have no intervals, and their "
        "data, models and metric code are the study's, not this run's:</p><ul class='caption'>"
        + "".join(items)
        + "</ul>"
    )


def headline(task, entry, comp, metrics):
    """The task's results table: every run with 95% intervals (mean ± sd over seeds for replicated
    fine-tunes), the majority baseline, and each fine-tune's McNemar p against its zero-shot row."""
    role = {(m, meth): r for m, meth, r in entry["runs"]}
    paired = {}
    for t in comp["paired"]:
        paired.setdefault((t["model"], keys.run_group_of(t["method"])), []).append(t["mcnemar"]["p"])
    rows = []
    for r in comp["rows"]:
        m, meth = r["model"], r["method"]
        first = comparison.representative_run(r)[1]
        x = metrics[(m, first)]
        near = x.get("near_misses", {}).get("count", 0)
        unparsed = f"{r['unparsed_share']:.1%}" + (f" ({near} near-miss)" if near else "")
        scoring = "-" if meth == "baseline" else entry["scoring"].get(m, "")
        if scoring == "likelihood":
            scoring += f" ({entry['likelihood_normalization']})"
        if x.get("head"):  # the full name is in the caption
            scoring = "mean-pooling head" if x["head"].startswith("mean") else "CLS-pooler head"
        p = paired.get((m, meth))
        rows.append(
            [
                plots.run_label(m, meth, "encoder" if "head" in x and x["head"] else ""),
                role.get((m, first), ""),
                ", ".join(map(str, r["seeds"])) or "-",
                scoring,
                short_dtype(results_table.run_dtype(f"results/{task}/{m}/{first}")),
                ci(r["accuracy"]),
                ci(r["macro_f1"]),
                ci(r["weighted_f1"]),
                unparsed,
                (pvalue(max(p)) + (f" (largest of {len(p)} seeds)" if len(p) > 1 else "")) if p else "",
                r["n"],
            ]
        )
    for p in entry.get("published", []):
        rows.append(
            [f"published, not reproduced: {p['run']}", "", "-", "-", "-"]
            + [fmt(p["metrics"][k], 3) if k in p["metrics"] else "-" for k in ("accuracy", "macro_f1", "weighted_f1")]
            + ["-", "", p["n"] or ""]
        )
    out = [
        report.table(
            [
                "run",
                "role",
                "seeds",
                "scoring / head",
                "dtype",
                "accuracy",
                "macro F1",
                "weighted F1",
                "unparsed",
                "McNemar p vs zero-shot",
                "n",
            ],
            rows,
            num_cols=(5, 6, 7, 10),
            label_cols=(0,),
        )
    ]
    out.append(
        "<p class='caption'>Test split. Single runs: point estimate [95% bootstrap interval over test items]. "
        "Replicated fine-tunes: mean ± sample sd over seeds (per-seed values and intervals below). "
        "McNemar: exact two-sided test of each fine-tuned seed against the same model's zero-shot row on the "
        "same items (with several seeds, the largest p). Unparsed outputs count as wrong; a near-miss names a label's "
        "stem (e.g. 'sad'). Heads: mean pooling for sentence-transformers checkpoints (their BERT pooler was never "
        "trained), the CLS pooler (AutoModelForSequenceClassification) otherwise. dtype: what the model's "
        "matmuls ran in (bf16: bfloat16 base weights, trained weights and loss in float32).</p>"
    )
    out.append(published_caption(entry))
    seeded = [r for r in comp["rows"] if len(r.get("per_seed", [])) > 1]
    if seeded:
        out.append(
            "<details><summary>per-seed values</summary>"
            + report.table(
                ["run", "seed", "accuracy", "macro F1", "weighted F1"],
                [
                    [
                        plots.run_label(r["model"], r["method"], ""),
                        s["seed"],
                        ci(s["accuracy"]),
                        ci(s["macro_f1"]),
                        ci(s["weighted_f1"]),
                    ]
                    for r in seeded
                    for s in r["per_seed"]
                ],
                num_cols=(1, 2, 3, 4),
                label_cols=(0,),
            )
            + "</details>"
        )
    return "".join(out)


def grid_section(task, entry):
    """A task's training grids: one table per fine-tune with a grid (every point's swept values,
    validation loss, test metrics; the point chosen on validation marked) and the sweep figure."""
    if not entry.get("grid"):
        return ""
    base = f"results/{task}"
    out = ["<h3>Training grid</h3>"]
    for g in common.read_json(f"{base}/training_grid.json")["grids"]:
        names = [k for k, _ in g["points"][0]["test"].items()]
        rows = [
            [("★ " if p["name"] == g["best"] else "") + p["name"]]
            + [p["values"][k] for k in g["swept"]]
            + [ci(p["val_loss"]) if p["val_loss"]["sd"] is not None else fmt(p["val_loss"]["mean"])]
            + [ci(p["test"][k]) for k in names]
            for p in g["points"]
        ]
        out.append(
            f"<h4>{esc(METHOD[g['method']])}: {esc(g['model'])}, seeds {esc(', '.join(map(str, g['seeds'])))}</h4>"
        )
        out.append(
            report.table(
                ["point"] + g["swept"] + ["validation loss"] + [f"test {k}" for k in names],
                rows,
                num_cols=range(1 + len(g["swept"]), 2 + len(g["swept"]) + len(names)),
                label_cols=(0,),
            )
        )
        out.append(
            f"<p class='caption'>★ the point chosen on the validation split: lowest best-step validation loss, "
            f"mean over seeds ({esc(g['best'])}). Test metrics ({esc(g['test_split'])}) are shown for every point "
            f"but never used to choose; with one seed, 95% bootstrap intervals over test items, with several, "
            f"mean ± sd over seeds.</p>"
        )
    out.append(report.image(f"{base}/figures/training_grid.png", f"{task} training grid"))
    return "".join(out)


def task_section(task, entry):
    runs = entry["runs"]
    base = f"results/{task}"
    summary = common.read_json(f"{base}/data/summary.json")
    comp = common.read_json(f"{base}/comparison.json")
    metrics = {(m, meth): common.read_json(f"{base}/{m}/{meth}/metrics.json") for m, meth, _ in runs}
    kinds = {(m, meth): ("encoder" if metrics[(m, meth)].get("head") else "causal_lm") for m, meth, _ in runs}
    out = [f"<h2>Task: {esc(task)}</h2>", "<h3>Results on the test split</h3>", headline(task, entry, comp, metrics)]
    out.append(report.image(f"{base}/figures/scores.png", f"{task} scores"))
    out.append(grid_section(task, entry))
    out.append("<h3>Data</h3>")
    out.append(
        report.table(
            ["split", "rows", "duplicates removed"] + summary["labels"],
            [
                [s, v["rows"], v.get("duplicates_removed", 0)] + [v["label_counts"][lab] for lab in summary["labels"]]
                for s, v in summary["splits"].items()
            ],
            num_cols=range(1, 3 + len(summary["labels"])),
        )
    )
    out.append(
        "<p class='caption'>Exact-duplicate texts are removed within each split and across splits (a text in "
        "test is dropped from validation and train; one in validation from train). Subsamples are stratified "
        "by label.</p>"
    )
    names = {r: plots.run_label(r[0], r[1], kinds[r]) for r in metrics}
    per_class = "".join(
        f"<h4>{esc(names[r])} ({esc(r[1])})</h4>"
        + report.table(
            ["label", "precision", "recall", "F1", "support"],
            [
                [lab, fmt(v["precision"]), fmt(v["recall"]), fmt(v["f1"]), v["support"]]
                for lab, v in x["per_class"].items()
            ],
            num_cols=(1, 2, 3, 4),
        )
        for r, x in metrics.items()
    )
    out.append(f"<details><summary>per-class precision and recall</summary>{per_class}</details>")
    out.append("<h3>Confusion matrices</h3>" + report.image(f"{base}/figures/confusion.png", f"{task} confusion"))
    finetuned = [(m, meth) for m, meth, _ in runs if keys.method_seed(meth) is not None]
    out.append("<h3>Fine-tuning</h3>")
    if finetuned:
        logs = [common.read_json(f"{base}/{m}/{meth}/train_log.json") for m, meth in finetuned]
        out.append(finetune_cost_table(task, finetuned))
        out.append(
            report.table(
                [
                    "run",
                    "seed",
                    "steps",
                    "best step",
                    "best val loss",
                    "best val perplexity",
                    "stopped early",
                    "resumed at",
                ],
                [
                    [
                        plots.run_label(m, meth, ""),
                        keys.method_seed(meth),
                        g["final_step"],
                        g["best_step"],
                        fmt(g["best_val_loss"]),
                        fmt(min(e["val_perplexity"] for e in g["evals"]), 3),
                        g["stopped_early"],
                        ", ".join(map(str, g["resumed_from"])) or "-",
                    ]
                    for (m, meth), g in zip(finetuned, logs)
                ],
            )
        )
    out.append(report.image(f"{base}/figures/training.png", f"{task} training curves"))
    preds = [{r["id"]: r for r in common.read_jsonl(f"{base}/{m}/{meth}/predictions.jsonl")} for m, meth, _ in runs]
    rows = []
    for i in sorted(preds[0])[:N_SAMPLES]:
        first = preds[0][i]
        cells = [first["text"][:300], first["gold"]]
        for p in preds:
            r = p[i]
            shown = r["pred"] if r["pred"] is not None else "(unparsed)"
            cells.append(
                shown + (f" [{r['output'].strip()[:60]}]" if r.get("output") and r["output"] != r["pred"] else "")
            )
        rows.append(cells)
    out.append(
        "<h3>Sample predictions</h3>" + report.table(["text", "gold"] + [names[(m, meth)] for m, meth, _ in runs], rows)
    )
    return "".join(out)


def tokenizer_section():
    table = common.read_json("results/tokenizers/table.json")
    pieces = common.read_json("results/tokenizers/pieces.json")
    rendered = common.read_json("results/tokenizers/chat_templates.json")
    out = [
        "<h2>Tokenizers across model families</h2>",
        ts.stats_table_html(table["rows"]),
        report.image("results/tokenizers/stats.png", "tokenizer statistics"),
        "<h3>One sentence per language, as token pieces</h3><p>Pieces in red carry part of a character "
        "(a word split into bytes).</p>",
    ]
    for lang, sentence in pieces["sentences"].items():
        out.append(f"<h4>{esc(lang)}: {esc(sentence)}</h4>")
        out += [ts.render_pieces_html(name, pieces["pieces"][name][lang]) for name in pieces["order"]]
    out.append(
        "<h3>Chat templates</h3><p>The same system + user + assistant conversation rendered through each "
        "model's chat template, special tokens shown verbatim.</p>"
    )
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
        out.append(
            f"<h3>Raw prompt vs chat template: {esc(m)}</h3><p>accuracy with the chat template "
            f"{acc['zeroshot']:.4f}, with the raw prompt {acc['raw']:.4f}</p>"
        )
        out.append(
            report.table(
                ["text", "gold", "chat template answer", "raw prompt answer"],
                [
                    [c["text"][:200], c["gold"], c["output"] or c["pred"], r["output"] or r["pred"]]
                    for c, r in zip(chat[:N_SAMPLES], raw)
                ],
            )
        )
        if chat and chat[0].get("output_ids"):
            ids = chat[0]["output_ids"]
            out.append(
                "<h4>Decoding, token by token (first test example)</h4>"
                + report.table(["token id", "decoded"], [[i, t] for i, t in zip(ids, chat[0]["output_tokens"])])
                + f"<p>decoded together: <code>{esc(chat[0]['output'])}</code></p>"
            )
    return "".join(out)


def provenance_rows():
    """Per run: the hashes its outputs were built from (data splits, weights, adapter, code)."""
    rows = []
    for t, e in tasks.items():
        for m, meth, _ in e["runs"]:
            runs = (
                [(f"results/{t}/{m}/{meth}", "")]
                if e["type"] == "classification"
                else [(f"results/{t}/{m}/{meth}/gen/{e['shared'][d]}", d) for d in e["decodings"]]
            )
            for folder, d in runs:
                p = common.read_json(f"{folder}/provenance.json")
                train = {}
                if keys.method_seed(meth) is not None:
                    train = (
                        common.read_json(f"results/{t}/{m}/{meth}/train_log.json").get("provenance", {}).get("data", {})
                    )
                data = dict(p.get("data", {}), **train)
                rows.append(
                    [
                        t,
                        m,
                        meth + (f" / {d}" if d else ""),
                        p.get("dtype", ""),
                        data.get("train", ""),
                        data.get("validation", ""),
                        data.get("test", ""),
                        p.get("model", ""),
                        p.get("adapter", ""),
                        p["code"],
                    ]
                )
    return rows


with common.log_to(common.snakemake_log(snakemake)):
    sections = [
        generation_section(t, e) if e["type"] == "generation" else task_section(t, e) + prompt_form_section(t, e)
        for t, e in tasks.items()
    ]
    if snakemake.input.tokenizer_study:
        sections.append(tokenizer_section())
    hashes = report.table(
        [
            "task",
            "model",
            "run",
            "dtype",
            "train data",
            "validation data",
            "test data",
            "model weights",
            "adapter",
            "code",
        ],
        provenance_rows(),
    )
    text = report.page(
        config["report_title"], sections, config["notes"], yaml.safe_dump(config, sort_keys=False), hashes
    )
    common.atomic_write_text(snakemake.output.html, text)
    results_table.write_csv(snakemake.output.table, results_table.rows(tasks))
    print(f"wrote {snakemake.output.html} ({len(text) // 1024} KiB) and {snakemake.output.table}")
