"""Token classification, the report's part: the task's section (entity F1 per run with intervals
and the paired comparisons with zero-shot and with the dictionary baseline, F1 per entity type, figures, fine-tuning, test sentences
with gold and predicted entities highlighted) and its rows of results/metrics.csv. `read`: the
report job's declared inputs (paths.DeclaredInputs)."""

from .. import conll, paths, plots, report, results_table, runs, stats
from ..report import esc, fmt
from ..report_blocks import (
    ci,
    finetune_cost_table,
    grid_section,
    published_caption,
    pvalue,
    short_dtype,
    vs_baseline,
    with_vs_baseline,
)
from .token_classification import TABLE_METRICS

N_SENTENCES = 6
MARK = "background:#fff1b8;border-radius:3px;padding:0 2px"


def _kind(entry, model, role):
    return "baseline" if role == "baseline" else ("encoder" if entry["tagger"].get(model) else "causal_lm")


def _metrics(read, task, model, method):
    return read.json(paths.NER_METRICS.format(task=task, model=model, method=method))


def _data_table(summary, types):
    docs = all("documents" in v for v in summary["splits"].values())
    rows = [
        [s, *([v["documents"]] if docs else []), v["rows"], v["tokens"], v["entities"]]
        + [v["entity_counts"].get(t, 0) for t in types]
        for s, v in summary["splits"].items()
    ]
    header = ["split", *(["documents"] if docs else []), "sentences", "tokens", "entities"] + types
    out = report.table(header, rows, num_cols=range(1, len(header)))
    o = summary.get("test_overlap")
    if o and o["test_entities"]:
        out += (
            f"<p class='caption'>{o['also_in_train']} of the {o['test_entities']} test entities "
            f"({o['share']:.1%}) also occur in train (same type and text, any case): what a dictionary of train can "
            "find at most. Splits carved from one file are cut by whole documents where the file marks them "
            "(-DOCSTART-), so a document's repeated entities do not leak from train into test.</p>"
        )
    return out


def _headline(task, entry, read):
    rows, groups, bases = [], {}, {}
    for m, meth, role in entry["runs"]:
        x = _metrics(read, task, m, meth)
        iv, vs = x["intervals"], x.get("vs_zeroshot")
        folder = paths.NER_DIR.format(task=task, model=m, method=meth)
        rows.append(
            [
                plots.seeded_run_label(m, meth, _kind(entry, m, role)),
                role,
                short_dtype(results_table.run_dtype(read, folder)),
                ci(iv["entity_f1"]) if "entity_f1" in iv else "-",
                fmt(x["strict"]["precision"], 3) if x["tagger"] else "-",
                fmt(x["strict"]["recall"], 3) if x["tagger"] else "-",
                ci(iv["pair_f1"]),
                x["unparsed_lines"] if role != "baseline" and not x["tagger"] else "-",
                (ci(vs) + f" (p {pvalue(vs['p'])})") if vs else "",
                vs_baseline([x.get("vs_baseline")]),
            ]
        )
        if runs.method_seed(meth) is not None:
            groups.setdefault((m, runs.run_group_of(meth), role), []).append(iv)
            bases.setdefault((m, runs.run_group_of(meth), role), []).append(x.get("vs_baseline"))
    for (m, group, role), ivs in groups.items():
        if len(ivs) > 1:  # replicated fine-tunes: mean and sd over seeds
            agg = {k: stats.mean_sd([iv[k]["mean"] for iv in ivs]) for k in ("entity_f1", "pair_f1") if k in ivs[0]}
            label = f"{plots.run_label(m, group, _kind(entry, m, role))}: mean ± sd over {len(ivs)} seeds"
            strict = ci(agg["entity_f1"]) if "entity_f1" in agg else "-"
            rows.append(
                [label, role, "", strict, "", "", ci(agg["pair_f1"]), "", "", vs_baseline(bases[(m, group, role)])]
            )
    for p in entry.get("published", []):
        x = p["metrics"]
        rows.append(
            [
                f"published, not reproduced: {p['run']}",
                "",
                "-",
                fmt(x.get("entity_f1"), 3) or "-",
                fmt(x.get("entity_precision"), 3) or "-",
                fmt(x.get("entity_recall"), 3) or "-",
                "-",
                "-",
                "",
                "",
            ]
        )
    return report.table(
        [
            "run",
            "role",
            "dtype",
            "F1, strict spans",
            "precision",
            "recall",
            "F1, (type, text) pairs",
            "unparsed lines",
            "F1 vs zero-shot (paired)",
            "F1 vs dictionary (paired)",
        ],
        rows,
        num_cols=(4, 5, 7),
        wrap_cols=(3, 6, 8, 9),
        kind="headline",
    )


