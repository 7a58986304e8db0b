"""Figures for the report: grouped accuracy/F1 bars, confusion matrices, training curves.
Each figure is written atomically as PNG (matplotlib's Agg backend, no display needed)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import model_kinds, runs  # noqa: E402
from .common import atomic_write_bytes  # noqa: E402
from .finetune_methods import METHOD_LABELS  # noqa: E402

BASELINE_LABELS = {
    "majority": "majority class (train)",
    "dictionary": "dictionary of train entities",
    "copy": "copy the source",
    "lead": "lead sentences of the source",
}


def run_label(model, method, kind):
    """A run's name in figures and tables. method: a run ('zeroshot', 'raw', 'baseline', 'dora-s0')
    or a fine-tune method ('dora'). kind: the model type ('causal_lm', 'encoder') or 'baseline';
    roles (base/instruct) are shown by the report only, so a role edit redraws nothing."""
    if method == "baseline":
        return BASELINE_LABELS.get(model, f"{model} baseline")
    finetuned = runs.run_method(method)
    if finetuned:
        point = runs.run_point(method)
        return f"{METHOD_LABELS[finetuned]}{' ' + point if point else ''}: {model}"
    if method == "raw":
        return f"raw prompt: {model}"
    label = model_kinds.get(kind).ZERO_SHOT_LABEL if kind in model_kinds.MODEL_KINDS else "zero-shot"
    return f"{label}: {model}"


def seeded_run_label(model, method, kind):
    """run_label, with the seed of a fine-tuned run: one label per replicate."""
    seed = runs.method_seed(method)
    return run_label(model, method, kind) + (f" (seed {seed})" if seed is not None else "")


def error_bar(m):
    """(below, above) the mean: the 95% interval of one run, or one sd across seeds."""
    if "sd" in m:
        sd = m["sd"] or 0.0
        return sd, sd
    return max(0.0, m["mean"] - m["low"]), max(0.0, m["high"] - m["mean"])


def save_fig(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def scores_bar(labels, rows, path, title=""):
    """Grouped accuracy / macro F1 / weighted F1 bars, one bar per run, with error bars: the 95%
    bootstrap interval of a single run, or +-1 sd across the seeds of a replicated fine-tune.
    rows: comparison rows, each {metric: {"mean", "low", "high"} or {"mean", "sd"}}."""
    keys = [("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("weighted_f1", "weighted F1")]
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 3), 4))
    width = 0.8 / max(1, len(labels))
    for i, (lab, row) in enumerate(zip(labels, rows)):
        xs = [k + i * width for k in range(len(keys))]
        bars = [error_bar(row[k]) for k, _ in keys]
        drawn = ax.bar(
            xs,
            [row[k]["mean"] for k, _ in keys],
            width,
            yerr=[[b[0] for b in bars], [b[1] for b in bars]],
            capsize=2,
            label=lab,
        )
        ax.bar_label(drawn, fmt="%.2f", fontsize=7, padding=6)
    ax.set_xticks([k + width * (len(labels) - 1) / 2 for k in range(len(keys))], [n for _, n in keys])
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score (95% interval; replicated runs: +-1 sd over seeds)", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    save_fig(fig, path)


def confusion_grid(labels, metrics, path):
    """One confusion matrix per run, three to a row. Long run names are wrapped onto several title
    lines and the layout engine (constrained) reserves room for titles, tick and axis labels, so
    nothing overlaps whatever the names' length."""
    import textwrap

    n = len(labels)
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    titles = [textwrap.fill(str(lab), 34, break_long_words=True, break_on_hyphens=False) for lab in labels]
    title_lines = max((t.count("\n") + 1 for t in titles), default=1)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.8 * cols, (4.6 + 0.15 * title_lines) * rows), squeeze=False, layout="constrained"
    )
    fig.get_layout_engine().set(w_pad=0.1, h_pad=0.15, wspace=0.05, hspace=0.08)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, title, m in zip(axes.flat, titles, metrics):
        cm = m["confusion_matrix"]
        ax.imshow(cm["counts"], cmap="Blues")
        ax.set_xticks(
            range(len(cm["columns"])), cm["columns"], rotation=60, ha="right", rotation_mode="anchor", fontsize=8
        )
        ax.set_yticks(range(len(cm["rows"])), cm["rows"], fontsize=8)
        top = max((max(row) for row in cm["counts"] if row), default=0)
        for i, row in enumerate(cm["counts"]):
            for j, v in enumerate(row):
                if v:
                    ax.text(
                        j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > top / 2 else "black"
                    )
        ax.set_xlabel("predicted", fontsize=9)
        ax.set_ylabel("gold", fontsize=9)
        ax.set_title(title, fontsize=9)
    save_fig(fig, path)


