"""Loading task data: decode errors, malformed ';' lines, label_map, duplicate removal across splits,
stratified subsampling, and that a split never depends on another split's sample size."""

import csv
import json
from collections import Counter

import pytest

from conftest import DATA_DIR
from finetune_study import data
from finetune_study.common import PipelineError
from finetune_study.tasks import classification_data

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
EMOTION = {
    "type": "classification",
    "files": {"train": "emotion/train.txt", "validation": "emotion/val.txt", "test": "emotion/test.txt"},
    "format": "semicolon",
    "header": True,
    "text_column": "text",
    "label_column": "label_name",
    "labels": LABELS,
    "label_map": {},
    "drop_rows_with_label": [],
    "max_chars": None,
    "sample": {},
    "validation_fraction": 0.1,
    "test_fraction": 0.1,
    "seed": 0,
}
IMDB = dict(
    EMOTION,
    files={"train": "imdb/asini_imdb_sample.csv"},
    format="csv",
    label_column="label",
    labels=["negative", "positive"],
    drop_rows_with_label=["label"],
)


def semicolon_task(files, **kw):
    return dict(EMOTION, files=files, label_column="label", **kw)


def write_split(folder, name, pairs):
    (folder / name).write_text("text;label\n" + "".join(f"{t};{lab}\n" for t, lab in pairs))
    return name


# --- decoding and malformed lines ------------------------------------------------------------------


def test_bad_bytes_name_the_file_and_line(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"text;label\nhello;joy\n\nfine;joy\ncaf\xe9;joy\n")  # the blank line 3 still counts
    with pytest.raises(PipelineError) as err:
        data.read_rows(f)
    msg = str(err.value)
    assert msg.startswith(f"{f}:5: not valid utf-8 (byte 0xe9)") and "encoding: (e.g. latin-1)" in msg
    assert "\n" not in msg
    rows = data.read_rows(f, encoding="latin-1")
    assert rows[-1] == {"text": "café", "label": "joy"}
    j = tmp_path / "t.jsonl"
    j.write_bytes(b'{"text": "a", "label": "joy"}\r\n{"text": "\xff", "label": "joy"}\r\n')
    with pytest.raises(PipelineError, match=r"t.jsonl:2: not valid utf-8 \(byte 0xff\)"):
        data.read_rows(j)


def test_encoding_threads_through_check_and_load(tmp_path):
    (tmp_path / "t.txt").write_bytes("text;label\nnaïve;joy\nsad;sadness\nfête;joy\nok;joy\n".encode("latin-1"))
    task = semicolon_task({"train": "t.txt"}, test_fraction=0.25, validation_fraction=0.25)
    with pytest.raises(PipelineError, match=r"t.txt:2: not valid utf-8"):
        data.check_task_files("t", task, tmp_path)
    task["encoding"] = "latin-1"
    data.check_task_files("t", task, tmp_path)
    splits, _ = data.load_splits(task, tmp_path)
    assert sorted(r["text"] for rows in splits.values() for r in rows) == ["fête", "naïve", "ok", "sad"]
    with pytest.raises(PipelineError, match=r"t.txt: unknown encoding 'latin-9x'"):
        data.check_task_files("t", dict(task, encoding="latin-9x"), tmp_path)


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    f = tmp_path / "d.csv"
    f.write_bytes(b"\xef\xbb\xbftext,label\nhi,joy\n")
    assert data.read_rows(f) == [{"text": "hi", "label": "joy"}]


