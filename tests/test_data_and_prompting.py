"""Data readers on the shared files (every format), the bad-input errors, and prompt handling."""

import json

import pytest

from conftest import DATA_DIR
from finetune_study import data, prompting
from finetune_study.common import PipelineError
from finetune_study.tasks import classification_data

EMOTION = {
    "type": "classification",
    "text_column": "text",
    "label_column": "label_name",
    "labels": ["sadness", "joy", "love", "anger", "fear", "surprise"],
    "format": "semicolon",
    "header": True,
    "drop_rows_with_label": [],
    "max_chars": None,
}


def test_semicolon_emotion_counts():
    rows = data.normalize(data.read_rows(DATA_DIR / "emotion/train.txt", "semicolon"), EMOTION, "train")
    assert len(rows) == 16000
    counts = classification_data.label_counts(rows, EMOTION["labels"])
    assert counts["joy"] == 5362 and counts["surprise"] == 572  # dair-ai/emotion train split


def test_tsv_without_header_and_csv_with_stray_header_and_jsonl():
    ag = dict(EMOTION, label_column="label", labels=["World", "Sports", "Business", "Sci/Tech"])
    rows = data.normalize(
        data.read_rows(DATA_DIR / "ag_news/alps_test.tsv", "auto", header=False, column_names=["text", "label"]),
        ag,
        "ag",
    )
    assert len(rows) == 7600
    imdb = dict(
        EMOTION,
        label_column="label",
        labels=["negative", "positive"],
        drop_rows_with_label=["label"],
        label_map={"0": "negative", "1": "positive"},
    )
    rows = data.normalize(data.read_rows(DATA_DIR / "imdb/asini_imdb_sample.csv"), imdb, "imdb")
    assert 1990 <= len(rows) <= 2000 and {r["label"] for r in rows} == {"negative", "positive"}
    assert rows, "nothing to check"
    assert not any("<br />" in r["text"] for r in rows)
    q = dict(ag, text_column="question", label_column="answer")
    rows = data.normalize(data.read_rows(DATA_DIR / "ag_news/ashlesha_unit_test.jsonl"), q, "unit")
    assert len(rows) == 50


def test_missing_file_column_label_and_empty(tmp_path):
    with pytest.raises(PipelineError, match="nope.txt: data file not found"):
        data.read_rows(tmp_path / "nope.txt")
    f = tmp_path / "d.csv"
    f.write_text("body,label\nhello,joy\n")
    with pytest.raises(PipelineError, match=r"d.csv: no column 'text' \(columns: body, label\)"):
        data.normalize(data.read_rows(f), EMOTION | {"label_column": "label"}, str(f))
    f.write_text("text,label\nhello,happy\n")
    with pytest.raises(PipelineError, match=r"row 1 has label 'happy', not one of"):
        data.normalize(data.read_rows(f), EMOTION | {"label_column": "label"}, str(f))
    f.write_text("text,label\n")
    with pytest.raises(PipelineError, match="no rows"):
        data.normalize(data.read_rows(f), EMOTION | {"label_column": "label"}, str(f))


def test_integer_labels_need_label_map(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": i}) for t, i in [("x", 0), ("y", 5)]))
    task = EMOTION | {"label_column": "label"}
    with pytest.raises(PipelineError, match=r"row 1 has integer label '0' but labels are names; .*label_map"):
        data.normalize(data.read_rows(f), task, str(f))  # never mapped by position
    rows = data.normalize(data.read_rows(f), task | {"label_map": {"0": "fear", "5": "joy"}}, str(f))
    assert [r["label"] for r in rows] == ["fear", "joy"]


def test_parse_label():
    labels = ["joy", "love", "anger"]
    assert prompting.parse_label(" Joy.", labels) == "joy"
    assert prompting.parse_label("I think love, or maybe joy", labels) == "love"
    assert prompting.parse_label("enjoyment", labels) is None
    assert prompting.parse_label("", labels) is None


def test_answer_masking():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers/gpt2")
    ids, labels = prompting.encode_prompt_answer(tok, "Text: hi\nLabel:", " joy", max_length=64)
    n_prompt = len(tok("Text: hi\nLabel:")["input_ids"])
    assert labels[:n_prompt] == [-100] * n_prompt
    assert labels[n_prompt:] == tok(" joy")["input_ids"] + [tok.eos_token_id] == ids[n_prompt:]
    # a long prompt is cut from the left; the answer always survives
    ids, labels = prompting.encode_prompt_answer(tok, "word " * 100, " joy", max_length=10)
    assert len(ids) == 10 and labels[-2:] == tok(" joy")["input_ids"] + [tok.eos_token_id]
