"""Source -> target, the report's part: the task's section (the field's metrics per run and decoding
point with intervals, the paired comparisons with zero-shot and with the strongest baseline, the baselines, figures, fine-tuning,
side-by-side samples) and its rows of results/metrics.csv. `read`: the report job's declared inputs
(paths.DeclaredInputs)."""

from .. import paths, plots, report, results_table, runs, stats
from ..report import esc, fmt
from ..report_blocks import (
    N_SAMPLES,
    NBSP,
    ci,
    finetune_cost_table,
    grid_section,
    published_caption,
    pvalue,
    short_dtype,
    vs_baseline,
    with_vs_baseline,
)
from ..target_plots import METRIC_LABELS
from .source_target import BASELINE_DECODING, HEADLINE, TABLE_METRICS

FIELD_TITLE = {"summarization": "summarization", "translation": "translation"}


def _kind(role, model_kind):
    return "baseline" if role == "baseline" else model_kind


def _points(task, entry):
    """(model, run, role, decoding name, folder) of every row, in report order."""
    out = []
    for m, meth, role in entry["runs"]:
        names = [BASELINE_DECODING] if meth == "baseline" else list(entry["decodings"])
        for d in names:
            folder = (
                paths.TARGET_DIR.format(task=task, model=m, method=meth, decoding=d)
                if meth == "baseline"
                else paths.TARGET_DIR.format(task=task, model=m, method=meth, decoding=entry["shared"][d])
            )
            out.append((m, meth, role, d, folder))
    return out


def _perplexity(read, task, model, method):
    if method == "baseline":
        return None
    return read.json(paths.TARGET_PERPLEXITY.format(task=task, model=model, method=method))["corpus"]


def strongest_baseline(task, entry, read):
    """The baseline (copy, lead) with the highest headline metric on the test split, or None."""
    head, best = HEADLINE[entry["field"]], None
    for m, meth, _ in entry["runs"]:
        if meth == "baseline":
            score = read.json(
                f"{paths.TARGET_DIR.format(task=task, model=m, method=meth, decoding=BASELINE_DECODING)}/metrics.json"
            )["intervals"][head]["mean"]
            if best is None or score > best[1]:
                best = (m, score)
    return best and best[0]


def vs_strongest(x, entry, strongest):
    """A run's paired test on the headline metric against the strongest baseline ({"baseline",
    "metric", "diff", "low", "high", "p"}), or None."""
    head = HEADLINE[entry["field"]]
    t = ((x.get("vs_baselines") or {}).get(strongest) or {}).get(head)
    return {"baseline": strongest, "metric": head, **t} if t else None


def _headline(task, entry, read, kinds):
    names, head = entry["metrics"], HEADLINE[entry["field"]]
    strongest = strongest_baseline(task, entry, read)
    rows, groups, bases = [], {}, {}
    for m, meth, role, d, folder in _points(task, entry):
        x = read.json(f"{folder}/metrics.json")
        iv, vs = x["intervals"], (x.get("vs_zeroshot") or {}).get(head)
        shared = entry["shared"].get(d, d)
        rows.append(
            [
                plots.seeded_run_label(m, meth, _kind(role, kinds.get(m))),
                "-" if meth == "baseline" else d + (f" (= {shared})" if shared != d else ""),
                "-" if meth == "baseline" else short_dtype(results_table.run_dtype(read, folder)),
                *[ci(iv[k]) for k in names],
                fmt(_perplexity(read, task, m, meth), 2) or "-",
                (f"{vs['diff']:+.3f} [{vs['low']:+.3f},{NBSP}{vs['high']:+.3f}] (p {pvalue(vs['p'])})") if vs else "",
                vs_baseline([vs_strongest(x, entry, strongest)]),
            ]
        )
        if runs.method_seed(meth) is not None:
            groups.setdefault((m, runs.run_group_of(meth), role, d), []).append(iv)
            bases.setdefault((m, runs.run_group_of(meth), role, d), []).append(vs_strongest(x, entry, strongest))
    for (m, group, role, d), ivs in groups.items():
        if len(ivs) > 1:  # replicated fine-tunes: mean and sd over seeds
            agg = [ci(stats.mean_sd([iv[k]["mean"] for iv in ivs])) for k in names]
            label = f"{plots.run_label(m, group, kinds.get(m))}: mean ± sd over {len(ivs)} seeds"
            rows.append([label, d, "", *agg, "", "", vs_baseline(bases[(m, group, role, d)])])
    for p in entry.get("published", []):
        x = p["metrics"]
        rows.append(
            [f"published, not reproduced: {p['run']}", "as published", "-"]
            + [fmt(x[k], 3) if k in x else "-" for k in names]
            + [fmt(x.get("perplexity"), 2) or "-", "", ""]
        )
    header = ["run", "decoding", "dtype", *[METRIC_LABELS[k][0].replace(" / 100", "") for k in names]]
    label = METRIC_LABELS[head][0].replace(" / 100", "")
    header += ["reference perplexity", f"{label} vs zero-shot (paired)"]
    header += [f"{label} vs strongest baseline ({strongest or '-'}, paired)"]
    n = len(names)
    return report.table(header, rows, num_cols=(3 + n,), wrap_cols=(*range(3, 3 + n), 5 + n), kind="headline")


