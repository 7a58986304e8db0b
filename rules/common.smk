# Parse-time setup: validate the config against the schema (defaults filled in), check the
# local data files, and define the small helpers the rule files use.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, str(Path(workflow.basedir) / "workflow_scripts"))
from lora_pipeline import config as cfg  # noqa: E402
from lora_pipeline import data as data_lib  # noqa: E402
from lora_pipeline import keys  # noqa: E402
from lora_pipeline import preflight  # noqa: E402
from lora_pipeline import published  # noqa: E402
from lora_pipeline.common import PipelineError  # noqa: E402
from lora_pipeline.common import WORKFLOW_CORES_ENV  # noqa: E402

try:
    _settings = workflow.config_settings
    _sources = cfg.merge_order(
        workflow.configfiles,
        _settings.configfiles,
        _settings.config,
        _settings.replace_workflow_config,
    )
    cfg.validate(
        config,
        Path(workflow.basedir) / "schemas" / "config.schema.yaml",
        files=_sources,
    )
    cfg.check_resources(config, workflow.resource_settings.default_resources or {})
    preflight.check(config, _sources)
    for _task_name, _task in cfg.selected_tasks(config).items():
        if not config["use_hub"]:
            data_lib.check_task_files(_task_name, _task, config["data_dir"])
except (cfg.ConfigError, PipelineError) as err:
    raise WorkflowError(f"Error: {err}") from None

# Model jobs split the cores this machine gives them by how many jobs --cores runs at once
# (common.cpu_threads); the jobs inherit this environment. It is in no stage key: no rerun.
os.environ[WORKFLOW_CORES_ENV] = str(workflow.cores)

TASKS = cfg.selected_tasks(config)
CLASSIFICATION_TASKS = [t for t, v in TASKS.items() if v["type"] == "classification"]
GENERATION_TASKS = [t for t, v in TASKS.items() if v["type"] == "generation"]
MODELS = config["models"]


# method: zeroshot, raw, baseline, or a fine-tuned run <method>-s<seed> (keys.FINETUNED_RUN: lora-s0, dora-s1, ...)
wildcard_constraints:
    task="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=f"zeroshot|raw|baseline|{keys.FINETUNED_RUN}",
    split="train|validation|test",
    decoding="[A-Za-z0-9][A-Za-z0-9_.-]*",


def model_dir(wildcards):
    return f"results/models/{wildcards.model}"


def model_resources(name):
    return MODELS[name]["resources"]


def methods(task_name):
    """(model, method) pairs of a task, in report order (keys.methods)."""
    return keys.methods(TASKS[task_name])


def scored_runs(task_name):
    """Every run whose metrics a classification task reports: the methods plus the majority baseline."""
    return methods(task_name) + keys.baseline_runs(TASKS[task_name])


def code(script):
    """Fingerprint of a script and the lora_pipeline modules it imports: part of every stage key."""
    return keys.code_fingerprint(script)


def data_inputs(wildcards):
    if config["use_hub"]:
        return []
    files = TASKS[wildcards.task]["files"]
    return [str(Path(config["data_dir"]) / f) for f in files.values()]


def predict_inputs(wildcards):
    inputs = {
        "model": model_dir(wildcards),
        "test": f"results/{wildcards.task}/data/test.jsonl",
    }
    if keys.method_seed(wildcards.method) is not None:
        inputs["adapter"] = (
            f"results/{wildcards.task}/{wildcards.model}/{wildcards.method}/adapter"
        )
    return inputs


def finetune_logs(task):
    return [
        f"results/{task}/{m}/{meth}/train_log.json"
        for m, meth in methods(task)
        if keys.method_seed(meth) is not None
    ]


def finetune_benchmarks(task):
    """Snakemake's benchmark of each fine-tune job (wall time s, peak RSS max_rss): the report's cost table."""
    return [
        f"benchmarks/finetune/{task}/{m}/{meth}.tsv"
        for m, meth in methods(task)
        if keys.method_seed(meth) is not None
    ]


def run_label_list(task):
    """[model, method, model type] per run: what figures draw (no roles: those are report-only)."""
    return [
        [m, meth, "baseline" if meth == "baseline" else MODELS[m]["type"]]
        for m, meth in scored_runs(task)
    ]


