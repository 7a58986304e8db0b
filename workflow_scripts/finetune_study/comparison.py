"""One task's runs side by side: the report's headline rows and the paired tests.

- A row per zero-shot, raw-prompt and baseline run, with its metrics and 95% bootstrap intervals.
- A row per fine-tune (model x method x training-grid point), across its seeds: with one seed its metrics and intervals; with
  several, mean and sample standard deviation across seeds, each seed's values kept for the
  report's details block and the figures' error bars.
- Each fine-tuned run against its own model's zero-shot run on the same test items: the exact
  McNemar test (stats.mcnemar) and the paired bootstrap interval of the accuracy difference.
- Each zero-shot, raw-prompt and fine-tuned run against the task's baseline (the majority class) on
  the same test items, the same two ways (baseline_tests).
"""

from . import runs as run_names
from . import stats

METRICS = ("accuracy", "macro_f1", "weighted_f1")


def representative_run(row):
    """(model, method) of the run that stands for a headline row: the row's own run, or the
    lowest seed of a replicated fine-tune (for its confusion matrix, head and role)."""
    return row["model"], (min(row["runs"], key=run_names.method_seed) if "runs" in row else row["method"])


def correct(rows):
    """Per-item correctness, ordered by item id (so two runs pair up item by item)."""
    return [r["pred"] == r["gold"] for r in sorted(rows, key=lambda r: r["id"])]


def rows_of(runs, metrics):
    """Headline rows in report order. runs: [(model, method)]; metrics: {(model, method): metrics}."""
    out, groups = [], {}
    for model, method in runs:
        parsed = run_names.parse_run(method)
        if parsed is None:
            m = metrics[(model, method)]
            out.append(
                {
                    "model": model,
                    "method": method,
                    "seeds": [],
                    "n": m["n"],
                    **{k: m["intervals"][k] for k in METRICS},
                    "unparsed_share": m["unparsed_share"],
                }
            )
            continue
        # the row's method is the fine-tune (lora, dora, ..., or lora-r8_lr0.001 for a grid point), its runs the seeds
        finetune, point, seed = run_names.parse_run_point(method)
        group = run_names.run_group(finetune, point)
        if (model, group) not in groups:
            groups[(model, group)] = {"model": model, "method": group, "point": point, "seeds": [], "runs": []}
            out.append(groups[(model, group)])
        groups[(model, group)]["seeds"].append(seed)
        groups[(model, group)]["runs"].append(method)
    for g in groups.values():
        per_seed = [metrics[(g["model"], meth)] for meth in g["runs"]]
        g["n"] = per_seed[0]["n"]
        g["unparsed_share"] = sum(m["unparsed_share"] for m in per_seed) / len(per_seed)
        if len(per_seed) == 1:
            g.update({k: per_seed[0]["intervals"][k] for k in METRICS})
        else:
            agg = stats.aggregate_seeds([{k: m[k] for k in METRICS} for m in per_seed])
            g.update({k: {"mean": agg[k]["mean"], "sd": agg[k]["sd"]} for k in METRICS})
        g["per_seed"] = [{"seed": s, **{k: m["intervals"][k] for k in METRICS}} for s, m in zip(g["seeds"], per_seed)]
    return out


def paired_tests(runs, predictions, n_resamples=1000):
    """Every fine-tuned run against the zero-shot run of the same model (when that model has one)."""
    out = []
    for model, method in runs:
        if run_names.method_seed(method) is None or (model, "zeroshot") not in predictions:
            continue
        a, b = correct(predictions[(model, "zeroshot")]), correct(predictions[(model, method)])
        if len(a) != len(b):
            raise ValueError(f"{model}: zero-shot and {method} predictions cover different test items")
        out.append(
            {
                "model": model,
                "method": method,
                "against": "zeroshot",
                "mcnemar": stats.mcnemar(a, b),
                "accuracy_difference": stats.paired_bootstrap_diff(a, b, n_resamples=n_resamples),
            }
        )
    return out


def baseline_tests(runs, predictions, n_resamples=1000, baseline=("majority", "baseline")):
    """Every run that is not a baseline against the task's baseline row (the majority class) on the
    same items: {"model", "method", "baseline", "metric": "accuracy", "diff", "low", "high" (run minus
    baseline, paired bootstrap interval), "p" (exact McNemar), "mcnemar"}."""
    if baseline not in predictions:
        return []
    base = correct(predictions[baseline])
    out = []
    for model, method in runs:
        if method == "baseline":
            continue
        mine = correct(predictions[(model, method)])
        if len(mine) != len(base):
            raise ValueError(f"{model}: the {baseline[0]} baseline and {method} predictions cover different test items")
        test = stats.mcnemar(base, mine)
        diff = stats.paired_bootstrap_diff(base, mine, n_resamples=n_resamples)
        out.append(
            {
                "model": model,
                "method": method,
                "baseline": baseline[0],
                "metric": "accuracy",
                "diff": diff["mean"],
                "low": diff["low"],
                "high": diff["high"],
                "p": test["p"],
                "mcnemar": test,
            }
        )
    return out
