"""Named-entity recognition end to end: snakemake on WNUT-17 sentences with a tiny BERT token head
(untrained, LoRA), a tiny prompted LLM (zero-shot, raw prompt, LoRA) and the dictionary baseline.
The scores are checked against seqeval and a by-hand (type, text) matching on the predictions
files, the rerun plan after a decoding edit, and the resume of a killed token-head fine-tune."""

from collections import Counter

import pytest
from seqeval.metrics import f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

import tiny
from finetune_study import common

TASK = "wnut"
TYPES = ["corporation", "creative-work", "group", "location", "person", "product"]
RUNS = [
    ("tiny_bert", "zeroshot"),
    ("tiny_llama", "zeroshot"),
    ("tiny_llama", "raw"),
    ("tiny_bert", "lora-s0"),
    ("tiny_bert", "full-s0"),
    ("tiny_llama", "lora-s0"),
    ("dictionary", "baseline"),
]


def ner_config(models_dir):
    c = tiny.tiny_config(models_dir, None)
    c["tokenizer_study"] = None
    c["tasks"] = {
        TASK: {
            "type": "token_classification",
            "files": {"train": "wnut17/train.conll", "validation": "wnut17/dev.conll", "test": "wnut17/test.conll"},
            "sample": {"train": 150, "validation": 12, "test": 40},
            # the prompted LLM's rows that are not fine-tuned get two training sentences first; every
            # prompted row stops at a blank line
            "prompt": {"fewshot": 2},
            "decoding": {"max_new_tokens": 10, "batch_size": 8, "stop": ["\n\n"]},
            "bootstrap": 200,
            "models": ["tiny_bert", "tiny_llama"],
            "raw_prompt_models": ["tiny_llama"],
            "finetune": {
                "tiny_bert": [
                    {
                        "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
                        "training": {
                            "epochs": 2,
                            "batch_size": 8,
                            "learning_rate": 0.01,
                            "eval_every": 3,
                            "checkpoint_every": 1,
                            "patience": 5,
                            "max_length": 256,
                        },
                    },
                    {
                        "method": "full",
                        "training": {
                            "max_steps": 4,
                            "batch_size": 8,
                            "learning_rate": 0.001,
                            "eval_every": 2,
                            "max_length": 256,
                        },
                    },
                ],
                "tiny_llama": {
                    "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                    "training": {
                        "max_steps": 3,
                        "batch_size": 8,
                        "learning_rate": 0.01,
                        "eval_every": 3,
                        "patience": 5,
                        "max_length": 192,
                    },
                },
            },
        }
    }
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("ner")
    tiny.make_tiny_llama(base / "models" / "llama")
    tiny.make_tiny_bert(base / "models" / "bert")
    work = base / "work"
    config = ner_config(base / "models")
    tiny.write_config(work, config)
    tiny.snakemake(work, "results/report.html")
    return base, work, config


def preds(work, model, method):
    return common.read_jsonl(work / f"results/{TASK}/{model}/{method}/ner/predictions.jsonl")


def metrics(work, model, method):
    return tiny.read_json(work / f"results/{TASK}/{model}/{method}/ner/metrics.json")


def by_hand_pairs(rows):
    """Micro P/R/F1 of (type, lowercased text) multisets per sentence, counted here by hand."""
    tp = npred = ngold = 0
    for r in rows:
        gold = Counter((t, " ".join(x.lower().split())) for t, x in r["gold_pairs"])
        pred = Counter((t, " ".join(x.lower().split())) for t, x in r["pred_pairs"])
        tp += sum(min(c, gold[k]) for k, c in pred.items())
        npred, ngold = npred + sum(pred.values()), ngold + sum(gold.values())
    p, r = (tp / npred if npred else 0.0), (tp / ngold if ngold else 0.0)
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


