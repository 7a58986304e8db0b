"""Human evaluation of generated responses, in the format of the original study's files.

A score file (*_HE.json) is a JSON list with one item per output:
    {"index": i, "grammatical_correctness": s, "coherence": s, "correctness_of_answer": s, "comment": "..."}
with each score s in {0, 0.5, 1}. The original files number the items 1..n (Llama-2, phi-2) or
0..n-1 (Mistral); both are accepted, and item i belongs to the i-th output in either case.

aggregate() gives the mean of each criterion and the mean of those three means, with the same
keys as the original *_HE_score.json files. write_template() writes a blank file (scores null)
for a person to fill in: numbered 1..n, with the prompt, reference and output of each item.
"""

import json

from .common import PipelineError, write_json

CRITERIA = ("grammatical_correctness", "coherence", "correctness_of_answer")
ALLOWED = (0, 0.5, 1)


class HumanEvalError(PipelineError, ValueError):
    """A human-score file that does not fit the outputs; the message names the file."""


def _check_score(path, item, c):
    v = item.get(c)
    if v is None:
        raise HumanEvalError(f"{path}: item {item['index']}: {c} is missing or blank; give 0, 0.5 or 1")
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in ALLOWED:
        raise HumanEvalError(f"{path}: item {item['index']}: {c} is {v!r}, must be one of 0, 0.5, 1")


def load_human_scores(path, n_outputs) -> list:
    """The items of a score file in output order (items[i] scores output i), after checking that
    there is exactly one item per output and every score is 0, 0.5 or 1."""
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise HumanEvalError(f"{path}: cannot read human scores ({e})") from None
    if not isinstance(items, list) or not all(isinstance(it, dict) for it in items):
        raise HumanEvalError(f"{path}: expected a JSON list of scored items")
    if len(items) != n_outputs:
        raise HumanEvalError(f"{path}: {len(items)} scored items for {n_outputs} outputs; score every output once")
    for pos, it in enumerate(items):
        if isinstance(it.get("index"), bool) or not isinstance(it.get("index"), int):
            raise HumanEvalError(f"{path}: item {pos + 1} has no whole-number 'index'")
    indices = sorted(it["index"] for it in items)
    if indices not in (list(range(n_outputs)), list(range(1, n_outputs + 1))):
        raise HumanEvalError(f"{path}: item indices must be 1..{n_outputs} (or 0..{n_outputs - 1}), each once")
    for it in items:
        for c in CRITERIA:
            _check_score(path, it, c)
        if not isinstance(it.get("comment", ""), str):
            raise HumanEvalError(f"{path}: item {it['index']}: comment must be text")
    return sorted(items, key=lambda it: it["index"])


def aggregate(items) -> dict:
    """Mean of each criterion and their mean, keyed like the original *_HE_score.json, plus n."""
    if not items:
        raise ValueError("no human-scored items to aggregate")
    out = {f"average_{c}": sum(it[c] for it in items) / len(items) for c in CRITERIA}
    out["human_evaluation_average"] = sum(out[f"average_{c}"] for c in CRITERIA) / len(CRITERIA)
    out["n"] = len(items)
    return out


def write_template(path, prompts, references, outputs):
    """A file a person fills in (replace each null with 0, 0.5 or 1), written atomically."""
    if not len(prompts) == len(references) == len(outputs):
        raise ValueError(
            f"{len(prompts)} prompts, {len(references)} references and {len(outputs)} outputs; "
            "need one of each per item"
        )
    write_json(
        path,
        [
            {
                "index": i + 1,
                "instruction": p,
                "reference": r,
                "output": o,
                **{c: None for c in CRITERIA},
                "comment": "",
            }
            for i, (p, r, o) in enumerate(zip(prompts, references, outputs))
        ],
    )