def grid_listing(task):
    """[model, method, [[point, swept values]], seeds] of each fine-tune of a task with a training grid
    (points as a list: their grid order survives the canonical, key-sorted params string).
    """
    out = []
    for (m, method), points in keys.grid_points(TASKS[task]).items():
        point = next(iter(points))
        seeds = keys.finetune_seeds(keys.finetune_entry(TASKS[task], m, method, point))
        out.append([m, method, [[p, v] for p, v in points.items()], seeds])
    return out


def grid_runs(task):
    """(model, run) of every training-grid run of a task."""
    return [
        (m, keys.run_name(method, s, p))
        for m, method, points, seeds in grid_listing(task)
        for p, _ in points
        for s in seeds
    ]


def grid_tasks():
    return [t for t in TASKS if keys.grid_points(TASKS[t])]


def training_grid_inputs(wildcards):
    t = wildcards.task
    runs = grid_runs(t)
    if t in GENERATION_TASKS:
        first = next(iter(cfg.decodings(TASKS[t])))
        metrics = [f"{gen_folder(t, m, run, first)}/metrics.json" for m, run in runs]
    else:
        metrics = [f"results/{t}/{m}/{run}/metrics.json" for m, run in runs]
    return {
        "train_logs": [f"results/{t}/{m}/{run}/train_log.json" for m, run in runs],
        "metrics": metrics,
    }


def compare_inputs(wildcards):
    t = wildcards.task
    return {
        "metrics": [
            f"results/{t}/{m}/{meth}/metrics.json" for m, meth in scored_runs(t)
        ],
        "predictions": [
            f"results/{t}/{m}/{meth}/predictions.jsonl" for m, meth in scored_runs(t)
        ],
    }


def figure_inputs(wildcards):
    return {
        "comparison": f"results/{wildcards.task}/comparison.json",
        "metrics": compare_inputs(wildcards)["metrics"],
        "train_logs": finetune_logs(wildcards.task),
    }


def report_inputs(wildcards):
    inputs = {
        "summaries": [],
        "metrics": [],
        "predictions": [],
        "provenance": [],
        "figures": [],
        "train_logs": [],
        "benchmarks": [],
        "comparisons": [],
        "grids": [],
        "tokenizer_study": study_outputs(),
    }
    for task in TASKS:
        inputs["summaries"].append(f"results/{task}/data/summary.json")
        if task in GENERATION_TASKS:
            shared = shared_decodings(task)
            for m, meth, d in gen_runs(task):
                if shared[d] != d:
                    continue  # the report reads it from the point it shares
                run = gen_folder(task, m, meth, d)
                inputs["metrics"].append(f"{run}/metrics.json")
                inputs["predictions"].append(f"{run}/generations.jsonl")
                inputs["provenance"].append(f"{run}/provenance.json")
            inputs["metrics"] += [
                f"results/{task}/{m}/{meth}/perplexity.json"
                for m, meth in methods(task)
            ]
            inputs["figures"] += [
                f"results/{task}/figures/{fig}.png"
                for fig in ("gen_scores", "sweep", "gen_training")
            ]
        else:
            for m, meth in scored_runs(task):
                inputs["metrics"].append(f"results/{task}/{m}/{meth}/metrics.json")
                inputs["predictions"].append(
                    f"results/{task}/{m}/{meth}/predictions.jsonl"
                )
                inputs["provenance"].append(
                    f"results/{task}/{m}/{meth}/provenance.json"
                )
            inputs["comparisons"].append(f"results/{task}/comparison.json")
            inputs["figures"] += [
                f"results/{task}/figures/{fig}.png"
                for fig in ("scores", "confusion", "training")
            ]
        if task in grid_tasks():
            inputs["grids"].append(f"results/{task}/training_grid.json")
            inputs["figures"].append(f"results/{task}/figures/training_grid.png")
        inputs["train_logs"] += finetune_logs(task)
        inputs["benchmarks"] += finetune_benchmarks(task)
    return inputs


def gen_runs(task_name):
    """(model, method, decoding) triples of a generation task, in report order."""
    names = list(cfg.decodings(TASKS[task_name]))
    return [(m, meth, d) for m, meth in methods(task_name) for d in names]


def shared_decodings(task_name):
    """{decoding point: the point whose generation it shares} (keys.shared_decodings): equivalent
    points (same generate arguments) are one generate and one score_generation job."""
    task = TASKS[task_name]
    return keys.shared_decodings(cfg.decodings(task), human_eval=task["human_eval"])