@pytest.mark.parametrize("model,method", RUNS)
def test_scores_match_seqeval_and_hand_matching(run, model, method):
    _, work, _ = run
    rows, m = preds(work, model, method), metrics(work, model, method)
    assert m["n"] == len(rows) == 40
    assert rows, "nothing to check"
    assert all(len(r["gold_tags"]) == len(r["tokens"]) for r in rows)
    p, r, f = by_hand_pairs(rows)
    assert m["pairs"]["precision"] == pytest.approx(p, abs=1e-12)
    assert m["pairs"]["recall"] == pytest.approx(r, abs=1e-12)
    assert m["intervals"]["pair_f1"]["mean"] == pytest.approx(f, abs=1e-12)
    iv = m["intervals"]["pair_f1"]
    assert iv["low"] <= iv["mean"] <= iv["high"]
    tagger = model != "tiny_llama"
    assert m["tagger"] is tagger
    if tagger:
        assert rows, "nothing to check"
        assert all(len(r["pred_tags"]) == len(r["tokens"]) for r in rows)
        gold, pred = [r["gold_tags"] for r in rows], [r["pred_tags"] for r in rows]
        direct = f1_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0)
        assert m["strict"]["f1"] == pytest.approx(direct, abs=1e-12)
        assert m["intervals"]["entity_f1"]["mean"] == pytest.approx(direct, abs=1e-12)
        assert m["strict"]["precision"] == pytest.approx(
            precision_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0), abs=1e-12
        )
        assert m["strict"]["recall"] == pytest.approx(
            recall_score(gold, pred, mode="strict", scheme=IOB2, zero_division=0), abs=1e-12
        )
    else:
        assert "entity_f1" not in m["intervals"]
        assert m["unparsed_lines"] == sum(r["unparsed_lines"] for r in rows)
    if method in ("lora-s0", "full-s0"):
        assert m["vs_zeroshot"]["metric"] == ("entity_f1" if tagger else "pair_f1")
        zs = metrics(work, model, "zeroshot")
        key = m["vs_zeroshot"]["metric"]
        assert m["vs_zeroshot"]["mean"] == pytest.approx(
            m["intervals"][key]["mean"] - zs["intervals"][key]["mean"], abs=1e-12
        )
    else:
        assert "vs_zeroshot" not in m
    if model == "dictionary":
        assert "vs_baseline" not in m
    else:  # every other run against the dictionary, on the same sentences: strict spans for a tagger
        vs, base = m["vs_baseline"], metrics(work, "dictionary", "baseline")
        key = "entity_f1" if tagger else "pair_f1"
        assert (vs["baseline"], vs["metric"]) == ("dictionary", key)
        assert vs["diff"] == pytest.approx(m["intervals"][key]["mean"] - base["intervals"][key]["mean"], abs=1e-12)
        assert vs["low"] <= vs["diff"] <= vs["high"] and 0 <= vs["p"] <= 1
    if not tagger:
        assert not any("\n\n" in r["output"] for r in rows)  # decoding.stop


def test_summary_counts_the_test_entities_seen_in_train(run):
    _, work, _ = run
    data = {s: common.read_jsonl(work / f"results/{TASK}/data/{s}.jsonl") for s in ("train", "test")}
    from finetune_study.conll import spans

    def mentions(rows):
        return [(t, " ".join(r["tokens"][s:e]).lower()) for r in rows for t, s, e in spans(r["tags"])]

    seen = set(mentions(data["train"]))
    test = mentions(data["test"])
    o = tiny.read_json(work / f"results/{TASK}/data/summary.json")["test_overlap"]
    assert (o["test_entities"], o["also_in_train"]) == (len(test), sum(m in seen for m in test))
    assert f"of the {len(test)} test entities" in (work / "results/report.html").read_text()


def test_dictionary_baseline_finds_training_entities(run):
    """Every test entity whose exact (lowercased) words are a training entity of one type, and that
    no longer training entity overlaps, is found by the dictionary."""
    _, work, _ = run
    train = common.read_jsonl(work / f"results/{TASK}/data/train.jsonl")
    from finetune_study.conll import spans

    known = {}
    for r in train:
        for t, s, e in spans(r["tags"]):
            known.setdefault(tuple(w.lower() for w in r["tokens"][s:e]), set()).add(t)
    rows = preds(work, "dictionary", "baseline")
    for r in rows:
        for t, s, e in spans(r["pred_tags"]):
            assert tuple(w.lower() for w in r["tokens"][s:e]) in known  # only training entities are tagged
    assert metrics(work, "dictionary", "baseline")["unparsed_lines"] == 0


