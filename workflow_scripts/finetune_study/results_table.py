"""results/metrics.csv: every result of every task in one tidy table, one row per
task x model x method (x training-grid point) x seed (x decoding point), one column per metric and its 95% interval bounds,
so a researcher loads it with pandas instead of scraping the report's HTML.

Columns that do not apply to a row (BLEU for a classifier, accuracy for generation, the fine-tune's
cost for a zero-shot row) are empty. A fine-tuned row's method is the fine-tune method (lora, dora,
ia3, prompt_tuning, prefix_tuning, full, qlora, bottleneck) and its seed is given; its cost columns come from
its train_log.json (trainable parameters and their share of the model) and Snakemake's benchmark
of its finetune job (wall time in s, peak RSS in MiB).
"""

import csv
import io

from . import paths, runs, tasks
from .common import atomic_write_text

# every registered task type's metric columns, in registry order (tasks/<type>.py TABLE_METRICS,
# TABLE_COLUMNS), each once: a metric two task types report (BLEU, ROUGE-L F, BERTScore F1 of
# generation and of source -> target tasks) is one column. A table has the same columns whatever
# tasks it holds.
_TYPES = [tasks.spec(t) for t in tasks.TASK_TYPES]
_METRICS = list(dict.fromkeys(m for t in _TYPES for m in t.TABLE_METRICS))
COLUMNS = (
    ["task", "model", "role", "method", "grid_point", "seed", "decoding", "dtype", "n"]
    + [f"{m}{s}" for m in _METRICS for s in ("", "_low", "_high")]
    + list(dict.fromkeys(c for t in _TYPES for c in t.TABLE_COLUMNS))
    + ["trainable_params", "trainable_share", "finetune_time_s", "finetune_peak_rss_mib"]
)
# the forgetting check (general_ability.py): one row per benchmarked run x standard set, lm-eval's
# acc and acc_norm with its standard errors, a fine-tune's paired difference from its base
BENCHMARK_COLUMNS = [
    "benchmark",
    "acc",
    "acc_stderr",
    "acc_norm",
    "acc_norm_stderr",
    "acc_diff_vs_base",
    "acc_diff_vs_base_low",
    "acc_diff_vs_base_high",
    "acc_norm_diff_vs_base",
    "acc_norm_diff_vs_base_low",
    "acc_norm_diff_vs_base_high",
]
COLUMNS += BENCHMARK_COLUMNS


def run_row(task, model, method, role):
    """The columns that name a run: task, model, role, fine-tune method, grid point and seed."""
    return {
        "task": task,
        "model": model,
        "role": role,
        "method": runs.run_method(method) or method,
        "grid_point": runs.run_point(method),
        "seed": runs.method_seed(method),
    }


def with_interval(row, name, m):
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


def finetune_cost(read, task, model, run):
    """A fine-tuned run's cost: trainable parameters (train_log.json) and its finetune job's wall time
    and peak RSS (Snakemake's benchmark)."""
    params = read.json(paths.TRAIN_LOG.format(task=task, model=model, method=run)).get("parameters", {})
    bench = read_benchmark(read.path(paths.FINETUNE_BENCHMARK.format(task=task, model=model, method=run)))
    return {
        "trainable_params": params.get("trainable"),
        "trainable_share": params.get("trainable_share"),
        "finetune_time_s": bench["s"],
        "finetune_peak_rss_mib": bench["max_rss"],
    }


def run_dtype(read, folder):
    """The dtype a run's model computed in, from its provenance.json (None for a baseline)."""
    try:
        return read.json(f"{folder}/provenance.json").get("dtype")
    except FileNotFoundError:
        return None


def rows(tasks_listing, read):
    """tasks_listing: the report's run listing ({task: {"type", "runs": [[model, method, role]], ...}});
    each task type writes its own rows (tasks/<type>_results.py table_rows)."""
    out = []
    for t, entry in tasks_listing.items():
        out += tasks.part(entry["type"], "results").table_rows(t, entry, read)
    return out


def write_csv(path, table):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="raise", lineterminator="\n")
    writer.writeheader()
    for r in table:
        writer.writerow({k: ("" if r.get(k) is None else r[k]) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())