def _per_type(task, entry, read):
    types = entry["entity_types"]
    rows = []
    for m, meth, role in entry["runs"]:
        x = _metrics(read, task, m, meth)
        per = (x["strict"] if x["tagger"] else x["pairs"])["per_type"]
        rows.append(
            [plots.seeded_run_label(m, meth, _kind(entry, m, role)), "strict spans" if x["tagger"] else "pairs"]
            + [fmt(per.get(t, {}).get("f1"), 2) for t in types]
        )
    support = _metrics(read, task, *entry["runs"][0][:2])["pairs"]["per_type"]
    rows.append(["gold entities in test", ""] + [support.get(t, {}).get("support", "") for t in types])
    return report.table(["run", "matching"] + types, rows, num_cols=range(2, 2 + len(types)))


def highlight(tokens, tags):
    """The sentence as HTML, each entity (strict IOB2 spans) marked with its type; every word escaped."""
    starts = {s: (k, e) for k, s, e in conll.spans(tags)}
    out, i = [], 0
    while i < len(tokens):
        if i in starts:
            kind, end = starts[i]
            out.append(f"<span style='{MARK}'>{esc(' '.join(tokens[i:end]))}<sub>{esc(kind)}</sub></span>")
            i = end
        else:
            out.append(esc(tokens[i]))
            i += 1
    return " ".join(out)


def _pairs_html(pairs, gold):
    gold = {(t, " ".join(x.lower().split())) for t, x in gold}
    items = [
        f"<span class='{'ok' if (t, ' '.join(x.lower().split())) in gold else 'bad'}'>{esc(t)}: {esc(x)}</span>"
        for t, x in pairs
    ]
    return "; ".join(items) or "<i>none</i>"


def _first_seeds(listed):
    """The runs to show sentences of: every run, a replicated fine-tune by its first seed only."""
    seen, out = set(), []
    for m, meth, role in listed:
        if (m, runs.run_group_of(meth)) not in seen:
            seen.add((m, runs.run_group_of(meth)))
            out.append((m, meth, role))
    return out


def _sentences(task, entry, read):
    shown = _first_seeds(entry["runs"])
    preds = {
        (m, meth): read.jsonl(paths.NER_PREDICTIONS.format(task=task, model=m, method=meth)) for m, meth, _ in shown
    }
    first = preds[shown[0][:2]]
    picked = [i for i, r in enumerate(first) if r["gold_pairs"]][:N_SENTENCES]
    out = []
    for i in picked:
        gold = first[i]
        cells = [f"<tr><th>gold</th><td>{highlight(gold['tokens'], gold['gold_tags'])}</td></tr>"]
        for m, meth, role in shown:
            r = preds[(m, meth)][i]
            body = (
                highlight(r["tokens"], r["pred_tags"])
                if r["pred_tags"] is not None
                else _pairs_html(r["pred_pairs"], r["gold_pairs"])
            )
            cells.append(f"<tr><th>{esc(plots.run_label(m, meth, _kind(entry, m, role)))}</th><td>{body}</td></tr>")
        out.append(f"<div class='table-wrap'><table>{''.join(cells)}</table></div>")
    return "".join(out)


