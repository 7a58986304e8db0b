"""Issue 45, in process: each run tested against its task's strongest baseline (McNemar for
classification, checked by hand and against scipy), splits carved by whole documents (checked
against the raw file's -DOCSTART- documents), the share of test entities seen in train, and stop
strings and few-shot prompts reaching the prompt text and the stage keys (stop strings reaching
model.generate: tests/test_inference_training.py::test_stop_strings_reach_generate_and_cut_the_output). The same
paths end to end: tests/test_pipeline.py, test_ner_pipeline.py, test_source_target_pipeline.py and
the decoding.stop / prompt.fewshot rows of tests/test_rerun_contract.py."""

import copy
import csv

import pytest
import yaml

from conftest import REPO
from finetune_study import comparison, conll, data, decoding, keys, prompting, source_prompting
from finetune_study import config as cfg
from finetune_study.common import ConfigError, PipelineError
from finetune_study.tasks import classification, generation, source_target, token_classification
from finetune_study.tasks import token_classification_data as ner_data

# ---------------------------------------------------------------- against the strongest baseline


def rows_of(gold, pred):
    # listed in reverse id order: the tests must pair items by id, not by position
    return [{"id": i, "gold": g, "pred": p} for i, (g, p) in reversed(list(enumerate(zip(gold, pred))))]


def test_every_run_is_tested_against_the_majority_baseline_by_hand():
    gold = list("aaaabbbbab")
    majority = list("aaaaaaaaaa")  # right on the 5 a's (items 0-3 and 8)
    run = list("aaabbbbbbb")  # right on 0-2, 4-7 and 9 (8 of 10); wrong on 3 and 8
    runs_ = [("m", "zeroshot"), ("m", "lora-s0"), ("majority", "baseline")]
    preds = {
        ("m", "zeroshot"): rows_of(gold, majority),  # the same answers as the baseline: never disagrees
        ("m", "lora-s0"): rows_of(gold, run),
        ("majority", "baseline"): rows_of(gold, majority),
    }
    tests = {t["method"]: t for t in comparison.baseline_tests(runs_, preds, n_resamples=500)}
    assert set(tests) == {"zeroshot", "lora-s0"}  # the baseline is not tested against itself
    t = tests["lora-s0"]
    # by hand: the baseline alone is right on items 3 and 8 (b = 2), the run alone on 4, 5, 6, 7, 9 (c = 5)
    assert (t["mcnemar"]["b"], t["mcnemar"]["c"], t["mcnemar"]["n"]) == (2, 5, 10)
    # exact two-sided: 2 * P(X <= 2), X ~ Bin(7, 1/2) = 2 * (1 + 7 + 21) / 128
    assert t["p"] == pytest.approx(2 * 29 / 128)
    from scipy.stats import binomtest

    assert t["p"] == pytest.approx(binomtest(2, 7, 0.5).pvalue)
    assert t["diff"] == pytest.approx(0.8 - 0.5) and t["low"] <= t["diff"] <= t["high"]
    assert (t["baseline"], t["metric"]) == ("majority", "accuracy")
    same = tests["zeroshot"]
    assert same["p"] == 1.0 and same["diff"] == 0.0 and (same["mcnemar"]["b"], same["mcnemar"]["c"]) == (0, 0)


def test_source_target_report_compares_with_the_baseline_that_scores_highest():
    from finetune_study.tasks import source_target_results

    class Read:
        def json(self, path):
            return {"intervals": {"rouge_l": {"mean": 0.31 if "/lead/" in path else 0.12}}}

    entry = {
        "field": "summarization",
        "runs": [["m", "zeroshot", ""], ["copy", "baseline", ""], ["lead", "baseline", ""]],
    }
    assert source_target_results.strongest_baseline("t", entry, Read()) == "lead"
    x = {"vs_baselines": {"copy": {"rouge_l": {"diff": 0.2, "low": 0.1, "high": 0.3, "p": 0.01}}, "lead": {}}}
    assert source_target_results.vs_strongest(x, entry, "copy")["diff"] == 0.2
    assert source_target_results.vs_strongest(x, entry, "lead") is None


