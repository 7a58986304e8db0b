"""The runs of a task and their names: zero-shot, raw prompt, and one fine-tuned run per fine-tune
entry (model x method x training-grid point) and seed, named <method>[-<point>]-s<seed>
(lora-s0, dora-s1, lora-r8_lr0.001-s0), and the grammar that parses those names back.

Standard library only: it runs at Snakemake parse time.
"""

import re

from . import training_grid
from .finetune_methods import FINETUNE_METHODS

# a fine-tuned run's name: <method>[-<point>]-s<seed>, e.g. lora-s0, dora-s1, lora-r8_lr0.001-s0 (the
# regex the rules constrain it to; a training-grid point's name is letters, digits, '_' and '.')
FINETUNED_RUN = "(" + "|".join(FINETUNE_METHODS) + ")(-[A-Za-z0-9_.]+)?-s-?[0-9]+"


def finetune_seeds(ft):
    """Replicate seeds of one fine-tune entry: training.seeds, else [training.seed]."""
    t = ft["training"]
    return list(t.get("seeds") or [t["seed"]])


def entry_method(ft):
    return ft.get("method", "lora")


def finetune_entries(task):
    """(model, entry) of every fine-tune of a task, in config order. `finetune.<model>` is one entry
    (a mapping) or a list of entries, one per method; an entry's method defaults to lora. An entry
    with a `grid:` stands for one entry per grid point (training_grid.expand), each with its
    `point` name and the values it `swept`."""
    out = []
    for model, value in task.get("finetune", {}).items():
        for ft in value if isinstance(value, list) else [value]:
            out += [(model, point) for point in training_grid.expand(ft).values()]
    return out


def finetune_entry(task, model_name, method, point=None):
    """The fine-tune entry of model_name with this method (and grid point), KeyError naming them
    when there is none."""
    for m, ft in finetune_entries(task):
        if m == model_name and entry_method(ft) == method and ft.get("point") == point:
            return ft
    raise KeyError(
        f"no fine-tune of '{model_name}' with method '{method}'"
        + (f" and grid point '{point}'" if point else "")
        + " in this task"
    )


def run_group(method, point=None):
    """A fine-tune's name without its seed: 'lora', or 'lora-r8_lr0.001' for a grid point; the
    report's row of a fine-tune (its seeds aggregated) is named by it."""
    return f"{method}-{point}" if point else method


def run_name(method, seed, point=None):
    """A fine-tuned run's name (its folder under results/<task>/<model>/): '<method>-s<seed>', or
    '<method>-<point>-s<seed>' for a training-grid point."""
    return f"{run_group(method, point)}-s{seed}"


def parse_group(group):
    """(method, point) of a fine-tune's name without seed ('lora' -> ('lora', None),
    'lora-r8_lr0.001' -> ('lora', 'r8_lr0.001')); None if it names no fine-tune method."""
    method, _, point = group.partition("-")
    if method not in FINETUNE_METHODS or (point and not re.fullmatch(r"[A-Za-z0-9_.]+", point)):
        return None
    return method, point or None


def parse_run_point(run):
    """(method, point, seed) of a fine-tuned run's name ('lora-r8_lr0.001-s2' -> ('lora', 'r8_lr0.001', 2),
    'dora-s0' -> ('dora', None, 0)); None for other runs (zeroshot, raw, baseline)."""
    group, sep, seed = run.rpartition("-s")
    parsed = parse_group(group) if sep else None
    if parsed is None:
        return None
    try:
        return parsed[0], parsed[1], int(seed)
    except ValueError:
        return None


def parse_run(run):
    """(method, seed) of a fine-tuned run's name ('dora-s2' -> ('dora', 2)); None for other runs
    (zeroshot, raw, baseline)."""
    parsed = parse_run_point(run)
    return (parsed[0], parsed[2]) if parsed else None


def run_group_of(run):
    """A fine-tuned run's name without its seed ('lora-r8-s1' -> 'lora-r8', 'dora-s0' -> 'dora');
    other runs' names unchanged."""
    parsed = parse_run_point(run)
    return run_group(parsed[0], parsed[1]) if parsed else run


def run_point(run):
    """The training-grid point of a run or fine-tune name ('lora-r8-s0' or 'lora-r8' -> 'r8'), else None."""
    parsed = parse_run_point(run) or parse_group(run)
    return parsed[1] if parsed else None


def method_seed(run):
    """Seed of a fine-tuned run's name ('lora-s2' -> 2), None for other runs."""
    parsed = parse_run(run)
    return parsed[1] if parsed else None


def run_method(run):
    """The fine-tune method of a run's name, a fine-tune's name or a method name ('ia3-s0',
    'ia3-r8' and 'ia3' -> 'ia3'), None for runs that are not fine-tuned."""
    parsed = parse_run_point(run) or parse_group(run)
    return parsed[0] if parsed else None


def methods(task):
    """(model, run) pairs of a task, in report order: zero-shot, raw prompt, then one fine-tuned run
    per fine-tune entry (model x method x grid point) and seed, in config order."""
    pairs = [(m, "zeroshot") for m in task["models"]]
    pairs += [(m, "raw") for m in task.get("raw_prompt_models", [])]
    pairs += [
        (m, run_name(entry_method(ft), s, ft.get("point")))
        for m, ft in finetune_entries(task)
        for s in finetune_seeds(ft)
    ]
    return pairs


def grid_points(task):
    """{(model, method): {point: swept values}} of every fine-tune with a training grid."""
    out = {}
    for m, ft in finetune_entries(task):
        if ft.get("point"):
            out.setdefault((m, entry_method(ft)), {})[ft["point"]] = ft["swept"]
    return out


def finetuned(task):
    """(model, run) of every fine-tuned run of a task, in report order."""
    return [(m, r) for m, r in methods(task) if method_seed(r) is not None]


def first_finetune(task, model_name):
    """The first fine-tune entry of a model in a task (config order), or None."""
    return next((ft for m, ft in finetune_entries(task) if m == model_name), None)


def encoder_max_length(task, model_name, run, default):
    """Truncation of an encoder's inputs: a fine-tuned run's own max_length; for the zero-shot row the
    model's first fine-tune's (so it sees that fine-tune's tokens), else `default`."""
    parsed = parse_run_point(run) if run else None
    ft = finetune_entry(task, model_name, parsed[0], parsed[1]) if parsed else first_finetune(task, model_name)
    return ft["training"]["max_length"] if ft else default


def head_seed(task, model_name):
    """Seed of an encoder's untrained head for its zero-shot row: the first seed of the model's first
    fine-tune, so the zero-shot row is that fine-tune's starting point."""
    ft = first_finetune(task, model_name)
    return finetune_seeds(ft)[0] if ft else 0


# results/metrics.csv columns of a run's paired test against its task's strongest baseline (the
# task types with a baseline list them in TABLE_COLUMNS; report_blocks.with_vs_baseline fills them)
VS_BASELINE_COLUMNS = (
    "baseline_compared",
    "baseline_metric",
    "diff_vs_baseline",
    "diff_vs_baseline_low",
    "diff_vs_baseline_high",
    "p_vs_baseline",
)