def test_semicolon_line_without_separator(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("text;label\nhello;joy\n\nno separator here\nbye;joy\n")
    with pytest.raises(PipelineError) as err:
        data.read_rows(f)
    assert str(err.value) == (
        f"{f}:4: no ';' between text and label; fix the line, or set format: if this is not a text;label file"
    )
    f.write_text("hello;joy\nno separator\n")
    with pytest.raises(PipelineError, match=r"t.txt:2: no ';'"):
        data.read_rows(f, header=False)


# --- labels -------------------------------------------------------------------------------------------


def test_label_map_on_imdb_csv():
    path = DATA_DIR / IMDB["files"]["train"]
    with pytest.raises(
        PipelineError,
        match=r"asini_imdb_sample.csv: row 1 has integer label '0' but labels are "
        r"names; map each raw value .* label_map: \{0: <name>",
    ):
        data.normalize(data.read_rows(path), IMDB, str(path))
    task = dict(IMDB, label_map={"0": "negative", "1": "positive"})
    rows = data.normalize(data.read_rows(path), task, str(path))
    with open(path, encoding="utf-8", newline="") as f:  # independent count with the csv module
        raw = Counter(r["label"] for r in csv.DictReader(f))
    assert raw["label"] == 1  # the stray repeated header, dropped
    assert Counter(r["label"] for r in rows) == {"negative": raw["0"], "positive": raw["1"]}
    assert len(rows) == raw["0"] + raw["1"]


def test_label_map_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps({"text": t, "label": v}) for t, v in [("a", 0), ("b", "joy"), ("c", 7)]))
    task = dict(EMOTION, label_column="label", label_map={0: "sadness"})  # YAML may give integer keys
    with pytest.raises(PipelineError, match=r"row 3 has label 7, which is neither a key of label_map nor one of"):
        data.normalize(data.read_rows(f), task, str(f))
    rows = data.normalize(data.read_rows(f)[:2], task, str(f))
    assert [r["label"] for r in rows] == ["sadness", "joy"]  # a raw value that is already a name passes
    with pytest.raises(PipelineError, match=r"d.jsonl: label_map maps '0' to 'happy', which is not one of"):
        data.normalize(data.read_rows(f), dict(task, label_map={"0": "happy"}), str(f))


def test_hub_class_label_names(monkeypatch):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    train = datasets.Dataset.from_dict({"text": ["bad", "good", "fine"], "label": [0, 1, 1]}, features=features)
    test = datasets.Dataset.from_dict({"text": ["meh"], "label": [0]}, features=features)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(train=train, test=test))
    task = dict(
        IMDB,
        hub_id="x/imdb",
        text_column="review",
        label_column="sentiment",
        drop_rows_with_label=[],
        validation_fraction=0.3,
        labels=["negative", "positive"],
    )
    with pytest.raises(PipelineError, match=r"x/imdb\[train\]: row 1 has label 'neg'"):
        data.load_splits(task, None, use_hub=True)  # the dataset's own names, not positions
    task["label_map"] = {"neg": "negative", "pos": "positive"}
    splits, _ = data.load_splits(task, None, use_hub=True)
    got = {r["text"]: r["label"] for rows in splits.values() for r in rows}
    assert got == {"bad": "negative", "good": "positive", "fine": "positive", "meh": "negative"}


# --- duplicates -----------------------------------------------------------------------------------------


def test_duplicates_within_and_across_splits(tmp_path):
    files = {
        "train": write_split(
            tmp_path, "tr.txt", [("a", "joy"), ("b", "joy"), ("a", "fear"), ("c", "joy"), ("d", "joy"), (" e ", "joy")]
        ),
        "validation": write_split(tmp_path, "va.txt", [("c", "joy"), ("f", "joy"), ("f", "joy"), ("g", "joy")]),
        "test": write_split(tmp_path, "te.txt", [("g", "joy"), ("h", "joy"), ("d", "joy"), ("h", "joy"), ("e", "joy")]),
    }
    splits, removed = data.load_splits(semicolon_task(files), tmp_path)
    # by hand: test drops its 2nd h; validation its 2nd f and g (in test); train its 2nd a, c (validation),
    # d and e (test; " e " is e once normalized)
    assert {s: [r["text"] for r in rows] for s, rows in splits.items()} == {
        "train": ["a", "b"],
        "validation": ["c", "f"],
        "test": ["g", "h", "d", "e"],
    }
    assert removed == {"train": 4, "validation": 2, "test": 1}
    assert splits["train"][0]["label"] == "joy"  # the first occurrence is the one kept
    assert [r["id"] for r in splits["test"]] == [0, 1, 2, 3]
    assert data.split_summary(splits["train"], semicolon_task(files), removed["train"])["duplicates_removed"] == 4


