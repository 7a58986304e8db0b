"""End-to-end: the real snakemake on tiny random models and a few dozen rows of the emotion data.
Checks the files, the numbers (metrics recomputed from the predictions), the adapter format,
the report, and the rerun plans after config edits."""
import base64
import json
import re

import pytest
from sklearn.metrics import accuracy_score, f1_score

import tiny
from lora_pipeline.common import read_jsonl


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    tiny.make_tiny_llama(base / "models" / "llama")
    tiny.make_tiny_bert(base / "models" / "bert")
    work = base / "work"
    config = tiny.tiny_config(base / "models", work)
    tiny.write_config(work, config)
    tiny.snakemake(work, "results/report.html")
    return work, config


RUNS = [("tiny_llama", "zeroshot"), ("tiny_bert", "zeroshot"), ("tiny_llama", "raw"), ("tiny_llama", "lora"),
        ("tiny_bert", "lora")]
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def test_data_splits(run):
    work, _ = run
    summary = tiny.read_json(work / "results/emotion/data/summary.json")
    assert {k: v["rows"] for k, v in summary["splits"].items()} == {"train": 32, "validation": 8, "test": 16}
    rows = read_jsonl(work / "results/emotion/data/test.jsonl")
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


def test_adapter_is_standard_peft(run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    work, _ = run
    adapter = work / "results/emotion/tiny_llama/lora/adapter"
    assert (adapter / "adapter_config.json").exists() and (adapter / "adapter_model.safetensors").exists()
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and sorted(cfg["target_modules"]) == ["q_proj", "v_proj"]
    base = AutoModelForCausalLM.from_pretrained(work / "results/models/tiny_llama")
    model = PeftModel.from_pretrained(base, adapter)
    assert any("lora_A" in n for n, _ in model.named_parameters())


def test_training_log(run):
    work, _ = run
    log = tiny.read_json(work / "results/emotion/tiny_llama/lora/train_log.json")
    assert log["final_step"] == 4  # 32 rows / batch 8, one epoch
    assert [e["step"] for e in log["evals"]] == [0, 2, 4]
    assert all(e["val_perplexity"] > 1 for e in log["evals"])
    assert [h["step"] for h in log["history"]] == [1, 2, 3, 4]
    # checkpoints live outside the declared outputs
    assert list((work / "checkpoints/emotion/tiny_llama").glob("*/step-*/COMPLETE"))


def test_report_is_self_contained_and_escaped(run):
    work, _ = run
    html = (work / "results/report.html").read_text()
    assert "tiny &lt;test&gt; report" in html and "<test>" not in html
    assert "note with &lt;b&gt;markup&lt;/b&gt; &amp; ampersand" in html
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) == 4 and all(base64.b64decode(i)[:4] == b"\x89PNG" for i in images)
    assert not re.search(r"(src|href)=['\"]https?:", html)
    for name in ("LoRA: tiny_llama", "untrained head: tiny_bert", "instruct, raw prompt: tiny_llama"):
        assert name in html
    metrics = tiny.read_json(work / "results/emotion/tiny_bert/lora/metrics.json")
    assert f"{metrics['accuracy']:.4f}" in html


def test_nothing_changed_plans_nothing(run):
    work, _ = run
    assert tiny.planned_jobs(work) == {}


def test_decoding_change_reruns_only_generation_eval(run):
    work, config = run
    tiny.write_config(work, tiny.edited(config, lambda c: c["tasks"]["emotion"]["decoding"].update(max_new_tokens=4)))
    try:
        # the causal LM's three runs (zero-shot, raw, LoRA); not the encoder, not the fine-tune
        assert tiny.planned_jobs(work) == {"predict": 3, "score": 3, "figures": 1, "report": 1}
    finally:
        tiny.write_config(work, config)


def test_lora_change_reruns_finetune_not_base(run):
    work, config = run
    tiny.write_config(work, tiny.edited(config, lambda c: c["tasks"]["emotion"]["finetune"]["tiny_llama"]["lora"].update(r=8)))
    try:
        assert tiny.planned_jobs(work) == {"finetune": 1, "predict": 1, "score": 1, "figures": 1, "report": 1}
    finally:
        tiny.write_config(work, config)


def test_added_task_runs_only_its_jobs(run):
    work, config = run

    def add(c):
        c["tasks"]["agnews"] = {
            "type": "classification", "files": {"train": "ag_news/alps_dev_from_train.tsv", "test": "ag_news/alps_test.tsv"},
            "header": False, "column_names": ["text", "label"], "labels": ["World", "Sports", "Business", "Sci/Tech"],
            "sample": {"train": 16, "validation": 8, "test": 8}, "models": ["tiny_bert"],
            "finetune": {"tiny_bert": {"lora": {"r": 4, "target_modules": ["query", "value"]}, "training": {"max_steps": 2}}}}

    tiny.write_config(work, tiny.edited(config, add))
    try:
        assert tiny.planned_jobs(work) == {"prepare_data": 1, "predict": 2, "finetune": 1, "score": 2, "figures": 1,
                                           "report": 1}
    finally:
        tiny.write_config(work, config)
    assert tiny.planned_jobs(work) == {}


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
    assert rendered["tiny_llama"] == ("<|system|>You are a helpful assistant.<|end|>\n<|user|>How does this text feel: "
                                      "'I finally passed my exam!'<|end|>\n<|assistant|>joy<|end|>\n")
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
        assert tiny.planned_jobs(work) == {"predict": 3, "score": 3, "figures": 1, "report": 1}
        tiny.snakemake(work, "results/report.html")
        preds = read_jsonl(work / "results/emotion/tiny_llama/lora/predictions.jsonl")
        assert all(p["pred"] in LABELS and len(p["scores"]) == 6 for p in preds)
        assert all(p["pred"] == LABELS[max(range(6), key=p["scores"].__getitem__)] for p in preds)
        assert tiny.read_json(work / "results/emotion/tiny_llama/lora/metrics.json")["unparsed_share"] == 0
    finally:
        tiny.write_config(work, config)
