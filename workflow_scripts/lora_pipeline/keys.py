"""What each stage's output depends on: the cache key of every Snakemake rule, in one place.

A stage's key is exactly the settings its script reads that can change its output, plus a
fingerprint of the code it runs (the script and every lora_pipeline module it imports, directly or
transitively). The rule files pass these keys as `params:`, so Snakemake reruns a job when, and
only when, its key changes (or its input files do). What is deliberately NOT in a key:
- cluster resources, params_b, roles, report titles and notes (they change only the report);
- batch sizes where outputs are identical across batchings (greedy decoding, likelihood and
  encoder scoring; tested), and the decoding seed where nothing is sampled;
- the KV-cache kind and compile flag (static = dynamic output, tested);
- checkpoint_every and the checkpoint folder (resuming is exact);
- a fine-tune entry's settings blocks that its method does not read (METHOD_SETTINGS: `lora` for
  lora/dora/qlora, `ia3`, `prompt` for prompt/prefix tuning, none for full);
- absolute paths of the working directory.

The resume key of a fine-tune (resume_key) is computed inside the job from the key plus the
content of its data splits and model weights, so a checkpoint is only ever resumed by a run
whose output it would have produced.

Standard library only: it runs at Snakemake parse time.
"""

import ast
import functools
import hashlib
import json
import os
import re
from pathlib import Path

from . import precision, training_grid

SCRIPTS = Path(__file__).resolve().parent.parent  # workflow_scripts/
PACKAGE = "lora_pipeline"

DATA_KEYS = [
    "type",
    "files",
    "format",
    "encoding",
    "header",
    "column_names",
    "text_column",
    "label_column",
    "labels",
    "label_map",
    "drop_rows_with_label",
    "validation_fraction",
    "test_fraction",
    "seed",
    "max_chars",
    "instruction_column",
    "input_column",
    "output_column",
]
SPLITS = ("train", "validation", "test")
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p")
ENCODER_MAX_LENGTH = 256  # truncation of an encoder that is not fine-tuned in its task


def canonical(obj) -> str:
    """A deterministic string for rule params: same settings, same string, no spurious reruns."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def short_hash(obj) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:12]


# ---------------------------------------------------------------- code fingerprints


def _imported_modules(path):
    """lora_pipeline modules a file imports (absolute or, inside the package, relative)."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    in_package = Path(path).parent.name == PACKAGE
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == PACKAGE and "." in a.name:
                    found.add(a.name.split(".")[1])
        elif isinstance(node, ast.ImportFrom):
            relative = node.level > 0 and in_package
            if node.module == PACKAGE or (relative and node.module is None):
                found.update(a.name for a in node.names)  # from lora_pipeline import x / from . import x
            elif node.module and (node.module.startswith(PACKAGE + ".") or relative):
                found.add(node.module.split(".")[1] if not relative else node.module.split(".")[0])
    return {m for m in found if (SCRIPTS / PACKAGE / f"{m}.py").is_file()}


def code_files(script):
    """The script and every lora_pipeline module it needs, transitively (plus the package's __init__)."""
    todo, seen = [SCRIPTS / script], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [SCRIPTS / PACKAGE / f"{m}.py" for m in _imported_modules(path)]
    seen.add(SCRIPTS / PACKAGE / "__init__.py")
    return sorted(seen)


def _source_digest(path):
    # The syntax tree, not the text: comments and formatting do not count, real changes do.
    text = Path(path).read_text(encoding="utf-8")
    try:
        text = ast.dump(ast.parse(text))
    except SyntaxError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=None)
def code_fingerprint(script) -> str:
    """Hash of the code a script runs: editing any module it imports changes it."""
    return short_hash({str(p.relative_to(SCRIPTS)): _source_digest(p) for p in code_files(script)})


# ---------------------------------------------------------------- runs of a task

FINETUNE_METHODS = ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "full", "qlora")
# which settings block of a fine-tune entry each method reads (full reads none): only that block is in its key
METHOD_SETTINGS = {
    "lora": "lora",
    "dora": "lora",
    "qlora": "lora",
    "ia3": "ia3",
    "prompt_tuning": "prompt",
    "prefix_tuning": "prompt",
    "full": None,
}
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


def baseline_runs(task):
    """The majority-class baseline of a classification task, scored like any run."""
    return [("majority", "baseline")] if task["type"] == "classification" else []


# ---------------------------------------------------------------- stage keys


