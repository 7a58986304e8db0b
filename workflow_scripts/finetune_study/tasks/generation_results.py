"""Instruction generation, the report's part: the task's section (scores per run and decoding
point with intervals, the sweep, fine-tuning, side-by-side samples) and its rows of
results/metrics.csv. `read`: the report job's declared inputs (paths.DeclaredInputs)."""

from .. import paths, plots, report, results_table, runs
from ..report import esc, fmt
from ..report_blocks import N_SAMPLES, ci, finetune_cost_table, grid_section, published_caption, short_dtype
from .generation import TABLE_METRICS


def section(task, entry, read):
    """A generation task's section: data, scores per run and decoding point, figures, samples."""
    base = f"results/{task}"
    summary = read.json(f"{base}/data/summary.json")
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
        ppl = read.json(f"{base}/{m}/{meth}/perplexity.json")["corpus"]
        for d in decs:
            folder = f"{base}/{m}/{meth}/gen/{shared[d]}"  # equivalent points share one generation
            x = read.json(f"{folder}/metrics.json")
            human = x.get("human")
            rows.append(
                [
                    plots.run_label(m, meth, role),
                    d + (f" (= {shared[d]})" if shared[d] != d else ""),
                    short_dtype(results_table.run_dtype(read, folder)),
                    ci(x["bleu"]),
                    ci(x["rouge_l"]),
                    ci(x["bertscore_f1"]),
                    fmt(ppl, 3),
                    fmt(human["human_evaluation_average"], 3) if human else "-",
                ]
            )
            samples[(m, meth, d)] = read.jsonl(f"{folder}/generations.jsonl")
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
            num_cols=(6, 7),
            wrap_cols=(3, 4, 5),
            kind="headline",
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
    out.append(report.image(read.path(f"{base}/figures/gen_scores.png"), f"{task} generation scores"))
    out.append(grid_section(task, entry, read))
    out.append("<h3>Decoding sweep</h3>" + report.image(read.path(f"{base}/figures/sweep.png"), f"{task} sweep"))
    out.append(
        "<h3>Fine-tuning</h3>"
        + finetune_cost_table(read, task, [(m, meth) for m, meth, _ in entry["runs"]])
        + report.image(read.path(f"{base}/figures/gen_training.png"), f"{task} training")
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


def provenance_folders(task, entry):
    """(model, run, folder, decoding) of every generation's provenance.json: one per decoding point
    (equivalent points read their shared point's folder)."""
    return [
        (m, meth, paths.GEN_DIR.format(task=task, model=m, method=meth, decoding=entry["shared"][d]), d)
        for m, meth, _ in entry["runs"]
        for d in entry["decodings"]
    ]


def table_rows(task, entry, read):
    """One results/metrics.csv row per run and decoding point."""
    out = []
    for model, method, role in entry["runs"]:
        ppl = read.json(paths.PERPLEXITY.format(task=task, model=model, method=method))["corpus"]
        seed = runs.method_seed(method)
        cost = results_table.finetune_cost(read, task, model, method) if seed is not None else {}
        for d in entry["decodings"]:
            folder = paths.GEN_DIR.format(
                task=task, model=model, method=method, decoding=entry.get("shared", {}).get(d, d)
            )
            m = read.json(f"{folder}/metrics.json")
            row = results_table.run_row(task, model, method, role) | {
                "decoding": d,
                "n": m["n"],
                "reference_perplexity": ppl,
                "human_score": (m.get("human") or {}).get("human_evaluation_average"),
                "dtype": results_table.run_dtype(read, folder),
                **cost,
            }
            for k in TABLE_METRICS:
                results_table.with_interval(row, k, m[k])
            out.append(row)
    return out