# ---------------------------------------------------------------- splits by document


def conll_documents(n_docs=12):
    """A CoNLL text of n_docs documents of 1 to 4 sentences; every sentence unique, each document's
    entity repeated in all its sentences (as news articles repeat their names)."""
    out = []
    for d in range(n_docs):
        out.append("-DOCSTART-\tO\n\n")
        for s in range(1 + d % 4):
            out.append(f"Doc{d}Name\tB-person\nsaid\tO\nthing{d}x{s}\tO\n\n")
    return "".join(out)


def raw_documents(text):
    """{sentence text: document number}, read from the raw text here (not by conll.py)."""
    doc, words, out = 0, [], {}
    for line in [*text.split("\n"), ""]:
        if line.startswith("-DOCSTART-"):
            doc += 1
        elif line.strip():
            words.append(line.split("\t")[0])
        elif words:
            out[" ".join(words)] = doc
            words = []
    return out


def ner_file_task(tmp_path, text, **extra):
    (tmp_path / "d.conll").write_text(text)
    return {
        "type": "token_classification",
        "files": {"train": "d.conll"},
        "format": "conll",
        "encoding": "utf-8",
        "separator": "auto",
        "token_column": 0,
        "tag_column": -1,
        "tag_scheme": "iob2",
        "strict_iob2": True,
        "validation_fraction": 0.2,
        "test_fraction": 0.25,
        "seed": 0,
        **extra,
    }


def documents_per_split(splits, docs):
    return {s: {docs[r["text"]] for r in rows} for s, rows in splits.items()}


def test_splits_carved_from_a_file_with_documents_never_share_a_document(tmp_path):
    text = conll_documents()
    docs = raw_documents(text)
    assert len(docs) == 30 and len(set(docs.values())) == 12
    splits, _ = data.full_splits(ner_file_task(tmp_path, text), tmp_path)
    per = documents_per_split(splits, docs)
    assert not (per["train"] & per["test"]) and not (per["train"] & per["validation"])
    assert not (per["validation"] & per["test"]) and all(per.values())
    assert per["train"] | per["validation"] | per["test"] == set(range(1, 13))
    # every sentence of the file is in exactly one split
    assert sorted(r["text"] for rows in splits.values() for r in rows) == sorted(docs)
    assert len(splits["test"]) >= int(30 * 0.25)  # whole documents until the fraction is reached
    # sentence by sentence (split_by: row) the same file puts documents in several splits
    rows_split, _ = data.full_splits(ner_file_task(tmp_path, text, split_by="row"), tmp_path)
    per_row = documents_per_split(rows_split, docs)
    assert per_row["train"] & (per_row["test"] | per_row["validation"])
    # a file without -DOCSTART- is carved by sentence under auto, as before
    auto = ner_file_task(tmp_path, text.replace("-DOCSTART-\tO\n\n", ""))
    plain = data.normalize(conll.read_conll(tmp_path / "d.conll"), auto, "d.conll")
    assert "doc" not in plain[0] and not data.carve_by_document(auto, plain)
    one = [dict(r, doc=1) for r in splits["train"]]  # one -DOCSTART- at the top: by row under auto
    assert not data.carve_by_document(auto, one) and data.carve_by_document(dict(auto, split_by="document"), one)


def test_split_by_document_without_marks_is_one_line_naming_the_file(tmp_path):
    task = ner_file_task(tmp_path, "Bob\tB-person\n\nsaid\tO\n", split_by="document")
    with pytest.raises(PipelineError) as e:
        data.check_task_files("ner", task, tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "d.conll")) and "split_by: document" in msg