def data_settings(config, task, split):
    """What one split's rows depend on: every data setting except the other splits' sample sizes."""
    settings = {k: task[k] for k in DATA_KEYS if k in task}
    settings["sample"] = (task.get("sample") or {}).get(split)
    settings["split"] = split
    settings["source"] = "hub" if config["use_hub"] else "files"
    if config["use_hub"]:
        settings["hub_id"], settings["hub_config"] = task.get("hub_id"), task.get("hub_config")
    return settings


def model_origin(config, model):
    """What a materialized model folder depends on: where the weights come from and how they load."""
    hub = config["use_hub"] or "source" not in model
    return {
        "type": model["type"],
        "trust_remote_code": model["trust_remote_code"],
        "dtype": model["dtype"],
        "origin": {"hub_id": model.get("hub_id")} if hub else {"source": model["source"]},
    }


def model_settings(model):
    """How later stages load a prepared model (never its role, resources or size)."""
    keys = ["type", "trust_remote_code"] + (["chat_template"] if model["type"] == "causal_lm" else [])
    # the dtype the stage computes in, 'auto' resolved for this machine (precision.resolve): a float32
    # result is never served as a bfloat16 one, nor the reverse
    return {**{k: model[k] for k in keys}, "dtype": precision.model_dtype(model)}


def _training_key(training, seed):
    t = {k: v for k, v in training.items() if k not in ("seeds", "checkpoint_every")}
    t["seed"] = seed
    if not t.get("packing"):
        t.pop("pack_length", None)
    if t.get("eval_sample") is None:
        t.pop("eval_sample", None)
    return t


def method_settings(ft):
    """The method of a fine-tune entry and the one settings block it reads (lora for lora/dora/qlora,
    ia3, prompt for prompt/prefix tuning, none for full): a change to another block reruns nothing."""
    method = entry_method(ft)
    block = METHOD_SETTINGS[method]
    return {"method": method, **({block: ft[block]} if block else {})}


def finetune_settings(config, task, model_name, run):
    """Key of one fine-tuned run (run: '<method>-s<seed>'): the model, the method and its settings,
    the training settings with this seed, and what the examples are built from."""
    method, point, seed = parse_run_point(run)
    model = config["models"][model_name]
    ft = finetune_entry(task, model_name, method, point)
    settings = {
        "task_type": task["type"],
        "model": model_settings(model),
        "finetune": {**method_settings(ft), "training": _training_key(ft["training"], seed)},
    }
    if method == "full":  # float32 master weights under dtype auto (precision.master_dtype)
        settings["finetune"]["master_dtype"] = precision.master_dtype(model, method)
    if task["type"] == "generation":
        settings["prompt_style"] = task["prompt_style"]
    else:
        settings["labels"] = task["labels"]
        if model["type"] == "causal_lm":
            settings["prompt"] = task["prompt"]
    return settings


def batch_invariant(dtype):
    """Whether a row's output is the same in every batch (greedy and beam decoding, likelihood and
    encoder scoring): in float32, yes (tested). In bfloat16 and float16 the padding of a batch
    changes the kernels' rounding (label log-probabilities move by about 3e-4 nats), which can
    flip a near tie, so there the batch size is part of those stages' keys."""
    return dtype == "float32"


def decoding_key(decoding):
    """The decoding settings that can change generated text, in one canonical form: the arguments
    model.generate gets (decoding.to_generate_kwargs), its defaults left out. Greedy and beam search
    drop the sampling settings and the seed; `do_sample: false` and `num_beams: 1` are the defaults
    (always passed to generate), so a grid point `topk30_nb1_t0` and a plain `greedy` are one key.
    Batch size only matters where outputs depend on batching (sampling is seeded per batch; beam
    search is kept to be safe)."""
    d = {k: v for k, v in decoding.items() if k not in ("cache", "compile")}
    sampled = bool(d.get("do_sample"))
    if not sampled:
        for k in SAMPLING_KEYS + ("seed",):
            d.pop(k, None)
    if d.get("num_beams", 1) == 1:
        d.pop("num_beams", None)
        if not sampled:
            d.pop("batch_size", None)
    return d


def shared_decodings(decodings, human_eval=None):
    """{decoding name: the name whose generation it shares}: points with the same decoding_key (the
    same generate arguments) share the first one's generation and scores, in config order. Points
    named by a human evaluation ({"model/method/decoding": file}) are scored on their own."""
    keep = {k.rpartition("/")[2] for k in (human_eval or {})}
    first, out = {}, {}
    for name, params in decodings.items():
        # the batch size too: under bf16 it is in the generation key (batch_invariant)
        k = canonical([decoding_key(params), params.get("batch_size")])
        out[name] = name if name in keep else first.setdefault(k, name)
    return out


