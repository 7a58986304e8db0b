"""Snakemake script: results/report.html from every task's data summary, metrics, comparison,
predictions, figures and training logs, and results/metrics.csv, one row per run (rule report,
rules/report.smk). Self-contained: figures are embedded. Each task's section comes from its task
type (tasks/<type>_results.py: headline table first, then figures); the tokenizer study follows
the tasks; the footer lists the hashes every run was built from. Every file it reads is one of the
rule's inputs (paths.DeclaredInputs). With `tracking.mlflow` in the config, every row of
metrics.csv is then logged to MLflow (finetune_study/tracking.py)."""

import json

import yaml

from finetune_study import benchmarks, common, general_ability, paths, report, results_table, runs, tracking
from finetune_study import tasks as task_types
from finetune_study import tokenizer_study as ts
from finetune_study.report import esc

TASK_PART = ("spec", "results")  # tasks/<type>.py and tasks/<type>_results.py (fingerprints.py)

tasks = json.loads(snakemake.params.runs)
config = json.loads(snakemake.params.config)


def tokenizer_section(read):
    table = read.json("results/tokenizers/table.json")
    pieces = read.json("results/tokenizers/pieces.json")
    rendered = read.json("results/tokenizers/chat_templates.json")
    out = [
        "<h2>Tokenizers across model families</h2>",
        ts.stats_table_html(table["rows"]),
        report.image(read.path("results/tokenizers/stats.png"), "tokenizer statistics"),
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


def generated_by(with_):
    """A run's backend as its provenance records it (prediction_job.generated_with): 'transformers,
    static cache', 'vllm on 4 GPUs'; '' for a run that generated nothing."""
    if not with_:
        return ""
    if with_["backend"] == "vllm":
        tp = with_.get("tensor_parallel", 1)
        return "vllm" + (f" on {tp} GPUs" if tp > 1 else "")
    return (
        "transformers"
        + (", static cache" if with_.get("cache") == "static" else "")
        + (", compile" if with_.get("compile") else "")
    )


def provenance_rows(read):
    """Per run: the hashes its outputs were built from (data splits, weights, adapter, code)."""
    rows = []
    for t, e in tasks.items():
        for m, meth, folder, d in task_types.part(e["type"], "results").provenance_folders(t, e):
            p = read.json(f"{folder}/provenance.json")
            train = {}
            if runs.method_seed(meth) is not None:
                log = read.json(paths.TRAIN_LOG.format(task=t, model=m, method=meth))
                train = log.get("provenance", {}).get("data", {})
            data = dict(p.get("data", {}), **train)
            rows.append(
                [
                    t,
                    m,
                    meth + (f" / {d}" if d else ""),
                    p.get("dtype", ""),
                    generated_by(p.get("generated_with")),
                    data.get("train", ""),
                    data.get("validation", ""),
                    data.get("test", ""),
                    p.get("model", ""),
                    p.get("adapter", ""),
                    p["code"],
                ]
            )
    return rows


def general_ability_parts(read):
    """{task: (its general-ability comparison, {(model, run): role}, {(model, run): dtype})} of every
    task with a benchmarks block (the forgetting check, general_ability.py)."""
    out = {}
    for t in tasks:
        task = config["tasks"][t]
        if not benchmarks.benchmark_runs(config, task):
            continue
        comp = read.json(benchmarks.GENERAL_ABILITY.format(task=t))
        roles = {(m, r): config["models"][m]["role"] for m, r in benchmarks.benchmark_runs(config, task)}
        dtypes = {(row["model"], row["method"]): row["dtype"] for row in comp["rows"]}
        out[t] = comp, roles, dtypes
    return out


with common.log_to(common.snakemake_log(snakemake)):
    read = paths.DeclaredInputs(snakemake.input)
    ability = general_ability_parts(read)
    sections = []
    for t, e in tasks.items():
        sections.append(task_types.part(e["type"], "results").section(t, e, read))
        if t in ability:
            comp, roles, _ = ability[t]
            figure = paths.FIGURE.format(task=t, figure="general_ability")
            limit = benchmarks.settings(config, config["tasks"][t])["limit"]
            sections.append(general_ability.section(t, comp, roles, figure, read, limit))
    if snakemake.input.tokenizer_study:
        sections.append(tokenizer_section(read))
    hashes = report.table(
        [
            "task",
            "model",
            "run",
            "dtype",
            "generated by",
            "train data",
            "validation data",
            "test data",
            "model weights",
            "adapter",
            "code",
        ],
        provenance_rows(read),
    )
    text = report.page(
        config["report_title"], sections, config["notes"], yaml.safe_dump(config, sort_keys=False), hashes
    )
    common.atomic_write_text(snakemake.output.html, text)
    table = results_table.rows(tasks, read)
    for t, (comp, roles, dtypes) in ability.items():
        table += general_ability.table_rows(t, comp, roles, dtypes)
    results_table.write_csv(snakemake.output.table, table)
    print(f"wrote {snakemake.output.html} ({len(text) // 1024} KiB) and {snakemake.output.table}")
    # with tracking.mlflow in the config (read from the workflow's config, in no params): every row
    # to MLflow; a tracker that fails is one warning line in this job's log
    tracking.log_rows(snakemake.config, table, results_table.COLUMNS)
