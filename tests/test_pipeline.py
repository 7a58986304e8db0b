"""End-to-end: the real snakemake on tiny random models and a few dozen rows of the emotion data.
Checks the files, the numbers (metrics recomputed from the predictions), the adapter format,
the report, metrics.csv, the baseline and the paired tests. The rerun plans after edits are in
test_rerun_contract.py."""

import base64
import json
import re

import pytest
from sklearn.metrics import accuracy_score, f1_score

import tiny
from finetune_study.common import read_jsonl


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    # a copy: test_likelihood_scoring_through_the_pipeline reruns jobs in it
    return tiny.copy_run(tiny_run, tmp_path_factory.mktemp("pipeline"))


RUNS = [
    ("tiny_llama", "zeroshot"),
    ("tiny_bert", "zeroshot"),
    ("tiny_llama", "raw"),
    ("tiny_llama", "lora-s0"),
    ("tiny_bert", "lora-s0"),
    ("majority", "baseline"),
]
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def test_data_splits(run):
    work, _ = run
    summary = tiny.read_json(work / "results/emotion/data/summary.json")
    assert {k: v["rows"] for k, v in summary["splits"].items()} == {"train": 32, "validation": 8, "test": 16}
    rows = read_jsonl(work / "results/emotion/data/test.jsonl")
    assert rows, "nothing to check"
    assert all(r["label"] in LABELS and r["text"] for r in rows)


