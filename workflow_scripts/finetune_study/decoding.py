"""Decoding settings: range checks, grid expansion into named points, and model.generate kwargs.
Standard library only, so Snakemake can check and expand decodings at parse time."""

import itertools

GENERATE_KEYS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "repetition_penalty")
SHORT = {
    "top_k": "topk",
    "top_p": "topp",
    "num_beams": "nb",
    "temperature": "t",
    "max_new_tokens": "len",
    "repetition_penalty": "rp",
}
INT_KEYS = ("top_k", "num_beams", "max_new_tokens")


def _is_number(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_decoding(name, params) -> None:
    """Raise ValueError, one line naming the decoding and the setting, for an impossible value.
    Settings that are absent or None are left to the model's defaults."""
    p = {k: v for k, v in params.items() if v is not None}
    where = f"decoding '{name}'"
    for k in SHORT:
        if k in p and not _is_number(p[k]):
            raise ValueError(f"{where}: {k} must be a number, got {p[k]!r}")
    for k in INT_KEYS:
        if k in p and p[k] != int(p[k]):
            raise ValueError(f"{where}: {k} must be a whole number, got {p[k]!r}")
    if "do_sample" in p and not isinstance(p["do_sample"], bool):
        raise ValueError(f"{where}: do_sample must be true or false, got {p['do_sample']!r}")
    if p.get("temperature", 1.0) < 0:
        raise ValueError(f"{where}: temperature {p['temperature']} < 0")
    if p.get("top_k", 0) < 0:
        raise ValueError(f"{where}: top_k {p['top_k']} < 0")
    if not 0 < p.get("top_p", 1.0) <= 1:
        raise ValueError(f"{where}: top_p {p['top_p']} is not in (0, 1]")
    if p.get("num_beams", 1) < 1:
        raise ValueError(f"{where}: num_beams {p['num_beams']} < 1")
    if p.get("max_new_tokens", 1) < 1:
        raise ValueError(f"{where}: max_new_tokens {p['max_new_tokens']} < 1")
    if p.get("repetition_penalty", 1.0) <= 0:
        raise ValueError(f"{where}: repetition_penalty {p['repetition_penalty']} <= 0")
    if p.get("cache", "dynamic") not in ("dynamic", "static"):
        raise ValueError(f"{where}: cache must be dynamic or static, got {p['cache']!r}")
    if p.get("compile") and p.get("cache", "dynamic") != "static":
        raise ValueError(f"{where}: compile needs cache: static (a compiled step needs fixed shapes)")
    if p.get("do_sample") and p.get("temperature", 1.0) == 0:
        raise ValueError(f"{where}: do_sample with temperature 0; use temperature 0 without do_sample for greedy")
    stop = p.get("stop", [])
    if not isinstance(stop, (list, tuple)) or not all(isinstance(x, str) and x for x in stop):
        raise ValueError(f'{where}: stop must be a list of non-empty strings (e.g. ["\\n"]), got {stop!r}')


def format_number(x) -> str:
    """Compact, exact number for a point name: 1 -> '1', 1.0 -> '1', 0.7 -> '0.7'."""
    if isinstance(x, float) and x.is_integer():
        x = int(x)
    return str(x) if isinstance(x, int) else repr(float(x))


def expand_grid(grid, base) -> dict:
    """Every combination of the grid's values on top of `base`, as {name: params}. Names join
    the settings in a fixed order (top_k, top_p, num_beams, temperature, max_new_tokens,
    repetition_penalty), e.g. topk50_nb5_t1. A temperature in the grid also sets do_sample:
    0 means greedy, > 0 means sampling. Each point is checked with validate_decoding."""
    unknown = sorted(set(grid) - set(SHORT))
    if unknown:
        raise ValueError(f"decoding grid: cannot vary {unknown}; choose from {list(SHORT)}")
    keys = [k for k in SHORT if k in grid]
    for k in keys:
        if not isinstance(grid[k], (list, tuple)) or not grid[k]:
            raise ValueError(f"decoding grid: {k} needs a non-empty list of values, got {grid[k]!r}")
    points = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        name = "_".join(f"{SHORT[k]}{format_number(v)}" for k, v in zip(keys, values))
        point = dict(base, **dict(zip(keys, values)))
        if "temperature" in keys:
            point["do_sample"] = point["temperature"] > 0
        validate_decoding(name, point)
        if name in points:
            raise ValueError(f"decoding grid: two points are both named '{name}' (repeated values?)")
        points[name] = point
    return points


def task_points(task) -> dict:
    """A task's decoding points: its named `decodings` plus its expanded `decoding_grid`; ValueError
    (naming the key) for a grid that does not expand or a point whose name clashes with a named one."""
    points = dict(task["decodings"])
    grid = task.get("decoding_grid")
    if grid and grid.get("grid"):
        try:
            expanded = expand_grid(grid["grid"], grid["base"])
        except ValueError as e:
            raise ValueError(f"decoding_grid: {e}") from None
        for name, point in expanded.items():
            if name in points:
                raise ValueError(f"decoding grid point '{name}' clashes with a named decoding; rename that one")
            points[name] = point
    return points


def to_generate_kwargs(params) -> dict:
    """model.generate kwargs for a decoding entry. do_sample and num_beams are always passed (a
    model's own generation_config may default to sampling or to beams); greedy/beam search drops temperature, top_k, top_p.
    cache: static preallocates the KV cache; compile lets transformers torch.compile the decoding
    step with it (on a GPU), and is switched off explicitly otherwise. stop: transformers'
    stop_strings (each output is also cut at its first stop string: cut_at_stop)."""
    kw = {k: params[k] for k in GENERATE_KEYS if params.get(k) is not None}
    kw["do_sample"] = bool(kw.get("do_sample", False))
    kw["num_beams"] = int(kw.get("num_beams", 1))  # not the model's generation_config default: keys.decoding_key
    if not kw["do_sample"]:
        for k in ("temperature", "top_k", "top_p"):
            kw.pop(k, None)
    if params.get("stop"):  # transformers' stop_strings (generate needs the tokenizer with them)
        kw["stop_strings"] = list(params["stop"])
    if params.get("cache") == "static":
        kw["cache_implementation"] = "static"
        kw["disable_compile"] = not params.get("compile", False)
    return kw


def cut_at_stop(text, stop) -> str:
    """The text up to (not including) the first occurrence of any stop string, as lm-eval and vLLM
    return it: generation halts once a stop string is written, and the string itself is dropped."""
    cut = min((i for i in (text.find(x) for x in stop or ()) if i >= 0), default=len(text))
    return text[:cut]