def section(task, entry, read):
    """A token-classification task's section: headline scores first, then figures and details."""
    base = f"results/{task}"
    types = entry["entity_types"]
    out = [f"<h2>Task: {esc(task)} (named-entity recognition)</h2>"]
    out.append("<h3>Entity F1 on the test sentences (mean [95% bootstrap interval over sentences])</h3>")
    out.append(_headline(task, entry, read))
    out.append(published_caption(entry))
    out.append(
        "<p class='caption'><b>Strict spans</b>: seqeval in strict IOB2 mode, an entity counts only with its exact "
        "words and type; taggers only (encoder heads, the dictionary baseline). <b>(Type, text) pairs</b>: each "
        "sentence's entities as (type, text), compared as multisets after lowercasing; a prompted LLM names entities "
        "without positions, so it is scored this way only. This matching is looser than strict spans (a repeated "
        "word in the wrong place still matches); the taggers are scored both ways so that the two kinds can be "
        "compared on the pairs column. Micro-averaged over entity types. Unparsed lines: output lines of a prompted "
        "LLM that are neither 'type: text' with a known type nor 'none'. F1 vs zero-shot: the fine-tune's F1 minus "
        "its model's zero-shot F1 on the same resampled sentences, with a two-sided bootstrap p. A majority-tag "
        "baseline (every word O) would score F1 0 by construction, so the baseline row is a dictionary of the "
        "training split's entities, tagged by longest match. F1 vs dictionary: each run's F1 minus the dictionary's "
        "on the same resampled sentences (strict spans for a tagger, (type, text) pairs for a prompted LLM) "
        "[95% interval], two-sided bootstrap p; for several seeds the mean difference and the largest p.</p>"
    )
    out.append(report.image(read.path(f"{base}/figures/ner_scores.png"), f"{task} entity F1"))
    out.append("<h3>F1 per entity type</h3>" + _per_type(task, entry, read))
    out.append(report.image(read.path(f"{base}/figures/ner_per_type.png"), f"{task} F1 per type"))
    out.append("<h3>Data</h3>" + _data_table(read.json(f"{base}/data/summary.json"), types))
    out.append(grid_section(task, entry, read))
    cost = finetune_cost_table(read, task, [(m, meth) for m, meth, _ in entry["runs"]])
    if cost:
        out.append("<h3>Fine-tuning</h3>" + cost)
        out.append(report.image(read.path(f"{base}/figures/ner_training.png"), f"{task} training"))
    out.append(
        "<h3>Test sentences: gold and predicted entities</h3><p class='caption'>Entities marked with their type; for a "
        "prompted LLM its (type, text) pairs, <span class='ok'>green</span> where they match a gold pair, "
        "<span class='bad'>red</span> where not. Fine-tunes: their first seed.</p>" + _sentences(task, entry, read)
    )
    return "".join(out)


def provenance_folders(task, entry):
    return [(m, meth, paths.NER_DIR.format(task=task, model=m, method=meth), "") for m, meth, _ in entry["runs"]]


def table_rows(task, entry, read):
    """One results/metrics.csv row per run (the dictionary baseline included)."""
    out = []
    for model, method, role in entry["runs"]:
        m = _metrics(read, task, model, method)
        row = results_table.run_row(task, model, method, role)
        vs = m.get("vs_zeroshot")
        row |= {
            "n": m["n"],
            "dtype": results_table.run_dtype(read, paths.NER_DIR.format(task=task, model=model, method=method)),
            "unparsed_lines": m["unparsed_lines"],
            "f1_diff_vs_zeroshot": vs["mean"] if vs else None,
            "f1_p_vs_zeroshot": vs["p"] if vs else None,
        }
        with_vs_baseline(row, m.get("vs_baseline"))
        if row["seed"] is not None:
            row.update(results_table.finetune_cost(read, task, model, method))
        for k in TABLE_METRICS:
            if k in m["intervals"]:
                results_table.with_interval(row, k, m["intervals"][k])
        out.append(row)
    return out