def test_a_document_column_keeps_a_tables_documents_together(tmp_path):
    with open(tmp_path / "t.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["text", "label", "article"])
        for i in range(40):
            w.writerow([f"sentence {i}", "pos" if i % 3 else "neg", f"a{i // 4}"])  # 10 articles of 4 rows
    task = {
        "type": "classification",
        "files": {"train": "t.tsv"},
        "format": "tsv",
        "header": True,
        "text_column": "text",
        "label_column": "label",
        "labels": ["neg", "pos"],
        "label_map": {},
        "drop_rows_with_label": [],
        "document_column": "article",
        "validation_fraction": 0.2,
        "test_fraction": 0.2,
        "seed": 3,
    }
    splits, _ = data.full_splits(task, tmp_path)
    article = {f"sentence {i}": f"a{i // 4}" for i in range(40)}
    per = {s: {article[r["text"]] for r in rows} for s, rows in splits.items()}
    assert not (per["train"] & per["test"]) and not (per["train"] & per["validation"]) and per["test"]
    assert not (per["validation"] & per["test"])
    assert all(len(rows) % 4 == 0 for rows in splits.values())  # whole articles


def test_data_summary_counts_the_test_entities_seen_in_train():
    def row(words, tags):
        return {"tokens": words, "tags": tags}

    splits = {
        "train": [row(["Bob", "met", "Ann"], ["B-person", "O", "B-person"]), row(["Paris"], ["B-location"])],
        "test": [
            row(["BOB", "left"], ["B-person", "O"]),  # seen (any case)
            row(["Paris", "Hilton"], ["B-person", "I-person"]),  # unseen: another text
            row(["Paris"], ["B-person"]),  # unseen: Paris was a location in train
            row(["Ann", "and", "Ann"], ["B-person", "O", "B-person"]),  # two mentions, both seen
        ],
    }
    assert ner_data.test_overlap(splits) == {"test_entities": 5, "also_in_train": 3, "share": 0.6}


# ---------------------------------------------------------------- stop strings


def loaded(config_files):
    c = {}
    for f in config_files:
        c = _merge(c, yaml.safe_load((REPO / f).read_text()))
    return cfg.validate(c, REPO / "schemas" / "config.schema.yaml")


def _merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


STUDY = {
    "wnut17": "configs/studies/wnut17_ner.offline.yaml",
    "tatoeba_en_fa": "configs/studies/tatoeba_translation.offline.yaml",
    "alpaca": "configs/studies/alpaca_7b.offline.yaml",
}


def study(name):
    return loaded(["config.yaml", STUDY[name]])


def without(task, *keys_):
    """The task with its decodings' stop strings and its prompt.fewshot taken out."""
    t = copy.deepcopy(task)
    for d in [t.get("decoding"), *(t.get("decodings") or {}).values()]:
        if d:
            d.pop("stop", None)
    t.get("prompt", {}).pop("fewshot", None)
    return t


def test_stop_and_fewshot_are_in_the_keys_of_the_rows_they_change(monkeypatch):
    c = loaded(["config.yaml"])
    emotion = dict(c["tasks"]["emotion"], scoring="generate")
    m = "smollm2_135m_instruct"
    base = classification.inference_settings(c, emotion, m, "zeroshot")
    assert "stop" not in base["decoding"] and "fewshot" not in base and "fewshot" not in base["prompt"]
    # none (absent, [], fewshot 0) leaves every key as it was
    for edit in ({"stop": []}, {}):
        t = dict(emotion, decoding=dict(emotion["decoding"], **edit), prompt=dict(emotion["prompt"], fewshot=0))
        assert classification.inference_settings(c, t, m, "zeroshot") == base
    stopped = dict(emotion, decoding=dict(emotion["decoding"], stop=["\n"]))
    assert classification.inference_settings(c, stopped, m, "zeroshot")["decoding"]["stop"] == ["\n"]
    assert decoding.to_generate_kwargs(classification.inference_settings(c, stopped, m, "lora-s0")["decoding"])[
        "stop_strings"
    ] == ["\n"]
    shots = dict(emotion, prompt=dict(emotion["prompt"], fewshot=3))
    zs = classification.inference_settings(c, shots, m, "zeroshot")
    assert zs["fewshot"] == {"k": 3, "seed": emotion["seed"]} and "fewshot" not in zs["prompt"]
    assert classification.inference_settings(c, shots, m, "raw")["fewshot"]["k"] == 3
    # a fine-tuned row is asked as it was trained: its key, and its fine-tune's, do not change
    assert classification.inference_settings(c, shots, m, "lora-s0") == classification.inference_settings(
        c, emotion, m, "lora-s0"
    )
    assert keys.finetune_settings(c, shots, m, "lora-s0") == keys.finetune_settings(c, emotion, m, "lora-s0")
    assert "fewshot" not in classification.inference_settings(c, shots, "minilm_l6", "zeroshot")  # an encoder

    # the offline studies that compare a base model or a baseline use them; without them the keys are the old ones
    ner = study("wnut17")
    task = ner["tasks"]["wnut17"]
    llm = "smollm2_135m_instruct"
    assert token_classification.tag_settings(ner, task, llm, "zeroshot")["decoding"]["stop"]
    assert token_classification.tag_settings(ner, task, llm, "zeroshot")["fewshot"]["k"] > 0
    assert "fewshot" not in token_classification.tag_settings(ner, task, llm, "lora-s0")
    assert token_classification.tag_settings(ner, task, "minilm_l6", "zeroshot") == token_classification.tag_settings(
        ner, without(task), "minilm_l6", "zeroshot"
    )  # a tagger reads neither
    mt = study("tatoeba_en_fa")
    task = mt["tasks"]["tatoeba_en_fa"]
    zs = source_target.target_settings(mt, task, "gemma3_270m_base", "zeroshot", "greedy")
    assert zs["decoding"]["stop"] == ["\n"] and zs["fewshot"]["k"] > 0
    plain = source_target.target_settings(mt, without(task), "gemma3_270m_base", "zeroshot", "greedy")
    assert {k: v for k, v in zs.items() if k != "fewshot"} | {"decoding": plain["decoding"]} == plain
    gen = study("alpaca")
    task = gen["tasks"]["alpaca"]
    point = next(iter(generation.decodings(task).values()))
    g = generation.generation_settings(gen, task, "gemma3_270m_base", point, "zeroshot")
    assert g["decoding"].get("stop") and g["fewshot"]["k"] > 0


def test_bad_stop_or_fewshot_is_one_line_naming_the_file_and_key(tmp_path):
    c = yaml.safe_load((REPO / "config.yaml").read_text())
    for edit, key in (
        (lambda t: t["decoding"].update(stop=[""]), "tasks.emotion.decoding.stop"),
        (lambda t: t["decoding"].update(stop="\n"), "tasks.emotion.decoding.stop"),
        (lambda t: t.setdefault("prompt", {}).update(fewshot=-1), "tasks.emotion.prompt.fewshot"),
    ):
        bad = copy.deepcopy(c)
        edit(bad["tasks"]["emotion"])
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ConfigError) as e:
            cfg.validate(bad, REPO / "schemas" / "config.schema.yaml", files=(str(path),))
        msg = str(e.value)
        assert len(msg.splitlines()) == 1 and msg.startswith(f"{path}: {key}"), msg
    bad = copy.deepcopy(c)
    bad["tasks"]["emotion"]["prompt"]["fewshot"] = 40  # sample.train keeps 32
    bad["tasks"]["emotion"]["sample"]["train"] = 32
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError) as e:
        cfg.validate(bad, REPO / "schemas" / "config.schema.yaml", files=(str(tmp_path / "config.yaml"),))
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'config.yaml'}: tasks.emotion.prompt.fewshot: 40 examples") and "\n" not in msg
    with pytest.raises(ValueError, match="stop must be a list of non-empty strings"):
        decoding.validate_decoding("greedy", {"stop": ["a", ""]})


