"""The forgetting check (config `benchmarks`; benchmarks.py, lm_eval_tasks.py, general_ability.py,
docs/general_ability.md): lm-evaluation-harness on local copies of standard sets, each fine-tune
against its base on the same items.

- the paired bootstrap of fine-tuned minus base, against hand-worked cases, and the pairing checks;
- on the same rows, lm-eval's acc and acc_norm through the workflow's model loading (an initialised
  PEFT model handed to HFLM) equal lm-eval run directly (simple_evaluate loading the checkpoint and
  the adapter itself, model="hf"), per item and in aggregate, on a tiny model with a small limit;
- from a copy of the session's finished tiny run: adding a benchmarks block plans only the benchmark
  jobs, the comparison and the report; editing `limit` plans the same; a decoding edit plans no
  benchmark job; the report and metrics.csv gain their rows;
- one line at parse time when the config asks for benchmarks and lm-eval is missing.

lm-eval is the `benchmarks` extra (requirements-benchmarks.txt), which the test environment
installs: without it the tests that run it fail under CI (CI=true) and skip elsewhere.
"""

import csv
import importlib.util
import os
from pathlib import Path

import pytest
import yaml

import tiny
from conftest import DATA_DIR
from finetune_study import benchmarks, general_ability
from finetune_study.common import ConfigError


def _need_lm_eval():
    if importlib.util.find_spec("lm_eval") is None:
        why = "lm-eval is not installed (pip install -r requirements-benchmarks.txt)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}, but CI installs it")
        pytest.skip(why)


def _items(correct, prefix="h"):
    return {i: {"doc_hash": f"{prefix}{i}", "acc": float(c)} for i, c in enumerate(correct)}


def test_paired_bootstrap_against_hand_worked_cases():
    # every item lost: every resample is -1, so the interval is [-1, -1] and excludes zero
    p = general_ability.paired_difference(_items([1, 1, 1, 1]), _items([0, 0, 0, 0]), "acc", 200)
    assert p["diff"] == {"mean": -1.0, "low": -1.0, "high": -1.0} and p["excludes_zero"]
    assert (p["base"], p["tuned"], p["n"]) == (1.0, 0.0, 4)
    # the same answers: [0, 0], not flagged
    p = general_ability.paired_difference(_items([1, 0, 1]), _items([1, 0, 1]), "acc", 200)
    assert p["diff"] == {"mean": 0.0, "low": 0.0, "high": 0.0} and not p["excludes_zero"]
    # one of three items lost (differences -1, 0, 0): a resample's mean is -k/3 with k ~ Binomial(3, 1/3)
    # copies of the lost item; P(k = 3) = 1/27 = 3.7 % > 2.5 % and P(k = 0) = 8/27 > 2.5 %, so the
    # 95 % percentile interval is [-1, 0] and the point estimate -1/3: not flagged
    p = general_ability.paired_difference(_items([1, 1, 0]), _items([0, 1, 0]), "acc", 20000)
    assert p["diff"]["mean"] == pytest.approx(-1 / 3)
    assert (p["diff"]["low"], p["diff"]["high"]) == (-1.0, 0.0) and not p["excludes_zero"]
    # the items gained are flagged too, and pairing is by item: order does not matter
    tuned = dict(reversed(list(_items([1, 1, 1, 1, 1, 1, 1, 1]).items())))
    p = general_ability.paired_difference(_items([0, 0, 0, 0, 0, 0, 0, 0]), tuned, "acc", 200)
    assert p["diff"]["low"] == 1.0 and p["excludes_zero"]


def test_pairing_refuses_other_items():
    with pytest.raises(ValueError, match="different items"):
        general_ability.paired_difference(_items([1, 0]), _items([1, 0, 1]), "acc", 100)
    with pytest.raises(ValueError, match="doc_hash"):
        general_ability.paired_difference(_items([1, 0]), _items([1, 0], prefix="x"), "acc", 100)


def test_compare_pairs_each_fine_tune_with_its_base_and_skips_missing_metrics():
    runs = [("m", "zeroshot"), ("m", "lora-s0")]

    def rows(accs):
        return [
            {
                "set": s,
                "doc_id": i,
                "doc_hash": f"{s}{i}",
                "acc": float(a),
                "acc_norm": float(a) if s == "piqa" else None,
            }
            for s in ("piqa", "boolq")
            for i, a in enumerate(accs)
        ]

    def result(acc):
        sc = {"n": 4, "acc": acc, "acc_stderr": 0.1, "acc_norm_stderr": None}
        return {
            "provenance": {"dtype": "float32"},
            "sets": {"piqa": dict(sc, acc_norm=acc), "boolq": dict(sc, acc_norm=None)},
        }

    results = {runs[0]: result(0.75), runs[1]: result(0.25)}
    samples = {runs[0]: rows([1, 1, 1, 0]), runs[1]: rows([0, 1, 0, 0])}
    comp = general_ability.compare(runs, ["piqa", "boolq"], results, samples, 200)
    assert comp["sets"] == ["piqa", "boolq"]
    assert [(p["set"], p["metric"]) for p in comp["paired"]] == [
        ("piqa", "acc"),
        ("piqa", "acc_norm"),
        ("boolq", "acc"),
    ]
    assert all(p["diff"]["mean"] == -0.5 and p["method"] == "lora-s0" for p in comp["paired"])
    table = general_ability.table_rows("t", comp, {r: "instruct" for r in runs}, {r: "float32" for r in runs})
    assert [(r["method"], r["benchmark"], r.get("acc_diff_vs_base")) for r in table] == [
        ("zeroshot", "piqa", None),
        ("zeroshot", "boolq", None),
        ("lora", "piqa", -0.5),
        ("lora", "boolq", -0.5),
    ]