def test_generation_duplicates_key_on_instruction_and_input(tmp_path):
    def write(name, recs):
        (tmp_path / name).write_text(json.dumps([dict(zip(("instruction", "input", "output"), r)) for r in recs]))
        return name

    task = {
        "type": "generation",
        "format": "auto",
        "header": True,
        "instruction_column": "instruction",
        "input_column": "input",
        "output_column": "output",
        "sample": {},
        "seed": 0,
        "files": {
            "train": write(
                "tr.json", [("Add", "1 2", "3"), ("Add", "2 2", "4"), ("Add", "1 2", "three"), ("Name", "", "x")]
            ),
            "validation": write("va.json", [("Name", "", "y")]),
            "test": write("te.json", [("Add", "2 2", "four")]),
        },
    }
    splits, removed = data.load_splits(task, tmp_path)
    assert [(r["instruction"], r["input"]) for r in splits["train"]] == [("Add", "1 2")]
    assert removed == {"train": 3, "validation": 0, "test": 0}
    assert data.split_summary(splits["train"], task, 3) == {"rows": 1, "with_input": 1, "duplicates_removed": 3}


def emotion_texts(name):
    with open(DATA_DIR / "emotion" / name, encoding="utf-8") as f:
        return [line.rstrip("\n").rsplit(";", 1)[0].strip() for line in f if line.strip()][1:]


def test_emotion_overlaps_are_removed():
    train, val, test = (emotion_texts(n) for n in ("train.txt", "val.txt", "test.txt"))
    assert len(set(train) & set(test)) == 11
    splits, removed = data.load_splits(EMOTION, DATA_DIR)
    texts = {s: [r["text"] for r in rows] for s, rows in splits.items()}
    for s, t in texts.items():
        assert len(t) == len(set(t)), s
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["train"]) & set(texts["validation"])
    assert not set(texts["validation"]) & set(texts["test"])
    assert set(texts["test"]) == set(test) and removed["test"] == len(test) - len(set(test))
    assert set(texts["validation"]) == set(val) - set(test)
    assert set(texts["train"]) == set(train) - set(val) - set(test)
    assert removed["train"] == len(train) - len(set(train) - set(val) - set(test))
    assert removed["train"] >= 11 and len(texts["train"]) + removed["train"] == 16000


# --- sampling --------------------------------------------------------------------------------------------


def test_largest_remainder_allocation():
    # 4 of (5, 3, 2): quotas 2.0, 1.2, 0.8 -> floors 2, 1, 0 and the one left goes to the largest remainder (c)
    assert data.allocate({"a": 5, "b": 3, "c": 2}, 4) == {"a": 2, "b": 1, "c": 1}
    # 5 of (7, 2, 1): quotas 3.5, 1.0, 0.5 -> floors 3, 1, 0; a and c tie at .5, the earlier label wins
    assert data.allocate({"a": 7, "b": 2, "c": 1}, 5) == {"a": 4, "b": 1, "c": 0}