def _first_entry(task, model_name):
    return next((ft for m, ft in finetune_entries(task) if m == model_name), None)


def encoder_max_length(task, model_name, run=None):
    """Truncation of an encoder's inputs: a fine-tuned run's own max_length; for the zero-shot row the
    model's first fine-tune's (so it sees that fine-tune's tokens), else ENCODER_MAX_LENGTH."""
    parsed = parse_run_point(run) if run else None
    ft = finetune_entry(task, model_name, parsed[0], parsed[1]) if parsed else _first_entry(task, model_name)
    return ft["training"]["max_length"] if ft else ENCODER_MAX_LENGTH


def head_seed(task, model_name):
    """Seed of an encoder's untrained head for its zero-shot row: the first seed of the model's first
    fine-tune, so the zero-shot row is that fine-tune's starting point."""
    ft = _first_entry(task, model_name)
    return finetune_seeds(ft)[0] if ft else 0


def inference_settings(config, task, model_name, method):
    """Only what changes this run's predictions: an encoder never reruns for a decoding change,
    a likelihood-scored model never for max_new_tokens."""
    model = config["models"][model_name]
    settings = {"model": model_settings(model), "labels": task["labels"]}
    if not batch_invariant(settings["model"]["dtype"]):
        settings["batch_size"] = task["decoding"]["batch_size"]
    if model["type"] == "encoder":
        settings["max_length"] = encoder_max_length(task, model_name, method)
        if method == "zeroshot":
            settings["head_seed"] = head_seed(task, model_name)
        return settings
    settings.update(
        prompt=task["prompt"], scoring=task["scoring"], chat_template=model["chat_template"] and method != "raw"
    )
    if task["scoring"] == "likelihood":
        settings["likelihood_normalization"] = task["likelihood_normalization"]
    else:
        settings["decoding"] = decoding_key(task["decoding"])
    return settings


def score_settings(task):
    return {"labels": task["labels"], "bootstrap": task["bootstrap"]}


def generation_settings(config, task, model_name, decoding):
    settings = {
        "model": model_settings(config["models"][model_name]),
        "prompt_style": task["prompt_style"],
        "decoding": decoding_key(decoding),
    }
    if not batch_invariant(settings["model"]["dtype"]):
        settings["decoding"]["batch_size"] = decoding.get("batch_size")  # config.decodings fills it in
    return settings


def perplexity_settings(config, task, model_name):
    return {"model": model_settings(config["models"][model_name]), "prompt_style": task["prompt_style"]}


# ---------------------------------------------------------------- resume key and provenance


def file_digest(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(model_dir, adapter=None):
    """Fingerprints of a model's (and adapter's) safetensors: content hashes up to 256 MiB, else
    name, size and mtime (hashing many GB per job would cost minutes)."""
    files = sorted(Path(model_dir).glob("*.safetensors")) + sorted(Path(model_dir).glob("head.json"))
    if adapter:
        files += sorted(Path(adapter).glob("*.safetensors"))
    return [
        file_digest(f) if f.stat().st_size < 2**28 else f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
        for f in files
    ]


def resume_key(settings, code, data_files, model_dir) -> str:
    """Identity of a fine-tune's result: its settings, its code, the content of its data splits and
    its base weights. Checkpoints are stored under this key, so a changed input never resumes."""
    return short_hash(
        {
            "settings": settings,
            "code": code,
            "data": [file_digest(p) for p in data_files],
            "weights": weights_fingerprint(model_dir),
        }
    )


def provenance(code, data=None, model_dir=None, adapter=None, dtype=None):
    """The hashes a run's outputs were built from (12 hex digits each), and the dtype its model
    computed in, for the report."""
    out = {"code": code}
    if dtype:
        out["dtype"] = dtype
    if data:
        out["data"] = {k: file_digest(p)[:12] for k, p in data.items()}
    if model_dir:
        out["model"] = short_hash(weights_fingerprint(model_dir))
    if adapter:
        out["adapter"] = short_hash(weights_fingerprint(adapter))
    return out


def relative(path) -> str:
    """A path under the working directory as a relative path, so moving the folder changes no key."""
    p = Path(path)
    if p.is_absolute():
        try:
            return os.path.relpath(p, Path.cwd()) if p.resolve().is_relative_to(Path.cwd().resolve()) else str(p)
        except ValueError:
            return str(p)
    return str(p)