def test_missing_lm_eval_is_one_line_at_parse_time(monkeypatch):
    config = {
        "data_dir": str(DATA_DIR),
        "benchmarks": {"tasks": ["piqa"], "limit": 4, "batch_size": 8, "bootstrap": 100},
        "models": {"lm": {"type": "causal_lm"}},
    }
    task = {"models": ["lm"], "finetune": {}}
    monkeypatch.setattr(benchmarks, "lm_eval_missing", lambda: True)
    with pytest.raises(ConfigError) as err:
        benchmarks.check(config, {"t": task}, lambda *k: "study.yaml")
    assert str(err.value).count("\n") == 0 and "pip install -e '.[benchmarks]'" in str(err.value)
    assert str(err.value).startswith("study.yaml: benchmarks: ")
    monkeypatch.setattr(benchmarks, "lm_eval_missing", lambda: False)
    benchmarks.check(config, {"t": task}, lambda *k: "study.yaml")
    with pytest.raises(ConfigError, match="no causal LM"):
        benchmarks.check(dict(config, models={"lm": {"type": "encoder"}}), {"t": task}, lambda *k: "f")


def _direct_task(folder):
    """ARC-Easy as lm-eval's own YAML says it (arc/arc_easy.yaml), written out here by hand with the
    local file as its data: the direct run's task, independent of lm_eval_tasks.py."""
    spec = {
        "task": "direct_arc_easy",
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(DATA_DIR / "arc_easy" / "test.jsonl")}},
        "output_type": "multiple_choice",
        "test_split": "test",
        "doc_to_text": "Question: {{question}}\nAnswer:",
        "doc_to_target": "{{choices.label.index(answerKey)}}",
        "doc_to_choice": "{{choices.text}}",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
    }
    Path(folder).mkdir(parents=True, exist_ok=True)
    (Path(folder) / "direct_arc_easy.yaml").write_text(yaml.safe_dump(spec))
    return folder


def test_workflow_acc_equals_lm_eval_run_directly(tmp_path):
    _need_lm_eval()
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager
    from peft import LoraConfig, get_peft_model

    from finetune_study import lm_eval_tasks, models

    base = tiny.make_tiny_llama(tmp_path / "llama", chat=False)
    # an adapter that changes the outputs (B not zero), saved as a fine-tune saves it
    torch.manual_seed(1)
    peft = get_peft_model(
        models.load_causal_lm(base, {"dtype": "float32", "trust_remote_code": False}),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    peft.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    limit = 8
    spec = {"dtype": "float32", "trust_remote_code": False}
    model = models.load_causal_lm(base, spec, adapter=str(tmp_path / "adapter"))
    tok = models.load_tokenizer(base, padding_side="right")
    scores, samples = lm_eval_tasks.evaluate(
        lm_eval_tasks.harness_model(model, tok, 4),
        {"arc_easy": DATA_DIR / "arc_easy" / "test.jsonl"},
        limit,
        tmp_path / "defs",
    )
    direct = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(base), "peft": str(tmp_path / "adapter"), "dtype": "float32", "device": "cpu"},
        tasks=["direct_arc_easy"],
        task_manager=TaskManager(include_path=str(_direct_task(tmp_path / "direct")), include_defaults=False),
        num_fewshot=0,
        limit=limit,
        batch_size=1,
        log_samples=True,
    )
    res = direct["results"]["direct_arc_easy"]
    assert scores["arc_easy"]["n"] == limit
    for m in ("acc", "acc_norm"):
        assert scores["arc_easy"][m] == res[f"{m},none"]
        assert scores["arc_easy"][f"{m}_stderr"] == pytest.approx(res[f"{m}_stderr,none"])
    rows = sorted(direct["samples"]["direct_arc_easy"], key=lambda s: s["doc_id"])
    assert [(s["doc_id"], s["acc"], s["acc_norm"]) for s in samples] == [
        (r["doc_id"], r["acc"], r["acc_norm"]) for r in rows
    ]
    for ours, theirs in zip(samples, rows):  # the same log-likelihoods, batched (4) against one by one
        assert ours["loglikelihoods"] == pytest.approx([x[0] for x in theirs["filtered_resps"]], abs=1e-4)
    # the adapter matters: the base alone scores other log-likelihoods
    bare = lm_eval_tasks.evaluate(
        lm_eval_tasks.harness_model(models.load_causal_lm(base, spec), tok, 4),
        {"arc_easy": DATA_DIR / "arc_easy" / "test.jsonl"},
        limit,
        tmp_path / "defs_bare",
    )[1]
    assert [s["loglikelihoods"] for s in bare] != [s["loglikelihoods"] for s in samples]


