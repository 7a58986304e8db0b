"""results/metrics.csv: every result of every task in one tidy table, one row per
task x model x method x seed (x decoding point), one column per metric and its 95% interval bounds,
so a researcher loads it with pandas instead of scraping the report's HTML.

Columns that do not apply to a row (BLEU for a classifier, accuracy for generation) are empty.
"""
import csv
import io

from . import keys
from .common import atomic_write_text, read_json

CLASSIFICATION = ("accuracy", "macro_f1", "weighted_f1")
GENERATION = ("bleu", "rouge_l", "bertscore_f1")
COLUMNS = (["task", "model", "role", "method", "seed", "decoding", "n"]
           + [f"{m}{s}" for m in CLASSIFICATION + GENERATION for s in ("", "_low", "_high")]
           + ["unparsed_share", "near_misses", "mcnemar_p_vs_zeroshot", "reference_perplexity", "human_score"])


def _with_interval(row, name, m):
    row[name], row[f"{name}_low"], row[f"{name}_high"] = m["mean"], m["low"], m["high"]


def rows(tasks, base="results"):
    """tasks: the report's run listing ({task: {"type", "runs": [[model, method, role]], ...}})."""
    out = []
    for t, entry in tasks.items():
        if entry["type"] == "classification":
            pvals = {(p["model"], p["method"]): p["mcnemar"]["p"]
                     for p in read_json(f"{base}/{t}/comparison.json")["paired"]}
            for model, method, role in entry["runs"]:
                m = read_json(f"{base}/{t}/{model}/{method}/metrics.json")
                seed = keys.method_seed(method)
                row = {"task": t, "model": model, "role": role, "method": "lora" if seed is not None else method,
                       "seed": seed, "n": m["n"], "unparsed_share": m["unparsed_share"],
                       "near_misses": m.get("near_misses", {}).get("count"),
                       "mcnemar_p_vs_zeroshot": pvals.get((model, method))}
                for k in CLASSIFICATION:
                    _with_interval(row, k, m["intervals"][k])
                out.append(row)
            continue
        for model, method, role in entry["runs"]:
            ppl = read_json(f"{base}/{t}/{model}/{method}/perplexity.json")["corpus"]
            for d in entry["decodings"]:
                m = read_json(f"{base}/{t}/{model}/{method}/gen/{d}/metrics.json")
                seed = keys.method_seed(method)
                row = {"task": t, "model": model, "role": role, "method": "lora" if seed is not None else method,
                       "seed": seed, "decoding": d, "n": m["n"], "reference_perplexity": ppl,
                       "human_score": (m.get("human") or {}).get("human_evaluation_average")}
                for k in GENERATION:
                    _with_interval(row, k, m[k])
                out.append(row)
    return out


def write_csv(path, table):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())