def _caption(entry, signatures):
    if entry["field"] == "summarization":
        text = (
            "ROUGE: rouge-score F-measures with the Porter stemmer, each output against each of its source's "
            "references and the best kept; ROUGE-Lsum on the texts split into sentences (one per line). "
        )
    else:
        text = (
            f"sacreBLEU corpus BLEU and chrF++ (character 6-grams plus word 2-grams) against every reference of a "
            f"source at once. BLEU tokenizer: {esc(entry['bleu_tokenize'])}"
            + (
                " (intl splits every Unicode punctuation mark; 13a splits ASCII punctuation only and would leave "
                "'؟' and '،' attached to the words)"
                if entry["bleu_tokenize"] == "intl"
                else ""
            )
            + ". "
        )
    text += (
        "BERTScore F1: the best over a source's references. Intervals: 95% percentile bootstrap over test sources "
        "(corpus metrics recomputed on each resample). Reference perplexity: every reference's tokens given the "
        "model's input. The vs zero-shot column: the fine-tune minus its model's zero-shot score on the same "
        "resampled sources, with a two-sided bootstrap p. The vs strongest baseline column: each run minus the "
        "baseline with the highest headline score, on the same resampled sources [95% interval], two-sided "
        "bootstrap p (for several seeds the mean difference and the largest p; every metric against every "
        "baseline is in the run's metrics.json). Baselines need no model: the source copied as the "
        "output"
        + (", and its lead sentences up to the references' mean length" if entry["field"] == "summarization" else "")
        + "; a fine-tune that cannot beat them has learnt nothing of use."
    )
    sig = "".join(f"<br><code>{esc(k)}: {esc(v)}</code>" for k, v in signatures.items())
    return f"<p class='caption'>{text}{sig}</p>"


def _data_table(summary):
    rows = [
        [
            s,
            v["rows"],
            v["references"],
            v["max_references"],
            fmt(v["source_words_mean"], 1),
            fmt(v["reference_words_mean"], 1),
            v["duplicates_removed"],
        ]
        for s, v in summary["splits"].items()
    ]
    return report.table(
        [
            "split",
            "sources",
            "references",
            "most per source",
            "source words (mean)",
            "reference words (mean)",
            "repeated sources removed",
        ],
        rows,
        num_cols=range(1, 7),
    ) + (
        "<p class='caption'>Splits are made by source: a source in the test split is removed from the others, "
        "so no test source is trained on. Words: whitespace-separated.</p>"
    )


def _samples(task, entry, read, kinds):
    first = next(iter(entry["decodings"]))
    shown, seen = [], set()
    for m, meth, role, d, folder in _points(task, entry):
        key = (m, runs.run_group_of(meth))
        if (d == first or meth == "baseline") and key not in seen:  # a replicated fine-tune: its first seed
            seen.add(key)
            shown.append((plots.run_label(m, meth, _kind(role, kinds.get(m))), read.jsonl(f"{folder}/outputs.jsonl")))
    rows = []
    for i, r in enumerate(shown[0][1][:N_SAMPLES]):
        refs = "\n\n".join(f"({j + 1}) {x[:300]}" for j, x in enumerate(r["references"][:3]))
        rows.append([r["source"][:500], refs] + [out[i]["output"][:400] for _, out in shown])
    return f"<h3>Side-by-side samples (decoding: {esc(first)})</h3>" + report.table(
        ["source", "references"] + [label for label, _ in shown], rows
    )


def section(task, entry, read):
    """A source -> target task's section: headline scores first, then figures and details."""
    base = f"results/{task}"
    kinds = entry["model_kinds"]
    out = [f"<h2>Task: {esc(task)} ({FIELD_TITLE[entry['field']]})</h2>"]
    out.append("<h3>Scores on the test sources (mean [95% bootstrap interval])</h3>")
    out.append(_headline(task, entry, read, kinds))
    signatures = {}
    for *_, folder in _points(task, entry):
        signatures.update(read.json(f"{folder}/metrics.json").get("signatures") or {})
        break
    out.append(_caption(entry, signatures))
    out.append(published_caption(entry))
    out.append(report.image(read.path(f"{base}/figures/target_scores.png"), f"{task} scores"))
    out.append("<h3>Data</h3>" + _data_table(read.json(f"{base}/data/summary.json")))
    out.append(grid_section(task, entry, read))
    cost = finetune_cost_table(read, task, [(m, meth) for m, meth, _ in entry["runs"]])
    if cost:
        out.append("<h3>Fine-tuning</h3>" + cost)
        out.append(report.image(read.path(f"{base}/figures/target_training.png"), f"{task} training"))
    out.append(_samples(task, entry, read, kinds))
    return "".join(out)


def provenance_folders(task, entry):
    """(model, run, folder, decoding) of every output set's provenance.json."""
    return [(m, meth, folder, "" if meth == "baseline" else d) for m, meth, _, d, folder in _points(task, entry)]


def table_rows(task, entry, read):
    """One results/metrics.csv row per run and decoding point (the baselines included)."""
    out, head = [], HEADLINE[entry["field"]]
    strongest = strongest_baseline(task, entry, read)
    for model, method, role, d, folder in _points(task, entry):
        m = read.json(f"{folder}/metrics.json")
        vs = (m.get("vs_zeroshot") or {}).get(head)
        row = results_table.run_row(task, model, method, role) | {
            "decoding": "" if method == "baseline" else d,
            "n": m["n"],
            "dtype": None if method == "baseline" else results_table.run_dtype(read, folder),
            "reference_perplexity": _perplexity(read, task, model, method),
            "headline_metric": head,
            "headline_diff_vs_zeroshot": vs["diff"] if vs else None,
            "headline_p_vs_zeroshot": vs["p"] if vs else None,
        }
        with_vs_baseline(row, vs_strongest(m, entry, strongest))
        if row["seed"] is not None:
            row.update(results_table.finetune_cost(read, task, model, method))
        for k in TABLE_METRICS:
            if k in m["intervals"]:
                results_table.with_interval(row, k, m["intervals"][k])
        out.append(row)
    return out