# ---------------------------------------------------------------- few-shot prompts


def test_fewshot_examples_come_from_train_drawn_with_the_seed_and_fill_the_prompt():
    train = [{"id": i, "text": f"train text {i}", "label": "joy" if i % 2 else "anger"} for i in range(20)]
    s = {"fewshot": {"k": 3, "seed": 4}}
    shots = prompting.fewshot_rows(train, s)
    assert len(shots) == 3 and len({r["id"] for r in shots}) == 3 and all(r in train for r in shots)
    assert prompting.fewshot_rows(train, s) == shots  # the same draw every time
    assert prompting.fewshot_rows(train, {"fewshot": {"k": 3, "seed": 5}}) != shots
    assert prompting.fewshot_rows(train, {}) == []
    with pytest.raises(ValueError, match="3 examples asked for, but the train split has 2 rows"):
        prompting.fewshot_rows(train[:2], s)

    cfg_ = {"template": "Text: {text}\nLabels: {labels}\nLabel:", "answer_prefix": " ", "system": None}
    pairs = [(r["text"], r["label"]) for r in shots]
    raw = prompting.build_prompt("the query", cfg_, ["anger", "joy"], None, False, pairs)
    expected = "".join(f"Text: {t}\nLabels: anger, joy\nLabel: {a}\n\n" for t, a in pairs)
    assert raw == expected + "Text: the query\nLabels: anger, joy\nLabel:"
    assert prompting.build_prompt("the query", cfg_, ["anger", "joy"], None, False) == raw[len(expected) :]

    class Chat:  # renders messages as role: content lines
        chat_template = "yes"

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return "".join(f"<{m['role']}>{m['content']}" for m in messages) + "<assistant>"

    chat = prompting.build_prompt("q", dict(cfg_, system="sys"), ["anger", "joy"], Chat(), True, pairs[:1])
    t, a = pairs[0]
    assert chat == (
        f"<system>sys<user>Text: {t}\nLabels: anger, joy\nLabel:<assistant>{a}"
        "<user>Text: q\nLabels: anger, joy\nLabel:<assistant>"
    )