def training_curves(names, logs, path):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, log in zip(names, logs):
        hist = log["history"]
        ax1.plot([h["step"] for h in hist], [h["train_loss"] for h in hist], label=name, alpha=0.8)
        ev = log["evals"]
        ax2.plot([e["step"] for e in ev], [e["val_perplexity"] for e in ev], marker="o", label=name)
        if log.get("best_step") is not None:
            ax2.axvline(log["best_step"], ls=":", color="grey")
    ax1.set_xlabel("step")
    ax1.set_ylabel("training loss")
    ax2.set_xlabel("step")
    ax2.set_ylabel("validation perplexity")
    ax2.set_yscale("log")
    for ax in (ax1, ax2):
        if names:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "no fine-tune in this task", ha="center", transform=ax.transAxes)
    save_fig(fig, path)


GEN_METRICS = [("bleu", "BLEU / 100", 0.01), ("rouge_l", "ROUGE-L F", 1.0), ("bertscore_f1", "BERTScore F1", 1.0)]
SWEEP_PARAMS = ["top_k", "top_p", "num_beams", "temperature", "max_new_tokens", "repetition_penalty"]


def generation_bars(labels, metrics, path, title=""):
    """Grouped bars of BLEU/ROUGE-L/BERTScore with their 95% bootstrap intervals, one bar per run."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(labels) + 3), 4))
    width = 0.8 / max(1, len(labels))
    for i, (lab, m) in enumerate(zip(labels, metrics)):
        xs = [k + i * width for k in range(len(GEN_METRICS))]
        means = [m[key]["mean"] * s for key, _, s in GEN_METRICS]
        err = [
            [max(0.0, (m[key]["mean"] - m[key]["low"]) * s) for key, _, s in GEN_METRICS],
            [max(0.0, (m[key]["high"] - m[key]["mean"]) * s) for key, _, s in GEN_METRICS],
        ]
        bars = ax.bar(xs, means, width, yerr=err, capsize=2, label=lab)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.set_xticks([k + width * (len(labels) - 1) / 2 for k in range(len(GEN_METRICS))], [n for _, n, _ in GEN_METRICS])
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1, 1))
    save_fig(fig, path)


def decoding_sweep(series, decodings, path):
    """Each metric against each swept decoding parameter (mean over the other parameters), one
    line per model x method. series: {run label: {decoding name: metrics}}."""
    params = [p for p in SWEEP_PARAMS if len({json_key(d.get(p)) for d in decodings.values()}) > 1]
    if not params:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no decoding parameter varies: no sweep", ha="center")
        save_fig(fig, path)
        return
    fig, axes = plt.subplots(
        len(GEN_METRICS), len(params), figsize=(4 * len(params), 3 * len(GEN_METRICS)), squeeze=False
    )
    for col, p in enumerate(params):
        for row, (key, name, scale) in enumerate(GEN_METRICS):
            ax = axes[row][col]
            for label, by_dec in series.items():
                groups = {}
                for dec, m in by_dec.items():
                    groups.setdefault(decodings[dec].get(p), []).append(m[key]["mean"] * scale)
                xs = sorted(x for x in groups if x is not None)
                ax.plot(xs, [sum(groups[x]) / len(groups[x]) for x in xs], marker="o", label=label)
            ax.set_xlabel(p)
            ax.set_ylabel(name)
    axes[0][0].legend(fontsize=7)
    save_fig(fig, path)


def json_key(x):
    return repr(x)


def training_grid(summaries, path):
    """Each training grid's points against each swept parameter: the validation loss the best point
    is chosen on, then each test metric with its interval (95% bootstrap for one seed, +-1 sd over
    seeds). One line per combination of the other swept parameters; the chosen point is starred.
    summaries: [(title, grid_summary.summarize(...) output, [(metric key, axis name)])]."""
    panels = [(title, s, metrics, p) for title, s, metrics in summaries for p in s["swept"]]
    cols = 1 + max(len(m) for _, _, m in summaries)
    fig, axes = plt.subplots(
        len(panels), cols, figsize=(4.2 * cols, 3.4 * len(panels)), squeeze=False, layout="constrained"
    )
    for row, (title, s, metrics, param) in enumerate(panels):
        others = [k for k in s["swept"] if k != param]
        series = {}
        for pt in s["points"]:
            key = ", ".join(f"{k.split('.', 1)[1]}={pt['values'][k]}" for k in others) or "all points"
            series.setdefault(key, []).append(pt)
        xs_all = sorted({pt["values"][param] for pt in s["points"]}, key=_sort_key)
        pos = {x: i for i, x in enumerate(xs_all)}
        columns = [("val_loss", "validation loss (mean +-1 sd)")] + list(metrics)
        for col, (key, name) in enumerate(columns):
            ax = axes[row][col]
            for label, pts in series.items():
                pts = sorted(pts, key=lambda p: pos[p["values"][param]])
                xs = [pos[p["values"][param]] for p in pts]
                ms = [p["val_loss"] if key == "val_loss" else p["test"][key] for p in pts]
                bars = [error_bar(m) if ("sd" in m and m["sd"] is not None) or "low" in m else (0.0, 0.0) for m in ms]
                ax.errorbar(
                    xs,
                    [m["mean"] for m in ms],
                    yerr=[[b[0] for b in bars], [b[1] for b in bars]],
                    marker="o",
                    capsize=3,
                    label=label,
                )
                for p, x, m in zip(pts, xs, ms):
                    if p["name"] == s["best"]:
                        ax.plot(
                            [x],
                            [m["mean"]],
                            marker="*",
                            markersize=16,
                            color="gold",
                            markeredgecolor="black",
                            zorder=5,
                            label="best on validation" if key == "val_loss" else None,
                        )
            ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all])
            ax.set_xlabel(f"{param} (values equally spaced)", fontsize=9)
            ax.set_ylabel(name if key == "val_loss" else f"test {name}", fontsize=9)
            if col == 0:
                ax.set_title(title, fontsize=9, loc="left")
        axes[row][0].legend(fontsize=7)
        for ax in axes[row][len(columns) :]:
            ax.axis("off")
    save_fig(fig, path)


def _sort_key(x):
    return (0, x, "") if isinstance(x, (int, float)) and not isinstance(x, bool) else (1, 0, str(x))


def entity_bars(labels, rows, path, title=""):
    """Horizontal bars per run: entity F1 on strict spans (taggers) and on (type, text) pairs (every
    run), each with its 95% bootstrap interval. rows: {"entity_f1"?: interval, "pair_f1": interval}."""
    keys = [("entity_f1", "F1, strict spans (seqeval)"), ("pair_f1", "F1, (type, text) pairs")]
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(labels) + 1.5))
    height = 0.38
    for j, (key, name) in enumerate(keys):
        ys = [i + j * height for i, r in enumerate(rows) if key in r]
        vals = [r[key] for r in rows if key in r]
        if not vals:
            continue
        bars = [error_bar(v) for v in vals]
        drawn = ax.barh(
            ys,
            [v["mean"] for v in vals],
            height,
            xerr=[[b[0] for b in bars], [b[1] for b in bars]],
            capsize=2,
            label=name,
        )
        ax.bar_label(drawn, fmt="%.2f", fontsize=7, padding=8)
    ax.set_yticks([i + height / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("entity-level micro F1 (95% bootstrap interval over sentences)", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    save_fig(fig, path)


def per_type_heatmap(labels, types, values, path):
    """Runs x entity types, F1 on (type, text) pairs per type; values[i][j] (None: not scored)."""
    import numpy as np

    grid = np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(types) + 4, 0.5 * len(labels) + 1.8))
    ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    for i in range(len(labels)):
        for j in range(len(types)):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] < 0.5 else "black",
                )
    ax.set_xticks(range(len(types)), types, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_title("F1 per entity type, (type, text) pairs", fontsize=9)
    save_fig(fig, path)
