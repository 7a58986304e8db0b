"""A training grid's results, point by point, and the point chosen on the validation split.

For each fine-tune with a grid (model x method), every point gets:
- its validation loss: the best validation loss of its training run (the early-stopping criterion),
  mean and sample sd over its seeds;
- its test metrics: point estimate and 95% bootstrap interval for one seed, mean and sd over seeds.

The best point is the one with the lowest mean validation loss. Test metrics are reported next to it
but never consulted in the choice, so the test split stays a held-out estimate of the chosen point.
"""

from . import stats


def _test_summary(per_seed, metric):
    """One point's test metric: the single seed's {"mean","low","high"}, else mean and sd over seeds."""
    if len(per_seed) == 1:
        return dict(per_seed[0][metric])
    agg = stats.mean_sd([m[metric]["mean"] for m in per_seed])
    return {"mean": agg["mean"], "sd": agg["sd"]}


def summarize(points, val_losses, test_metrics, metric_names):
    """points: {point: {swept key: value}} of one fine-tune, in grid order.
    val_losses: {point: [best validation loss per seed]}.
    test_metrics: {point: [per-seed {metric: {"mean", "low", "high"}}]}.
    Returns {"swept": [keys], "points": [{name, values, val_loss, test}], "best": name}."""
    if not points:
        raise ValueError("a training grid with no points")
    swept = list(next(iter(points.values())))
    rows = []
    for name, values in points.items():
        losses = val_losses[name]
        if not losses:
            raise ValueError(f"grid point {name}: no validation loss")
        rows.append(
            {
                "name": name,
                "values": values,
                "val_loss": stats.mean_sd(losses),
                "test": {k: _test_summary(test_metrics[name], k) for k in metric_names},
            }
        )
    best = min(rows, key=lambda r: (r["val_loss"]["mean"], r["name"]))
    return {"swept": swept, "points": rows, "best": best["name"], "chosen_on": "validation loss (mean over seeds)"}