def test_fewshot_prompts_of_the_other_task_types():
    from finetune_study import ner_prompting

    cfg_ = {"template": "Types: {types}\nText: {text}\nEntities:", "answer_prefix": "\n", "system": None}
    shot = (["Bob", "went", "home"], [("person", "Bob")])
    p = ner_prompting.build_prompt(["Ann", "ran"], cfg_, ["person"], None, False, [shot])
    assert p == "Types: person\nText: Bob went home\nEntities:\nperson: Bob\n\nTypes: person\nText: Ann ran\nEntities:"
    none = ner_prompting.build_prompt(["Ann"], cfg_, ["person"], None, False, [(["hi"], [])])
    assert none.startswith("Types: person\nText: hi\nEntities:\nnone\n\n")

    class Words:  # a tokenizer of whitespace words
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": text.split()}

        def decode(self, ids, skip_special_tokens=True):
            return " ".join(ids)

    s = {"prompt": {"template": "English: {text}\nFrench:", "answer_prefix": " "}, "chat_template": False}
    s |= {"max_source_tokens": 2, "fewshot": {"k": 1, "seed": 0}}
    train = [{"id": 0, "text": "good morning all", "references": ["bonjour à tous", "salut"]}]
    shots = source_prompting.fewshot_pairs(train, s)
    assert shots == [("good morning all", "bonjour à tous")]
    assert source_prompting.model_input("the cat sat", s, Words(), shots) == (
        "English: good morning\nFrench: bonjour à tous\n\nEnglish: the cat\nFrench:"  # sources cut alike
    )
    rec = {"instruction": "Add", "input": "1 2", "output": "3"}
    alpaca = prompting.instruction_prompt({"instruction": "Name a fruit", "input": ""}, "alpaca", None, [rec])
    assert alpaca.startswith(
        prompting.ALPACA_WITH_INPUT.replace("{instruction}", "Add").replace("{input}", "1 2") + "3\n\n"
    )
    assert alpaca.endswith("### Instruction:\nName a fruit\n\n### Response:\n")
    assert alpaca.count("### Response:") == 2