def test_stratified_sample_counts(tmp_path):
    pairs = (
        [(f"s{i}", "sadness") for i in range(5)]
        + [(f"j{i}", "joy") for i in range(3)]
        + [(f"l{i}", "love") for i in range(2)]
    )
    files = {s: write_split(tmp_path, f"{s}.txt", [(f"{s}-{t}", lab) for t, lab in pairs]) for s in data.SPLITS}
    for seed in range(5):  # every seed: a plain random sample would miss these counts most of the time
        splits, _ = data.load_splits(semicolon_task(files, sample={"train": 4, "test": 5}, seed=seed), tmp_path)
        zero = dict.fromkeys(LABELS, 0)
        assert classification_data.label_counts(splits["train"], LABELS) == zero | {"sadness": 2, "joy": 1, "love": 1}
        # 5 of (5, 3, 2): quotas 2.5, 1.5, 1.0; sadness and joy tie at .5, the earlier label gets the extra row
        assert classification_data.label_counts(splits["test"], LABELS) == zero | {"sadness": 3, "joy": 1, "love": 1}
        assert len(splits["validation"]) == 10


def test_stratified_sample_keeps_emotion_shares():
    full, _ = data.load_splits(EMOTION, DATA_DIR)
    n = 300
    splits, _ = data.load_splits(dict(EMOTION, sample={"train": n, "validation": n, "test": n}), DATA_DIR)
    for split in data.SPLITS:
        total = classification_data.label_counts(full[split], LABELS)
        got = classification_data.label_counts(splits[split], LABELS)
        assert sum(got.values()) == n
        for label in LABELS:
            assert abs(got[label] / n - total[label] / len(full[split])) <= 1 / n, (split, label)
        labels_in_order = [r["label"] for r in splits[split]]
        changes = sum(a != b for a, b in zip(labels_in_order, labels_in_order[1:]))
        assert changes > 3 * len(LABELS)  # shuffled, not grouped by label
    again, _ = data.load_splits(dict(EMOTION, sample={"train": n, "validation": n, "test": n}), DATA_DIR)
    assert again == splits


def test_generation_sample_is_plain_seeded(tmp_path):
    task = {
        "type": "generation",
        "format": "json",
        "header": True,
        "instruction_column": "instruction",
        "input_column": "input",
        "output_column": "output",
        "sample": {"train": 50},
        "seed": 3,
        "files": {"train": "alpaca/alpaca_data_1k.json"},
        "validation_fraction": 0.1,
        "test_fraction": 0.1,
    }
    a, _ = data.load_splits(task, DATA_DIR)
    b, _ = data.load_splits(task, DATA_DIR)
    assert len(a["train"]) == 50 and a == b
    full, _ = data.load_splits(dict(task, sample={}), DATA_DIR)
    key = data.dedup_key
    assert {key(r) for r in a["train"]} <= {key(r) for r in full["train"]}
    assert a["test"] == full["test"]  # test is the same whatever sample.train is


@pytest.mark.parametrize("files", [EMOTION["files"], {"train": "emotion/train.txt"}], ids=["three_files", "carved"])
def test_splits_do_not_depend_on_other_splits_sample_sizes(files):
    base = dict(EMOTION, files=files)
    small, removed_small = data.load_splits(dict(base, sample={"train": 40, "validation": 30, "test": 20}), DATA_DIR)
    big, removed_big = data.load_splits(dict(base, sample={"train": 400, "validation": 30, "test": 20}), DATA_DIR)
    assert small["test"] == big["test"] and small["validation"] == big["validation"]
    assert small["train"] != big["train"] and removed_small == removed_big
    other_val, _ = data.load_splits(dict(base, sample={"train": 40, "validation": 60, "test": 20}), DATA_DIR)
    assert other_val["test"] == small["test"]
    train_texts = {r["text"] for r in big["train"]}
    assert not train_texts & {r["text"] for r in big["test"] + big["validation"]}


def test_load_split_matches_load_splits():
    sample = {"train": 50, "validation": 20, "test": 30}
    splits, removed = data.load_splits(dict(EMOTION, sample=sample), DATA_DIR)
    for split in data.SPLITS:
        rows, n_removed = data.load_split(EMOTION, DATA_DIR, split, sample[split])
        assert rows == splits[split] and n_removed == removed[split]
        assert [r["id"] for r in rows] == list(range(sample[split]))
