"""The figure of a source -> target task's scores: one group of horizontal bars per run (and
decoding point), one bar per metric with its 95% bootstrap interval (or +-1 sd over seeds), every
metric on a 0-1 scale (sacreBLEU's BLEU and chrF++ divided by 100)."""

from .plots import error_bar, plt, save_fig

METRIC_LABELS = {
    "rouge1": ("ROUGE-1 F", 1.0),
    "rouge2": ("ROUGE-2 F", 1.0),
    "rouge_l": ("ROUGE-L F", 1.0),
    "rouge_lsum": ("ROUGE-Lsum F", 1.0),
    "bleu": ("BLEU / 100", 0.01),
    "chrf": ("chrF++ / 100", 0.01),
    "bertscore_f1": ("BERTScore F1", 1.0),
}


def target_bars(labels, intervals, metrics, path, title=""):
    """labels: one per run; intervals: per run {metric: {"mean", "low", "high"}}; metrics: which to draw."""
    fig, ax = plt.subplots(figsize=(9, (0.28 * len(metrics) + 0.25) * len(labels) + 1.5))
    height = 0.8 / len(metrics)
    for j, key in enumerate(metrics):
        name, scale = METRIC_LABELS[key]
        vals = [{k: v * scale for k, v in iv[key].items() if v is not None} for iv in intervals]
        bars = [error_bar(v) for v in vals]
        drawn = ax.barh(
            [i + j * height for i in range(len(labels))],
            [v["mean"] for v in vals],
            height,
            xerr=[[b[0] for b in bars], [b[1] for b in bars]],
            capsize=2,
            label=name,
        )
        ax.bar_label(drawn, fmt="%.2f", fontsize=6, padding=8)
    ax.set_yticks([i + height * (len(metrics) - 1) / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("score (95% bootstrap interval over test sources)", fontsize=8)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right")
    save_fig(fig, path)
