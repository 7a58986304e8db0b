"""The forgetting check, the parse-time part: which standard benchmarks a task runs, on which runs,
and what each benchmark job's output depends on.

`benchmarks: {tasks: [...], limit: N}` on a task (or study-wide, at the top of the config; a task's
own block wins) runs lm-evaluation-harness (the optional `lm-eval` package, pyproject's
`benchmarks` extra) on every zero-shot causal LM of the task and on each of its fine-tuned runs,
the fine-tune's adapter on top (no merged copy written). The sets are the local copies under
data_dir; lm_eval_tasks.py points lm-eval's own task definitions at them, so the prompts,
choices and normalisations are lm-eval's. general_ability.py pairs each fine-tune with its base
on the same items.

Standard library only: it runs at Snakemake parse time.
"""

import importlib.util

from . import keys, paths, runs
from .common import ConfigError

# where its results live (paths.py holds every other stage's: kept apart, so that the module every
# stage imports is unchanged by this one)
BENCHMARK_DIR = paths.RUN_DIR + "/general_ability"  # lm-eval's scores of one run on the standard sets
BENCHMARK_RESULTS = BENCHMARK_DIR + "/results.json"
BENCHMARK_SAMPLES = BENCHMARK_DIR + "/samples.jsonl"
GENERAL_ABILITY = "results/{task}/general_ability.json"  # each fine-tune against its base, paired
BENCHMARK_JOB = "benchmarks/benchmark/{task}/{model}/{method}.tsv"  # Snakemake's benchmark of a job

LM_EVAL_VERSION = "0.4.13"  # the version the task definitions below were written against (pyproject extra)

# name -> (lm-eval's task YAML under lm_eval/tasks/, the split lm-eval reads, the local file under
# data_dir, overrides of lm-eval's definition, lm-eval's metrics for it). Overrides only where the
# local layout differs from the hub's: WinoGrande's copy is in the partial-scoring form
# ({context_options, continuation, gold}), which is what lm-eval's winogrande functions compute
# from {sentence, option1, option2, answer}: the same contexts, continuation and gold.
SETS = {
    "arc_easy": ("arc/arc_easy.yaml", "test", "arc_easy/test.jsonl", {}, ("acc", "acc_norm")),
    "arc_challenge": ("arc/arc_challenge.yaml", "test", "arc_challenge/test.jsonl", {}, ("acc", "acc_norm")),
    "piqa": ("piqa/piqa.yaml", "validation", "piqa/validation.jsonl", {}, ("acc", "acc_norm")),
    "boolq": ("super_glue/boolq/default.yaml", "validation", "boolq/validation.jsonl", {}, ("acc",)),
    "winogrande": (
        "winogrande/default.yaml",
        "validation",
        "winogrande/dev_partial.jsonl",
        {
            "doc_to_text": "gold",
            "doc_to_choice": "context_options",
            "doc_to_target": "continuation",
            "should_decontaminate": False,
        },
        ("acc",),
    ),
    "hellaswag": (
        "hellaswag/hellaswag.yaml",
        "validation",
        "hellaswag/validation_subset1000.jsonl",
        {},
        ("acc", "acc_norm"),
    ),
}
METRICS = ("acc", "acc_norm")


def settings(config, task):
    """The task's benchmarks block (its own, else the study-wide one), or None."""
    block = task.get("benchmarks", config.get("benchmarks"))
    return block or None


def data_file(config, name):
    """The local file of a set, under data_dir."""
    from pathlib import Path

    return str(Path(config["data_dir"]) / SETS[name][2])


def benchmark_runs(config, task):
    """(model, run) of every benchmarked run of a task: each causal LM's zero-shot row (also for a
    causal LM only fine-tuned here: its base is what a fine-tune is compared with), then each
    fine-tuned run of a causal LM, in report order. Empty without a benchmarks block."""
    if not settings(config, task):
        return []
    causal = {m for m, model in config["models"].items() if model["type"] == "causal_lm"}
    bases = [m for m in task["models"] if m in causal]
    bases += [m for m, _ in runs.finetuned(task) if m in causal and m not in bases]
    return [(m, "zeroshot") for m in bases] + [(m, r) for m, r in runs.finetuned(task) if m in causal]


def job_settings(config, task, model_name):
    """Key of one benchmark job: how the model loads (never its chat template or role: lm-eval's
    prompts are plain text), the sets and the limit; the batch size only where scores depend on
    the batching (keys.batch_invariant). The adapter is an input file: a new fine-tune reruns it.
    Decoding settings are in no benchmark key."""
    model = config["models"][model_name]
    b = settings(config, task)
    out = {
        "model": {k: v for k, v in keys.model_settings(model).items() if k != "chat_template"},
        "sets": {n: {"file": SETS[n][2], "lm_eval_task": SETS[n][0]} for n in b["tasks"]},
        "limit": b["limit"],
        "num_fewshot": 0,
        "lm_eval": LM_EVAL_VERSION,
    }
    if not keys.batch_invariant(out["model"]["dtype"]):
        out["batch_size"] = b["batch_size"]
    return out


def job_inputs(config, task_name, task, model_name, run):
    """The benchmark job's inputs: the prepared model, the fine-tune's folder for a fine-tuned run,
    the local files of its sets, in name order (the order of the key's `sets`)."""
    inputs = {
        "model": paths.MODEL_DIR.format(model=model_name),
        "data": [data_file(config, n) for n in sorted(settings(config, task)["tasks"])],
    }
    if runs.method_seed(run) is not None:
        inputs["adapter"] = paths.ADAPTER.format(task=task_name, model=model_name, method=run)
    return inputs


def outputs(config, task_name, task):
    """The per-run benchmark results a task's general-ability comparison reads."""
    return {
        "results": [
            BENCHMARK_RESULTS.format(task=task_name, model=m, method=r) for m, r in benchmark_runs(config, task)
        ],
        "samples": [
            BENCHMARK_SAMPLES.format(task=task_name, model=m, method=r) for m, r in benchmark_runs(config, task)
        ],
    }


def comparison_settings(config, task):
    """Key of a task's general-ability comparison: the runs it pairs and the bootstrap."""
    b = settings(config, task)
    return {"runs": [list(r) for r in benchmark_runs(config, task)], "bootstrap": b["bootstrap"], "sets": b["tasks"]}


def lm_eval_missing():
    return importlib.util.find_spec("lm_eval") is None


def check(config, selected, source):
    """Parse-time checks: lm-eval installed when any selected task asks for benchmarks, a causal LM
    to run them on, the sets' files present. source(*keys): the config file that sets them."""
    for name, task in selected.items():
        b = settings(config, task)
        if not b:
            continue
        where = ("tasks", name, "benchmarks") if "benchmarks" in task else ("benchmarks",)
        at = f"{source(*where)}: {'.'.join(where)}"
        if lm_eval_missing():
            raise ConfigError(
                f"{at}: the benchmarks need lm-eval, which is not installed; "
                f"pip install -e '.[benchmarks]' (or -r requirements-benchmarks.txt), or remove the block"
            )
        if not benchmark_runs(config, task):
            raise ConfigError(f"{at}: task '{name}' has no causal LM to benchmark (lm-eval scores causal LMs)")
        from pathlib import Path

        for s in b["tasks"]:
            if not Path(data_file(config, s)).is_file():
                raise ConfigError(f"{at}: {s}: its local copy {data_file(config, s)} is missing")
