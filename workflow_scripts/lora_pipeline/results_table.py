"""results/metrics.csv: every result of every task in one tidy table, one row per
task x model x method (x training-grid point) x seed (x decoding point), one column per metric and its 95% interval bounds,
so a researcher loads it with pandas instead of scraping the report's HTML.

Columns that do not apply to a row (BLEU for a classifier, accuracy for generation, the fine-tune's
cost for a zero-shot row) are empty. A fine-tuned row's method is the fine-tune method (lora, dora,
ia3, prompt_tuning, prefix_tuning, full, qlora) and its seed is given; its cost columns come from
its train_log.json (trainable parameters and their share of the model) and Snakemake's benchmark
of its finetune job (wall time in s, peak RSS in MiB).
"""

import csv
import io

from . import keys
from .common import atomic_write_text, read_json

CLASSIFICATION = ("accuracy", "macro_f1", "weighted_f1")
GENERATION = ("bleu", "rouge_l", "bertscore_f1")
COLUMNS = (
    ["task", "model", "role", "method", "grid_point", "seed", "decoding", "dtype", "n"]
    + [f"{m}{s}" for m in CLASSIFICATION + GENERATION for s in ("", "_low", "_high")]
    + [
        "unparsed_share",
        "near_misses",
        "mcnemar_p_vs_zeroshot",
        "reference_perplexity",
        "human_score",
        "trainable_params",
        "trainable_share",
        "finetune_time_s",
        "finetune_peak_rss_mib",
    ]
)


def _with_interval(row, name, m):
    row[name], row[f"{name}_low"], row[f"{name}_high"] = m["mean"], m["low"], m["high"]


def read_benchmark(path):
    """Snakemake's benchmark TSV of one job: {"s": wall seconds, "max_rss": peak RSS in MiB} (None
    where it was not measured: 'NA' or '-')."""
    with open(path, encoding="utf-8") as f:
        row = next(csv.DictReader(f, delimiter="\t"), {}) or {}

    def num(k):
        try:
            return float(row[k])
        except (KeyError, TypeError, ValueError):
            return None

    return {"s": num("s"), "max_rss": num("max_rss")}


def finetune_cost(task, model, run, base="results", benchmarks="benchmarks"):
    """A fine-tuned run's cost: trainable parameters (train_log.json) and its finetune job's wall time
    and peak RSS (Snakemake's benchmark)."""
    params = read_json(f"{base}/{task}/{model}/{run}/train_log.json").get("parameters", {})
    bench = read_benchmark(f"{benchmarks}/finetune/{task}/{model}/{run}.tsv")
    return {
        "trainable_params": params.get("trainable"),
        "trainable_share": params.get("trainable_share"),
        "finetune_time_s": bench["s"],
        "finetune_peak_rss_mib": bench["max_rss"],
    }


def run_dtype(folder):
    """The dtype a run's model computed in, from its provenance.json (None for a baseline)."""
    try:
        return read_json(f"{folder}/provenance.json").get("dtype")
    except FileNotFoundError:
        return None


def rows(tasks, base="results", benchmarks="benchmarks"):
    """tasks: the report's run listing ({task: {"type", "runs": [[model, method, role]], ...}})."""
    out = []
    for t, entry in tasks.items():
        if entry["type"] == "classification":
            pvals = {
                (p["model"], p["method"]): p["mcnemar"]["p"] for p in read_json(f"{base}/{t}/comparison.json")["paired"]
            }
            for model, method, role in entry["runs"]:
                m = read_json(f"{base}/{t}/{model}/{method}/metrics.json")
                seed = keys.method_seed(method)
                row = {
                    "task": t,
                    "model": model,
                    "role": role,
                    "method": keys.run_method(method) or method,
                    "grid_point": keys.run_point(method),
                    "seed": seed,
                    "n": m["n"],
                    "unparsed_share": m["unparsed_share"],
                    "near_misses": m.get("near_misses", {}).get("count"),
                    "dtype": run_dtype(f"{base}/{t}/{model}/{method}"),
                    "mcnemar_p_vs_zeroshot": pvals.get((model, method)),
                }
                if seed is not None:
                    row.update(finetune_cost(t, model, method, base, benchmarks))
                for k in CLASSIFICATION:
                    _with_interval(row, k, m["intervals"][k])
                out.append(row)
            continue
        for model, method, role in entry["runs"]:
            ppl = read_json(f"{base}/{t}/{model}/{method}/perplexity.json")["corpus"]
            seed = keys.method_seed(method)
            cost = finetune_cost(t, model, method, base, benchmarks) if seed is not None else {}
            for d in entry["decodings"]:
                folder = f"{base}/{t}/{model}/{method}/gen/{entry.get('shared', {}).get(d, d)}"
                m = read_json(f"{folder}/metrics.json")
                row = {
                    "task": t,
                    "model": model,
                    "role": role,
                    "method": keys.run_method(method) or method,
                    "grid_point": keys.run_point(method),
                    "seed": seed,
                    "decoding": d,
                    "n": m["n"],
                    "reference_perplexity": ppl,
                    "human_score": (m.get("human") or {}).get("human_evaluation_average"),
                    "dtype": run_dtype(folder),
                    **cost,
                }
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