@pytest.mark.parametrize("model,method", RUNS)
def test_metrics_match_predictions(run, model, method):
    work, _ = run
    preds = read_jsonl(work / f"results/emotion/{model}/{method}/predictions.jsonl")
    assert len(preds) == 16
    m = tiny.read_json(work / f"results/emotion/{model}/{method}/metrics.json")
    gold = [p["gold"] for p in preds]
    pred = [p["pred"] or "(unparsed)" for p in preds]
    assert m["accuracy"] == pytest.approx(accuracy_score(gold, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(gold, pred, labels=LABELS, average="macro", zero_division=0))
    assert m["weighted_f1"] == pytest.approx(f1_score(gold, pred, labels=LABELS, average="weighted", zero_division=0))
    assert m["unparsed_share"] == pytest.approx(sum(p["pred"] is None for p in preds) / 16)
    assert sum(map(sum, m["confusion_matrix"]["counts"])) == 16
    for k in ("accuracy", "macro_f1", "weighted_f1"):
        assert m[k] == pytest.approx(m["intervals"][k]["mean"])
        assert m["intervals"][k]["low"] <= m[k] <= m["intervals"][k]["high"]


def test_adapter_is_standard_peft(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    work, _ = run
    adapter = work / "results/emotion/tiny_llama/lora-s0/adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    base = AutoModelForCausalLM.from_pretrained(work / "results/models/tiny_llama")
    model = PeftModel.from_pretrained(base, adapter)
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_training_log(run):
    work, _ = run
    log = tiny.read_json(work / "results/emotion/tiny_llama/lora-s0/train_log.json")
    assert log["final_step"] == 4  # 32 rows / batch 8, one epoch
    assert [e["step"] for e in log["evals"]] == [0, 2, 4]
    assert log["evals"], "nothing to check"
    assert all(e["val_perplexity"] > 1 for e in log["evals"])
    assert [h["step"] for h in log["history"]] == [1, 2, 3, 4]
    # checkpoints live outside the declared outputs and are deleted once the fine-tune succeeded
    assert (work / "checkpoints").is_dir() and not list((work / "checkpoints").rglob("COMPLETE"))
    # the log names the hashes the adapter was built from
    prov = log["provenance"]
    assert set(prov["data"]) == {"train", "validation"} and len(prov["model"]) == len(prov["adapter"]) == 12


def test_report_is_self_contained_and_escaped(run):
    work, _ = run
    html = (work / "results/report.html").read_text()
    assert "tiny &lt;test&gt; report" in html and "<test>" not in html
    assert "note with &lt;b&gt;markup&lt;/b&gt; &amp; ampersand" in html
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) == 4 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert not re.search(r"(src|href)=['\"]https?:", html)
    for name in ("LoRA: tiny_llama", "untrained head: tiny_bert", "raw prompt: tiny_llama", "majority class (train)"):
        assert name in html
    metrics = tiny.read_json(work / "results/emotion/tiny_bert/lora-s0/metrics.json")
    iv = metrics["intervals"]["accuracy"]
    # an interval is kept on one line by non-breaking spaces (the headline table wraps its cells)
    assert f"{iv['mean']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]" in html.replace("\u00a0", " ")
    # the headline table comes before the data table, and the tokenizer study after the task
    assert (
        html.index("Results on the test split")
        < html.index("<h3>Data</h3>")
        < html.index("Tokenizers across model families")
    )
    # the footer's hashes are the provenance files' hashes
    prov = tiny.read_json(work / "results/emotion/tiny_bert/lora-s0/provenance.json")
    assert prov["adapter"] in html and prov["model"] in html and prov["data"]["test"] in html
    # and say what generated each causal LM's answers (the encoders generate nothing)
    assert tiny.read_json(work / "results/emotion/tiny_llama/zeroshot/provenance.json")["generated_with"] == {
        "backend": "transformers",
        "batch_size": 8,
        "cache": "dynamic",
        "compile": False,
    }
    assert "<th>generated by</th>" in html and len(re.findall(r">transformers</td>", html)) == 3


def test_metrics_csv_has_one_row_per_run(run):
    import csv

    work, _ = run
    rows = list(csv.DictReader(open(work / "results/metrics.csv")))
    assert sorted((r["model"], r["method"], r["seed"]) for r in rows) == sorted(
        [
            ("tiny_llama", "zeroshot", ""),
            ("tiny_bert", "zeroshot", ""),
            ("tiny_llama", "raw", ""),
            ("tiny_llama", "lora", "0"),
            ("tiny_bert", "lora", "0"),
            ("majority", "baseline", ""),
        ]
    )
    for r in rows:
        m = tiny.read_json(
            work / f"results/emotion/{r['model']}/{r['method'] + ('-s' + r['seed'] if r['seed'] else '')}/metrics.json"
        )
        assert float(r["accuracy"]) == pytest.approx(m["accuracy"])
        assert float(r["accuracy_low"]) <= float(r["accuracy"]) <= float(r["accuracy_high"])


def test_majority_baseline_predicts_the_most_frequent_training_label(run):
    from collections import Counter

    work, _ = run
    train = read_jsonl(work / "results/emotion/data/train.jsonl")
    counts = Counter(r["label"] for r in train)
    top = max(counts.values())
    preds = read_jsonl(work / "results/emotion/majority/baseline/predictions.jsonl")
    assert {p["pred"] for p in preds} == {next(lab for lab in LABELS if counts[lab] == top)}


def test_paired_test_pairs_the_same_items(run):
    work, _ = run
    comp = tiny.read_json(work / "results/emotion/comparison.json")
    by = {(t["model"], t["method"]): t["mcnemar"] for t in comp["paired"]}
    assert set(by) == {("tiny_llama", "lora-s0"), ("tiny_bert", "lora-s0")}
    zs = {
        p["id"]: p["pred"] == p["gold"]
        for p in read_jsonl(work / "results/emotion/tiny_bert/zeroshot/predictions.jsonl")
    }
    ft = {
        p["id"]: p["pred"] == p["gold"]
        for p in read_jsonl(work / "results/emotion/tiny_bert/lora-s0/predictions.jsonl")
    }
    b = sum(zs[i] and not ft[i] for i in zs)
    c = sum(ft[i] and not zs[i] for i in zs)
    assert (by[("tiny_bert", "lora-s0")]["b"], by[("tiny_bert", "lora-s0")]["c"]) == (b, c)


def test_every_run_is_tested_against_the_majority_baseline(run):
    """McNemar against the majority baseline, recomputed from the two predictions files with scipy's
    exact binomial test; the same p and difference in metrics.csv."""
    import csv

    from scipy.stats import binomtest

    work, _ = run

    def correct(model, method):
        rows = read_jsonl(work / f"results/emotion/{model}/{method}/predictions.jsonl")
        return {p["id"]: p["pred"] == p["gold"] for p in rows}

    base = correct("majority", "baseline")
    tests = {
        (t["model"], t["method"]): t for t in tiny.read_json(work / "results/emotion/comparison.json")["vs_baseline"]
    }
    assert set(tests) == set(RUNS) - {("majority", "baseline")}
    table = {(r["model"], r["method"], r["seed"]): r for r in csv.DictReader(open(work / "results/metrics.csv"))}
    for (model, method), t in tests.items():
        mine = correct(model, method)
        b = sum(base[i] and not mine[i] for i in base)
        c = sum(mine[i] and not base[i] for i in base)
        assert (t["mcnemar"]["b"], t["mcnemar"]["c"]) == (b, c)
        assert t["p"] == pytest.approx(binomtest(min(b, c), b + c, 0.5).pvalue if b + c else 1.0)
        assert t["diff"] == pytest.approx((sum(mine.values()) - sum(base.values())) / len(base))
        row = table[(model, method.split("-")[0], method.split("-s")[1] if "-s" in method else "")]
        assert row["baseline_compared"] == "majority" and float(row["p_vs_baseline"]) == pytest.approx(t["p"])
    assert table[("majority", "baseline", "")]["p_vs_baseline"] == ""
    assert "accuracy vs majority (paired), McNemar p" in (work / "results/report.html").read_text()


def test_tokenizer_and_chat_template_study(run):
    work, _ = run
    table = tiny.read_json(work / "results/tokenizers/table.json")
    langs = {r["language"] for r in table["rows"]}
    assert langs == {"english", "persian", "emotion"}
    assert {r["tokenizer"] for r in table["rows"]} == {"gpt2", "llama3", "tiny_llama"}
    gpt2_fa = next(r for r in table["rows"] if r["tokenizer"] == "gpt2" and r["language"] == "persian")
    llama3_fa = next(r for r in table["rows"] if r["tokenizer"] == "llama3" and r["language"] == "persian")
    assert gpt2_fa["byte_split_share"] > 0.3 and llama3_fa["tokens_per_word"] < gpt2_fa["tokens_per_word"]
    rendered = tiny.read_json(work / "results/tokenizers/chat_templates.json")
    assert rendered["tiny_llama"] == (
        "<|system|>You are a helpful assistant.<|end|>\n<|user|>How does this text feel: "
        "'I finally passed my exam!'<|end|>\n<|assistant|>joy<|end|>\n"
    )
    assert rendered["tiny_bert"] is None
    html = (work / "results/report.html").read_text()
    assert "Tokenizers across model families" in html and "&lt;|assistant|&gt;joy" in html
    assert "Raw prompt vs chat template: tiny_llama" in html and "token id" in html


def test_likelihood_scoring_through_the_pipeline(run):
    work, config = run
    edited = tiny.edited(config, lambda c: c["tasks"]["emotion"].update(scoring="likelihood"))
    tiny.write_config(work, edited)
    try:
        # the causal LM's runs only; encoders and fine-tunes untouched
        assert tiny.planned_jobs(work) == {"predict": 3, "score": 3, "compare": 1, "figures": 1, "report": 1}
        tiny.snakemake(work, "results/report.html")
        preds = read_jsonl(work / "results/emotion/tiny_llama/lora-s0/predictions.jsonl")
        assert preds, "nothing to check"
        assert all(p["pred"] in LABELS and len(p["scores"]) == 6 for p in preds)
        assert all(p["pred"] == LABELS[max(range(6), key=p["scores"].__getitem__)] for p in preds)
        assert tiny.read_json(work / "results/emotion/tiny_llama/lora-s0/metrics.json")["unparsed_share"] == 0
    finally:
        tiny.write_config(work, config)


def test_every_model_run_records_its_resolved_dtype(run):
    """dtype auto resolves once for this machine (bf16 on a CPU with native bf16): each run's
    provenance, train log, metrics.csv row and report row name it; the baseline has none. The
    provenance also names the device the job computed on."""
    import csv

    import torch

    from finetune_study import precision

    work, _ = run
    expected = precision.resolve("auto")
    for run_dir in (
        "tiny_llama/zeroshot",
        "tiny_llama/raw",
        "tiny_llama/lora-s0",
        "tiny_bert/zeroshot",
        "tiny_bert/lora-s0",
    ):
        prov = tiny.read_json(work / f"results/emotion/{run_dir}/provenance.json")
        assert prov["dtype"] == expected, run_dir
        assert prov["device"].startswith("cuda (") if torch.cuda.is_available() else prov["device"] == "cpu", run_dir
    # on a CPU attention is float32 either way: cast up in a bf16 fine-tune (attention_dtype auto);
    # on a GPU it computes in the compute dtype
    attention = expected if torch.cuda.is_available() else "float32"
    for model in ("tiny_llama", "tiny_bert"):
        log = tiny.read_json(work / f"results/emotion/{model}/lora-s0/train_log.json")
        assert log["dtype"] == {"compute": expected, "trained_weights": "float32", "attention": attention}, model
    assert "dtype" not in tiny.read_json(work / "results/emotion/majority/baseline/provenance.json")
    rows = list(csv.DictReader(open(work / "results/metrics.csv")))
    assert {r["dtype"] for r in rows if r["model"] != "majority"} == {expected}
    assert [r["dtype"] for r in rows if r["model"] == "majority"] == [""]
    html = (work / "results/report.html").read_text()
    short = {"bfloat16": "bf16", "float32": "fp32"}[expected]
    headline = html[html.index("Results on the test split") : html.index("<h3>Data</h3>")]
    assert headline.count(f"<td>{short}</td>") == 5, headline  # one per model run, not the baseline


def test_a_configfile_study_shows_its_own_title_and_notes(tiny_run, tmp_path):
    """config.yaml's report_title and notes describe the default study: a study given with
    --configfile that sets none shows no notes and the schema's default title; one that sets them
    shows its own; the run without --configfile still shows config.yaml's. Only the report reruns."""
    import yaml

    work, _ = tiny.copy_run(tiny_run, tmp_path)
    report = work / "results/report.html"
    default_note, default_title = "note with &lt;b&gt;markup&lt;/b&gt; &amp; ampersand", "tiny &lt;test&gt; report"
    assert default_note in report.read_text() and f"<h1>{default_title}</h1>" in report.read_text()
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({"run_tasks": ["emotion"]}))  # a study that sets no title and no notes
    assert tiny.planned_jobs(work, "results/report.html", "--configfile", str(study)) == {"report": 1}
    tiny.snakemake(work, "results/report.html", "--configfile", str(study))
    html = report.read_text()
    assert default_note not in html and "<h1>LoRA experiment report</h1>" in html
    assert "class='note'" not in html
    study.write_text(yaml.safe_dump({"run_tasks": ["emotion"], "report_title": "Own", "notes": ["own note"]}))
    tiny.snakemake(work, "results/report.html", "--configfile", str(study))
    html = report.read_text()
    assert "<h1>Own</h1>" in html and "<p class='note'>own note</p>" in html and default_note not in html
    tiny.snakemake(work, "results/report.html")  # the default study again
    assert default_note in report.read_text() and f"<h1>{default_title}</h1>" in report.read_text()
