"""The training grid: a fine-tune entry with a `grid:` becomes one named point per combination.

    finetune:
      minilm_l6:
        lora: {r: 8, alpha: 16, target_modules: [query, value]}     # the base of every point
        training: {max_steps: 100, learning_rate: 0.001, seeds: [0, 1]}
        grid: {lora.r: [4, 8, 16], training.learning_rate: [0.0001, 0.001]}

Each point is the entry with the grid's values set (dotted keys: block.setting, blocks lora, ia3,
prompt, bottleneck, training). Its name joins short setting names and values in a fixed order, like the
decoding grid's points: r8_lr0.001. A point is an ordinary fine-tune of its own (run
<method>-<point>-s<seed>, e.g. lora-r8_lr0.001-s0), so it is cached, predicted and scored by
itself: adding a value runs only the new points, removing one reruns only figures and report.

Standard library only: it runs at Snakemake parse time.
"""

import copy
import itertools
import re

BLOCKS = ("lora", "ia3", "prompt", "bottleneck", "training")
SHORT = {
    "lora.r": "r",
    "lora.alpha": "alpha",
    "lora.dropout": "do",
    "lora.bias": "bias",
    "lora.use_rslora": "rslora",
    "training.learning_rate": "lr",
    "training.max_steps": "steps",
    "training.epochs": "ep",
    "training.batch_size": "bs",
    "training.weight_decay": "wd",
    "training.warmup_ratio": "wu",
    "training.max_length": "len",
    "training.patience": "pat",
    "prompt.num_virtual_tokens": "vt",
    "bottleneck.reduction_factor": "rf",
    "bottleneck.config": "bn",
    "bottleneck.non_linearity": "act",
}
NOT_SWEPT = {
    "training.seed": "seeds are their own axis: set training.seeds",
    "training.seeds": "seeds are their own axis: set training.seeds in the base",
    "training.checkpoint_every": "it changes no result",
}
NAME_CHARS = re.compile(r"[^A-Za-z0-9_.]")


def short_name(key):
    return SHORT.get(key, key.split(".", 1)[1])


def format_value(v) -> str:
    """A value as it reads in a point name: 1.0 -> '1', 0.001 -> '0.001', True -> 'true'; characters
    other than letters, digits, '_' and '.' are dropped ('-' becomes 'm': -1 -> 'm1')."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    text = repr(v) if isinstance(v, float) else str(v)
    return NAME_CHARS.sub("", text.replace("-", "m"))


def check_grid(grid):
    """ValueError, one line naming the key, for a grid that cannot be expanded."""
    if not isinstance(grid, dict) or not grid:
        raise ValueError("grid: give a mapping of block.setting -> list of values, e.g. {lora.r: [4, 8]}")
    for key, values in grid.items():
        block, dot, name = key.partition(".")
        if not dot or block not in BLOCKS or not name:
            raise ValueError(
                f"grid.{key}: sweep a setting as block.setting with block one of {list(BLOCKS)} "
                f"(e.g. lora.r, training.learning_rate)"
            )
        if key in NOT_SWEPT:
            raise ValueError(f"grid.{key}: cannot be swept; {NOT_SWEPT[key]}")
        if not isinstance(values, list) or not values:
            raise ValueError(f"grid.{key}: needs a non-empty list of values, got {values!r}")
        if any(isinstance(v, (dict, list)) for v in values):
            raise ValueError(
                f"grid.{key}: values must be numbers, strings or booleans (a list-valued setting is "
                f"swept by one fine-tune entry per value)"
            )


def expand(entry):
    """{point name: entry} for a fine-tune entry with a grid (the entry itself, without `grid`, is
    the base of every point); {None: entry} for one without."""
    grid = entry.get("grid")
    if not grid:
        return {None: entry}
    check_grid(grid)
    base = {k: v for k, v in entry.items() if k != "grid"}
    keys = list(grid)
    points = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        name = "_".join(f"{short_name(k)}{format_value(v)}" for k, v in zip(keys, values))
        if name in points:
            raise ValueError(f"grid: two points are both named '{name}' (a repeated value?)")
        point = copy.deepcopy(base)
        for k, v in zip(keys, values):
            block, _, setting = k.partition(".")
            point.setdefault(block, {})[setting] = v
        point["point"] = name
        point["swept"] = dict(zip(keys, values))
        points[name] = point
    return points
