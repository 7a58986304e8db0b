"""CoNLL reading and tag handling (finetune_study.conll) on small files written here, checked against
hand-worked sentences, seqeval's strict IOB2 entities on random tag sequences, and the counts that
/work/shared/data/wnut17/SOURCE.md gives for the WNUT-17 train file."""

import random

import pytest
from seqeval.scheme import IOB2, Entities

from conftest import DATA_DIR, skip_or_fail_in_ci
from finetune_study import conll
from finetune_study.common import PipelineError


def write(tmp_path, text, name="d.conll"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def error(fn, *args, **kwargs):
    with pytest.raises(PipelineError) as e:
        fn(*args, **kwargs)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


# -----------------------------------------------------------------------------
# read_conll


def test_tab_file_with_docstart_and_whitespace_breaks(tmp_path):
    text = (
        "-DOCSTART-\tO\n"  # 1
        "\n"  # 2
        "EU\tB-ORG\n"  # 3
        "rejects\tO\n"  # 4
        "\t\n"  # 5: a break holding only a tab, as in WNUT-17 train
        "New York\tB-LOC\n"  # 6: a space inside a tab-separated token
        "call\tO\n"  # 7
        " \t \n"  # 8: only whitespace
        "\n"  # 9
        "-DOCSTART-\tO\n"  # 10
        "Bob\tB-PER\n"  # 11: right after -DOCSTART-, no blank line
    )
    path = write(tmp_path, text)
    assert conll.read_conll(path) == [  # doc: the -DOCSTART- lines above the sentence
        {"line": 3, "lines": [3, 4], "tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "doc": 1},
        {"line": 6, "lines": [6, 7], "tokens": ["New York", "call"], "tags": ["B-LOC", "O"], "doc": 1},
        {"line": 11, "lines": [11], "tokens": ["Bob"], "tags": ["B-PER"], "doc": 2},
    ]
    assert conll.read_conll(path, separator="tab") == conll.read_conll(path)


def test_space_file_crlf_four_columns(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\r\n"  # 1
        "\r\n"  # 2
        "EU NNP B-NP B-ORG\r\n"  # 3
        "rejects  VBZ B-VP O\r\n"  # 4: two spaces
        "   \r\n"  # 5
        "Peter NNP B-NP B-PER\r\n"  # 6
        "Blackburn NNP I-NP I-PER"  # 7: no final newline
    )
    path = write(tmp_path, text)
    expected = [
        {"line": 3, "lines": [3, 4], "tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"], "doc": 1},
        {"line": 6, "lines": [6, 7], "tokens": ["Peter", "Blackburn"], "tags": ["B-PER", "I-PER"], "doc": 1},
    ]
    assert conll.read_conll(path) == expected
    assert conll.read_conll(path, separator="space") == expected
    assert conll.read_conll(path, 0, 3) == expected
    pos = conll.read_conll(path, token_column=-4, tag_column=1)
    assert [s["tags"] for s in pos] == [["NNP", "VBZ"], ["NNP", "NNP"]]


def test_space_separator_splits_tabs_too(tmp_path):
    path = write(tmp_path, "a \t B-X\nb O\n")
    assert conll.read_conll(path, separator="space")[0]["tokens"] == ["a", "b"]


def test_only_docstart_and_breaks_is_no_sentence(tmp_path):
    path = write(tmp_path, "-DOCSTART- O\n\n\t\n-DOCSTART- O\n")
    assert conll.read_conll(path) == []


def test_utf8_bom_is_dropped(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfZ\xc3\xbcrich\tB-LOC\n")
    assert conll.read_conll(path)[0]["tokens"] == ["Zürich"]


def test_wrong_column_count_names_file_and_line(tmp_path):
    path = write(tmp_path, "a\tO\nb\tO\n\nc\tO\textra\n")
    msg = error(conll.read_conll, path)
    assert msg.startswith(f"{path}:4: 3 columns") and "have 2" in msg and "fix the line" in msg


def test_column_out_of_range_names_the_setting(tmp_path):
    path = write(tmp_path, "-DOCSTART-\tO\n\na\tO\n")
    msg = error(conll.read_conll, path, tag_column=2)
    assert msg.startswith(f"{path}:3: ") and "tag_column 2" in msg and "2 columns" in msg
    msg = error(conll.read_conll, path, token_column=-3)
    assert msg.startswith(f"{path}:3: ") and "token_column -3" in msg
    assert conll.read_conll(path, token_column=-2, tag_column=1)[0]["tags"] == ["O"]  # in range


def test_missing_file_and_bad_bytes(tmp_path):
    path = tmp_path / "nope.conll"
    msg = error(conll.read_conll, path)
    assert msg == f"{path}: data file not found; check data_dir and the task's files: entry"
    path = write(tmp_path, b"a\tO\n\xff\tO\n")
    msg = error(conll.read_conll, path)
    assert msg.startswith(f"{path}:2: ") and "0xff" in msg
    assert conll.read_conll(path, encoding="latin-1")[0]["tokens"] == ["a", "\xff"]


def test_lines_break_at_newline_only(tmp_path):
    # social-media tokens may hold characters str.splitlines() breaks at (U+2028, NEL, \x1c); one
    # token per line means lines end at \n (or \r\n) only, so the token and the line numbers stay
    path = write(tmp_path, "a\u2028b\tO\nc\x1cd\tB-X\n\ne\x85f\tO\n")
    assert conll.read_conll(path) == [
        {"line": 1, "lines": [1, 2], "tokens": ["a\u2028b", "c\x1cd"], "tags": ["O", "B-X"]},
        {"line": 4, "lines": [4], "tokens": ["e\x85f"], "tags": ["O"]},
    ]


# -----------------------------------------------------------------------------
# check_tags and to_iob2


def test_non_bio_tags_name_file_and_line():
    for bad in ("B-", "I-", "E-PER", "PER", "b-PER", "B_PER", ""):
        msg = error(conll.check_tags, ["O", bad], [4, 5], "f.conll")
        assert msg.startswith("f.conll:5: ") and repr(bad) in msg and "BIO" in msg
    conll.check_tags(["O", "B-creative-work", "I-creative-work"], [1, 2, 3], "f.conll")  # inner '-' is fine


def test_strict_i_must_continue_its_type():
    msg = error(conll.check_tags, ["B-PER", "O", "I-PER"], [7, 8, 9], "f.conll")
    assert msg.startswith("f.conll:9: ") and "I-PER" in msg and "tag_scheme: iob1" in msg and "fix the tag" in msg
    msg = error(conll.check_tags, ["B-PER", "I-LOC"], [3, 4], "f.conll")
    assert msg.startswith("f.conll:4: ") and "I-LOC" in msg and "B-PER" in msg  # the tag and the one before
    msg = error(conll.check_tags, ["I-PER"], [12], "f.conll")
    assert msg.startswith("f.conll:12: ") and "I-PER" in msg
    conll.check_tags(["I-PER", "O", "I-LOC"], [1, 2, 3], "f.conll", strict=False)  # IOB1 is BIO
    conll.check_tags(["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC"], range(6), "f.conll")


def test_to_iob2_by_hand():
    assert conll.to_iob2(["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"]) == [
        "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG",
    ]  # fmt: skip
    assert conll.to_iob2(["I-PER", "I-PER", "B-PER", "I-PER"]) == ["B-PER", "I-PER", "B-PER", "I-PER"]
    assert conll.to_iob2(["O", "I-LOC", "I-PER", "I-PER", "O"]) == ["O", "B-LOC", "B-PER", "I-PER", "O"]
    assert conll.to_iob2([]) == []
    iob2 = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "I-LOC", "B-ORG"]
    assert conll.to_iob2(iob2) == iob2  # IOB2 is already IOB1-valid and unchanged


# -----------------------------------------------------------------------------
# spans, entity_types, entity_counts


def seqeval_spans(tags):
    return [(e.tag, e.start, e.end) for e in Entities([list(tags)], IOB2).entities[0]]


def test_spans_by_hand():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC", "I-PER", "B-ORG", "B-ORG", "I-ORG"]
    assert conll.spans(tags) == [("PER", 0, 2), ("LOC", 4, 6), ("ORG", 7, 8), ("ORG", 8, 10)]
    assert conll.spans([]) == []
    assert conll.spans(["I-PER", "I-PER"]) == []
    assert conll.spans(["B-creative-work", "I-creative-work"]) == [("creative-work", 0, 2)]


def test_spans_equal_seqeval_strict_on_random_tags():
    rng = random.Random(0)
    vocab = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-creative-work", "I-creative-work"]
    n_entities = 0
    for _ in range(500):
        tags = [rng.choice(vocab) for _ in range(rng.randint(0, 12))]
        assert conll.spans(tags) == seqeval_spans(tags), tags
        n_entities += len(seqeval_spans(tags))
    assert n_entities > 500  # the random sequences do hold entities


def test_entity_types_and_counts_by_hand():
    sentences = [
        {"tags": ["B-PER", "I-PER", "O", "B-LOC"]},
        {"tags": ["I-ORG", "O", "B-PER", "B-PER"]},  # the stray I-ORG is a type in the tags but no entity
    ]
    assert conll.entity_types(sentences) == ["LOC", "ORG", "PER"]
    assert conll.entity_counts(sentences, ["PER", "LOC", "ORG"]) == {"PER": 3, "LOC": 1, "ORG": 0}
    assert list(conll.entity_counts(sentences, ["PER", "LOC", "ORG"])) == ["PER", "LOC", "ORG"]


def test_wnut17_train_counts_match_source_md():
    path = DATA_DIR / "wnut17" / "train.conll"
    if not path.is_file():
        skip_or_fail_in_ci(f"{path} not found")
    sentences = conll.read_conll(path)
    assert len(sentences) == 3394
    assert sum(len(s["tokens"]) for s in sentences) == 62730
    types = ["person", "location", "group", "creative-work", "corporation", "product"]
    assert conll.entity_types(sentences) == sorted(types)
    assert conll.entity_counts(sentences, types) == {
        "person": 660, "location": 548, "group": 264, "creative-work": 140, "corporation": 221, "product": 142,
    }  # fmt: skip
    for s in sentences:
        conll.check_tags(s["tags"], s["lines"], path)  # SOURCE.md: 0 I- violations
        assert len(s["tokens"]) == len(s["tags"]) == len(s["lines"])