def test_report_and_metrics_csv(run):
    _, work, _ = run
    import csv

    table = list(csv.DictReader((work / "results/metrics.csv").open()))
    got = {(r["model"], r["method"], r["seed"]) for r in table if r["task"] == TASK}
    assert got == {(m, meth.split("-")[0], "0" if "-s" in meth else "") for m, meth in RUNS}
    for r in table:
        m = metrics(work, r["model"], r["method"] + ("-s" + r["seed"] if r["seed"] else ""))
        assert float(r["pair_f1"]) == pytest.approx(m["intervals"]["pair_f1"]["mean"])
        assert (r["entity_f1"] == "") == (not m["tagger"])
        if r["model"] != "dictionary":
            assert r["baseline_compared"] == "dictionary"
            assert float(r["p_vs_baseline"]) == pytest.approx(m["vs_baseline"]["p"])
    html = (work / "results/report.html").read_text()
    assert "Task: wnut (named-entity recognition)" in html
    assert "F1 per entity type" in html and "dictionary of train entities" in html
    assert html.index("Entity F1 on the test sentences") < html.index("<h3>Data</h3>")  # headline first
    assert "<script" not in html.split("<body>")[1].lower()


def test_decoding_edit_reruns_only_the_prompted_llm(run, tmp_path):
    _, work, config = run
    copy, config = tiny.copy_run(run, tmp_path)
    config = tiny.edited(config, lambda c: c["tasks"][TASK]["decoding"].update(max_new_tokens=12))
    tiny.write_config(copy, config)
    assert tiny.planned_jobs(copy, "results/report.html") == {
        "tag_entities": 3,  # tiny_llama zeroshot, raw, lora-s0; never the tagger
        "score_entities": 3,
        "ner_figures": 1,
        "report": 1,
    }


def test_killed_token_head_finetune_resumes_exactly(run, tmp_path):
    import shutil

    import torch
    from safetensors.torch import load_file

    _, work, _ = run
    copy, _ = tiny.copy_run(run, tmp_path)
    run_dir = f"results/{TASK}/tiny_bert/lora-s0"
    shutil.rmtree(copy / run_dir)
    import kills

    # SIGKILL from outside, the moment step 3's checkpoint is complete
    rc, fired, _ = kills.run(
        copy,
        tmp_path / "killed.log",
        f"{run_dir}/adapter",
        lambda path, is_dir: 0 if path.endswith("step-00000003/COMPLETE") else None,
    )
    assert rc != 0 and fired and not (copy / run_dir / "adapter").exists()
    kept = sorted(p.parent.name for p in (copy / "checkpoints").rglob("COMPLETE"))
    tiny.snakemake(copy, f"{run_dir}/adapter")
    resumed, clean = (
        tiny.read_json(copy / run_dir / "train_log.json"),
        tiny.read_json(work / run_dir / "train_log.json"),
    )
    # resumed from the newest complete checkpoint the kill left (3, or 4 if it finished before the kill)
    assert resumed["resumed_from"] == [int(kept[-1].rpartition("-")[2])] and resumed["resumed_from"][0] in (3, 4)
    assert clean["resumed_from"] == []
    assert [h["step"] for h in resumed["history"]] == list(range(1, clean["final_step"] + 1))
    assert [h["train_loss"] for h in resumed["history"]] == pytest.approx(
        [h["train_loss"] for h in clean["history"]], rel=1e-5
    )
    a = load_file(str(copy / run_dir / "adapter/adapter_model.safetensors"))
    b = load_file(str(work / run_dir / "adapter/adapter_model.safetensors"))
    assert a.keys() == b.keys() and any("classifier" in k for k in a)  # the trained head is saved with LoRA
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_snakemake_report(run, tmp_path):
    """`snakemake --report` of the finished NER run: entity F1, F1 per type and training curves."""
    from test_snakemake_report import check_report

    _, work, _ = run
    _, categories = check_report(work, tmp_path)
    assert categories[TASK] == {
        "evaluation": [f"results/{TASK}/figures/ner_per_type.png", f"results/{TASK}/figures/ner_scores.png"],
        "fine-tuning": [f"results/{TASK}/figures/ner_training.png"],
    }