def gen_folder(task_name, model, method, decoding):
    """Where a decoding point's generations and scores are: its shared point's folder."""
    return f"results/{task_name}/{model}/{method}/gen/{shared_decodings(task_name)[decoding]}"


def bertscore_model(task_name):
    """The BERTScore model's identity: a hub id or folder as configured, else the pip package that
    holds it and its version (not its install path: moving the venv changes no key)."""
    import importlib.metadata
    import importlib.util

    bs = TASKS[task_name]["bertscore"]
    if "model" in bs:
        return bs["model"]
    if importlib.util.find_spec(bs["package"]) is None:
        raise WorkflowError(
            f"Error: tasks.{task_name}.bertscore: package '{bs['package']}' is not installed"
        )
    try:
        version = importlib.metadata.version(bs["package"].replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"package": bs["package"], "subdir": bs["subdir"], "version": version}


def gen_score_inputs(wildcards):
    inputs = {
        "generations": f"results/{wildcards.task}/{wildcards.model}/{wildcards.method}/gen/{wildcards.decoding}/generations.jsonl",
        "test": f"results/{wildcards.task}/data/test.jsonl",
    }
    key = f"{wildcards.model}/{wildcards.method}/{wildcards.decoding}"
    he = TASKS[wildcards.task]["human_eval"].get(key)
    if he:
        inputs["human_eval"] = he
    return inputs


def gen_figure_inputs(wildcards):
    t = wildcards.task
    return {
        "metrics": [
            f"{gen_folder(t, m, meth, d)}/metrics.json" for m, meth, d in gen_runs(t)
        ],
        "perplexity": [
            f"results/{t}/{m}/{meth}/perplexity.json" for m, meth in methods(t)
        ],
        "train_logs": finetune_logs(t),
    }


def report_runs():
    runs = {}
    for t, task in TASKS.items():
        runs_of = scored_runs(t) if task["type"] == "classification" else methods(t)
        entry = {
            "type": task["type"],
            "runs": [
                [m, meth, "baseline" if meth == "baseline" else MODELS[m]["role"]]
                for m, meth in runs_of
            ],
        }
        entry["grid"] = bool(keys.grid_points(task))
        entry["published"] = [
            published.load(p, config["data_dir"]) for p in task["published"]
        ]
        if task["type"] == "generation":
            entry["decodings"] = cfg.decodings(task)
            entry["shared"] = shared_decodings(t)
            entry["human_eval"] = task["human_eval"]
        else:
            entry["scoring"] = {
                m: (
                    task["scoring"]
                    if MODELS[m]["type"] == "causal_lm"
                    else "classification head"
                )
                for m in {m for m, _ in runs_of if m in MODELS}
            }
            entry["likelihood_normalization"] = task["likelihood_normalization"]
        runs[t] = entry
    return cfg.canonical(runs)


STUDY = config.get("tokenizer_study")
MODELS_IN_USE = sorted(
    {m for t in TASKS.values() for m in t["models"] + list(t["finetune"])}
)


def study_tokenizers():
    """name -> where, for the tokenizer study: shared folders (under data_dir) or hub ids, then the pipeline's models."""
    out = {}
    for name, where in STUDY["tokenizers"].items():
        local = Path(config["data_dir"]) / where
        out[name] = (
            keys.relative(local) if local.exists() or not config["use_hub"] else where
        )
    for m in STUDY["models"]:
        out[m] = f"results/models/{m}"
    return out


def study_task_texts():
    """task -> number of its test texts in the tokenizer study, for the tasks this run selects (a study
    config merged over config.yaml may leave the default task's entry behind)."""
    return {t: n for t, n in STUDY["task_texts"].items() if t in TASKS}


def tokenizer_study_inputs(wildcards):
    base = Path(workflow.basedir)
    texts = [
        keys.relative(p if Path(p).is_absolute() else base / p)
        for p in STUDY["texts"].values()
    ]
    texts += [f"results/tokenizers/texts/{t}.txt" for t in study_task_texts()]
    return {"texts": texts, "models": [f"results/models/{m}" for m in STUDY["models"]]}


def study_outputs():
    if not STUDY:
        return []
    return [
        "results/tokenizers/table.json",
        "results/tokenizers/stats.png",
        "results/tokenizers/pieces.json",
        "results/tokenizers/chat_templates.json",
    ]