BLOCK = {"tasks": ["arc_easy", "winogrande"], "limit": 4}


@pytest.fixture(scope="module")
def with_benchmarks(tiny_run, tmp_path_factory):
    """A copy of the session's finished tiny run with a benchmarks block on its task, run to its report."""
    _need_lm_eval()
    work, config = tiny.copy_run(tiny_run, tmp_path_factory.mktemp("general_ability"))
    config["tasks"]["emotion"]["benchmarks"] = dict(BLOCK)
    tiny.write_config(work, config)
    # the causal LM's zero-shot run and its LoRA fine-tune; nothing else of the finished run
    assert tiny.planned_jobs(work) == {"benchmark": 2, "general_ability": 1, "report": 1}
    tiny.snakemake(work, "results/report.html")
    return work, config


def test_the_report_and_metrics_csv_gain_the_general_ability_rows(with_benchmarks):
    work, _ = with_benchmarks
    html = (work / "results/report.html").read_text()
    assert "General ability" in html and "WinoGrande (dev, partial scoring)" in html
    with open(work / "results/metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["benchmark"]]
    assert sorted((r["method"], r["benchmark"]) for r in rows) == [
        ("lora", "arc_easy"),
        ("lora", "winogrande"),
        ("zeroshot", "arc_easy"),
        ("zeroshot", "winogrande"),
    ]
    assert all(r["n"] == "4" and r["acc"] for r in rows)
    assert all(r["acc_diff_vs_base_low"] for r in rows if r["method"] == "lora")
    assert not any(r["acc_norm"] for r in rows if r["benchmark"] == "winogrande")  # lm-eval: acc only
    lora = tiny.read_json(work / "results/emotion/tiny_llama/lora-s0/general_ability/results.json")
    assert lora["provenance"]["adapter"] and lora["lm_eval_version"] == benchmarks.LM_EVAL_VERSION


def test_limit_and_set_edits_rerun_only_benchmark_jobs_and_decoding_none(with_benchmarks):
    work, config = with_benchmarks
    assert tiny.planned_jobs(work) == {}
    edits = {
        "limit": lambda c: c["tasks"]["emotion"]["benchmarks"].update(limit=6),
        "sets": lambda c: c["tasks"]["emotion"]["benchmarks"].update(tasks=["arc_easy"]),
        "decoding": lambda c: c["tasks"]["emotion"]["decoding"].update(max_new_tokens=4),
    }
    plans = {}
    try:
        for name, edit in edits.items():
            tiny.write_config(work, tiny.edited(config, edit))
            plans[name] = tiny.planned_jobs(work)
    finally:
        tiny.write_config(work, config)
    assert plans["limit"] == plans["sets"] == {"benchmark": 2, "general_ability": 1, "report": 1}
    assert plans["decoding"] == {"predict": 3, "score": 3, "compare": 1, "figures": 1, "report": 1}


def test_benchmark_keys_hold_the_loading_the_sets_and_the_limit_only():
    model = {"type": "causal_lm", "trust_remote_code": False, "chat_template": True, "dtype": "float32", "role": "base"}
    config = {
        "data_dir": str(DATA_DIR),
        "benchmarks": {"tasks": ["piqa", "arc_easy"], "limit": 4, "batch_size": 8, "bootstrap": 100},
        "models": {"lm": model, "enc": {"type": "encoder"}},
    }
    task = {"models": ["lm", "enc"], "finetune": {"lm": {"method": "lora", "training": {"seed": 0}}}}
    assert benchmarks.benchmark_runs(config, task) == [("lm", "zeroshot"), ("lm", "lora-s0")]
    key = benchmarks.job_settings(config, task, "lm")
    assert key["model"] == {"type": "causal_lm", "trust_remote_code": False, "dtype": "float32"}  # no chat template
    assert (key["limit"], sorted(key["sets"]), "batch_size" in key) == (4, ["arc_easy", "piqa"], False)
    bf16 = benchmarks.job_settings(dict(config, models={"lm": dict(model, dtype="bfloat16")}), task, "lm")
    assert bf16["batch_size"] == 8  # bf16: the batching changes the rounding (keys.batch_invariant)
    # the inputs: the model, the fine-tune's folder, the files in the key's (name) order
    inputs = benchmarks.job_inputs(config, "t", task, "lm", "lora-s0")
    assert inputs["adapter"] == "results/t/lm/lora-s0/adapter"
    assert [Path(p).parent.name for p in inputs["data"]] == ["arc_easy", "piqa"]
    # a task's own block replaces the study-wide one; null turns it off
    assert benchmarks.settings(config, dict(task, benchmarks={"tasks": ["boolq"]})) == {"tasks": ["boolq"]}
    assert benchmarks.benchmark_runs(config, dict(task, benchmarks=None)) == []
