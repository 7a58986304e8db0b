"""The forgetting check, the job-time part: lm-evaluation-harness, as a library, on a loaded model.

Each set (benchmarks.SETS) becomes a task definition that `include`s lm-eval's own YAML for it and
replaces only where the data comes from (`dataset_path: json` with `data_files` naming the local
copy; no hub access) and, where the local layout differs from the hub's, the fields lm-eval reads.
So the prompts, answer choices, target delimiter, length normalisation (acc_norm) and the
standard errors are lm-eval's. The model is the workflow's own (models.load_causal_lm: the
prepared checkpoint, a fine-tune's PEFT adapter on top, no merged copy), handed to lm-eval's HFLM
as an initialised model. Needs the optional `lm-eval` package (pyproject's `benchmarks` extra).
"""

import math
from pathlib import Path

from .benchmarks import SETS

TASK_PREFIX = "local_"  # lm-eval's name of a set's task here: local_arc_easy, ... (never a hub task's)


def lm_eval_task(name):
    return TASK_PREFIX + name


def write_task_definitions(folder, files):
    """One lm-eval task YAML per set in folder ({set name: its local file}): lm-eval's own definition
    (an `include` of its file inside the installed lm_eval package), reading the local file."""
    import lm_eval
    import yaml

    tasks_dir = Path(lm_eval.__file__).resolve().parent / "tasks"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        definition, split, _, overrides, _ = SETS[name]
        spec = {
            "include": str(tasks_dir / definition),
            "task": lm_eval_task(name),
            "tag": [],  # not a member of lm-eval's groups (ai2_arc, ...): only this task
            "dataset_path": "json",
            "dataset_name": None,
            "dataset_kwargs": {"data_files": {split: str(Path(path).resolve())}},
            "training_split": None,
            "validation_split": None,
            "test_split": None,
            "fewshot_split": None,
            f"{split}_split": split,
            **overrides,
        }
        (folder / f"{lm_eval_task(name)}.yaml").write_text(yaml.safe_dump(spec, sort_keys=True), encoding="utf-8")
    return folder


def task_manager(folder):
    """lm-eval's TaskManager over the definitions in folder only (lm-eval's own are read through
    `include`, never indexed: faster, and no hub task can be picked by name)."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(folder), include_defaults=False)


def harness_model(model, tokenizer, batch_size):
    """lm-eval's HFLM around an initialised (PEFT) model. A prompt-tuned model's forward returns
    logits for its virtual tokens too, before the input's: they are dropped, so lm-eval's slicing of
    the continuation's logits sees the input's positions only (prefix tuning returns none)."""
    from lm_eval.models.huggingface import HFLM

    class WorkflowLM(HFLM):
        def _model_call(self, inps, attn_mask=None, labels=None):
            logits = super()._model_call(inps, attn_mask=attn_mask, labels=labels)
            extra = logits.shape[1] - inps.shape[1]
            return logits[:, extra:] if extra > 0 else logits

    return WorkflowLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _num(x):
    """A float from lm-eval's output; None for its 'N/A' or a NaN."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def evaluate(lm, files, limit, folder, seed=0):
    """Run the sets ({name: local file}) zero-shot on lm (an lm-eval LM), the first `limit` items of
    each (None: all). ({set: {"n", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "lm_eval_task"}},
    [per-item rows: set, doc_id, doc_hash, prompt_hash, target, acc, acc_norm, loglikelihoods])."""
    import lm_eval

    manager = task_manager(write_task_definitions(folder, files))
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[lm_eval_task(n) for n in files],
        num_fewshot=0,
        limit=limit,
        task_manager=manager,
        log_samples=True,
        random_seed=seed,
        numpy_random_seed=seed,
        torch_random_seed=seed,
        fewshot_random_seed=seed,
        bootstrap_iters=1000,
    )
    scores, samples = {}, []
    for name in files:
        r = out["results"][lm_eval_task(name)]
        metrics = SETS[name][4]
        scores[name] = {"n": None, "lm_eval_task": lm_eval_task(name)}
        for m in ("acc", "acc_norm"):
            scores[name][m] = _num(r.get(f"{m},none")) if m in metrics else None
            scores[name][f"{m}_stderr"] = _num(r.get(f"{m}_stderr,none")) if m in metrics else None
        rows = sorted(out["samples"][lm_eval_task(name)], key=lambda s: int(s["doc_id"]))
        scores[name]["n"] = len(rows)
        for s in rows:
            samples.append(
                {
                    "set": name,
                    "doc_id": int(s["doc_id"]),
                    "doc_hash": s["doc_hash"],
                    "prompt_hash": s["prompt_hash"],
                    "target": str(s["target"]),
                    "acc": _num(s["acc"]),
                    "acc_norm": _num(s["acc_norm"]) if "acc_norm" in metrics else None,
                    "loglikelihoods": [_num(x[0]) for x in s["filtered_resps"]],
                }
            )
    return scores, samples
