"""Tokenizer and chat-template study: how tokenizers split English and Persian, and how chat
templates turn a conversation into a prompt.

Everything here is pure logic on an already loaded Hugging Face tokenizer; the Snakemake scripts
`tokenizer_stats.py` and `chat_templates.py` only read inputs, call these functions and write.

Definitions (one text, one tokenizer; the text is encoded with ``add_special_tokens=False``):

- ``n_words``: ``len(text.split())``, i.e. runs of Unicode whitespace separate words. The Persian
  zero-width non-joiner (ZWNJ, U+200C) is *not* whitespace, so ``می‌خواهم`` and ``کتاب‌ها`` are one
  word each, as a Persian reader counts them. Punctuation stays attached to its word.
- ``n_chars``: Unicode code points (``len(text)``); a ZWNJ counts as one character.
- ``n_bytes``: length of the UTF-8 encoding (ASCII 1 byte, Arabic-script letters 2, ZWNJ 3).
- ``n_tokens``: number of token ids, no BOS/EOS or other special tokens added.
- ``tokens_per_word``, ``chars_per_token``, ``bytes_per_token``: the ratios of the above
  (``None`` when the denominator is 0).
- Token bytes: the exact bytes a token stands for. For byte-level BPE (GPT-2, LLaMA-3, cl100k;
  decoder ``ByteLevel``) each character of the token string is mapped back through the GPT-2
  byte-to-unicode table. For SentencePiece-style vocabularies (Mistral, Gemma) ``<0xNN>`` is the
  single byte 0xNN and ``▁`` is a space. For WordPiece a leading ``##`` is dropped. Added/special
  tokens stand for their literal text.
- A token is a **byte piece** when its bytes on their own are not a complete, valid UTF-8
  sequence, i.e. it carries only part of a character: byte-level BPE splitting a 2-byte Persian
  letter over two tokens, a token that is ``ا`` plus the first byte of the next letter, or a
  SentencePiece byte-fallback token ``<0xDB>`` for a character missing from the vocabulary.
  Byte-level BPE has no separate "byte fallback" tokens, so this is how its byte splitting
  shows, and the definition means the same thing for every family.
- ``byte_split_share``: byte pieces / ``n_tokens``.
- ``byte_fallback_share``: share of SentencePiece byte-fallback tokens ``<0xNN>``, all of them,
  including ASCII bytes that are complete characters (Mistral writes every newline as
  ``<0x0A>``, which is a byte-fallback token but not a byte piece). Always 0 for byte-level BPE.
- ``unk_share``: share of tokens equal to the tokenizer's unknown token. Byte-level BPE can encode
  any text, so it never produces one (GPT-2 names ``<|endoftext|>`` as its "unk" token; it is not
  counted).
- ``roundtrip_ok``: ``decode(encode(text))`` (special tokens kept, no clean-up of spaces) equals
  the text exactly.
- ``vocab_size``: ``len(tokenizer)``: every id the tokenizer can produce, added and special tokens
  included (LLaMA-3: 128,000 BPE tokens + 256 special = 128,256).
"""

import html
import json
import os
import re
import unicodedata
from pathlib import Path

from finetune_study.common import PipelineError

DEFINITIONS = {
    "n_words": "whitespace-separated words; the Persian zero-width non-joiner (U+200C) does not split a word",
    "n_chars": "Unicode code points",
    "n_bytes": "UTF-8 bytes",
    "n_tokens": "token ids, no special tokens added",
    "tokens_per_word": "n_tokens / n_words",
    "chars_per_token": "n_chars / n_tokens",
    "bytes_per_token": "n_bytes / n_tokens",
    "byte_split_share": "share of byte pieces: tokens whose bytes alone are not complete UTF-8 "
    "(part of a character, e.g. half of a Persian letter)",
    "byte_fallback_share": "share of byte-fallback tokens <0xNN> (SentencePiece-style vocabularies only; "
    "includes ASCII ones such as <0x0A> for a newline)",
    "unk_share": "share of unknown tokens (never produced by byte-level BPE)",
    "roundtrip_ok": "decode(encode(text)) == text",
    "vocab_size": "len(tokenizer): all ids including added and special tokens",
}

STAT_COLUMNS = [
    "n_words",
    "n_chars",
    "n_bytes",
    "n_tokens",
    "tokens_per_word",
    "chars_per_token",
    "bytes_per_token",
    "byte_split_share",
    "byte_fallback_share",
    "unk_share",
    "roundtrip_ok",
    "vocab_size",
]

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt")


# --------------------------------------------------------------------------------------- loading
def load_tokenizer(spec_name, path_or_id):
    """Load a tokenizer from a local folder, a local ``.gguf`` file or a hub id (never remote code).

    Raises PipelineError with one line naming the tokenizer and the path when it is missing or
    cannot be read.
    """
    from transformers import AutoTokenizer

    where = str(path_or_id)
    path = Path(where).expanduser()
    kwargs = {"trust_remote_code": False}
    if path.is_file() and path.suffix == ".gguf":
        source, kwargs["gguf_file"] = str(path.parent), path.name
    elif path.is_dir():
        if not any((path / f).is_file() for f in _TOKENIZER_FILES):
            raise PipelineError(
                f"tokenizer '{spec_name}': folder {where} holds no tokenizer files "
                f"(expected one of {', '.join(_TOKENIZER_FILES)})"
            )
        source = str(path)
    elif path.exists():
        raise PipelineError(f"tokenizer '{spec_name}': {where} is neither a tokenizer folder nor a .gguf file")
    elif where.startswith((".", "/", "~")) or where.count("/") > 1 or where.endswith(".gguf"):
        raise PipelineError(f"tokenizer '{spec_name}': path {where} does not exist")
    else:
        source = where  # a hub id such as openai-community/gpt2
    try:
        tok = AutoTokenizer.from_pretrained(source, **kwargs)
    except Exception as exc:  # noqa: BLE001 - every failure becomes one readable line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        kind = "path" if path.exists() else "hub id (no such local folder either)"
        raise PipelineError(
            f"tokenizer '{spec_name}': cannot load {kind} {where}: {type(exc).__name__}: {first}"
        ) from exc
    if not callable(getattr(tok, "encode", None)):
        raise PipelineError(f"tokenizer '{spec_name}': {where} did not load as a tokenizer")
    return tok


def load_tokenizers(specs: dict) -> dict:
    """{name: path_or_id} -> {name: tokenizer}, in the given order."""
    return {name: load_tokenizer(name, where) for name, where in specs.items()}


# ------------------------------------------------------------------------------- token -> bytes
def _bytes_to_unicode():
    """The GPT-2 byte <-> printable-character table used by byte-level BPE."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_UNICODE_TO_BYTE = {c: b for b, c in _bytes_to_unicode().items()}


def _decoder_types(tokenizer):
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return set()
    try:  # the decoder's own serialization: the whole tokenizer's (17 MB for Llama 3) took ~0.3 s a call
        decoder = backend.decoder
        decoder = json.loads(decoder.__getstate__()) if decoder is not None else None
    except Exception:  # noqa: BLE001
        return set()
    types, stack = set(), [decoder]
    while stack:
        d = stack.pop()
        if isinstance(d, dict):
            types.add(d.get("type"))
            stack.extend(d.get("decoders") or [])
    return types


def tokenizer_style(tokenizer) -> str:
    """'byte_level' (GPT-2-style BPE), 'wordpiece', or 'sentencepiece' (▁ for space, <0xNN> bytes)."""
    types = _decoder_types(tokenizer)
    if "ByteLevel" in types:
        return "byte_level"
    if "WordPiece" in types:
        return "wordpiece"
    return "sentencepiece"


def _added_ids(tokenizer):
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return {int(i): str(getattr(t, "content", t)) for i, t in decoder.items()}


def _token_info(token: str, token_id: int, style: str, added: dict, unk_id):
    """(bytes, is_byte_fallback, is_unk, is_special) for one token."""
    if token_id in added:
        is_unk = style != "byte_level" and token_id == unk_id
        return added[token_id].encode("utf-8"), False, is_unk, True
    if style == "byte_level":
        if all(c in _UNICODE_TO_BYTE for c in token):
            data = bytes(_UNICODE_TO_BYTE[c] for c in token)
        else:  # not a byte-level string (should not happen outside added tokens)
            data = token.encode("utf-8")
        return data, False, False, False
    is_unk = unk_id is not None and token_id == unk_id
    m = _BYTE_FALLBACK.match(token)
    if m:
        return bytes([int(m.group(1), 16)]), True, is_unk, False
    if style == "wordpiece" and token.startswith("##"):
        token = token[2:]
    return token.replace("\u2581", " ").encode("utf-8"), False, is_unk, False


def _is_complete_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def show_bytes(data: bytes) -> str:
    """Decode what is valid UTF-8 and show every other byte as a hex marker like <0xD8>."""
    out, i = [], 0
    while i < len(data):
        try:
            out.append(data[i:].decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            out.append(data[i : i + e.start].decode("utf-8"))
            out.extend(f"<0x{b:02X}>" for b in data[i + e.start : i + e.end])
            i += e.end
    return "".join(out)


def _encode(tokenizer, text):
    try:
        return list(tokenizer.encode(text, add_special_tokens=False, verbose=False))
    except TypeError:  # a tokenizer whose encode takes no `verbose`
        return list(tokenizer.encode(text, add_special_tokens=False))


def _decode(tokenizer, ids):
    try:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    except TypeError:
        return tokenizer.decode(ids)


# --------------------------------------------------------------------------------------- stats
def token_pieces(tokenizer, sentence) -> list:
    """One dict per token of `sentence` (no special tokens added), in order:

    ``id``; ``token`` (the vocabulary string); ``text`` (the text the token covers: its bytes
    decoded, with bytes that are not complete UTF-8 shown as ``<0xD8>`` markers); ``bytes_hex``;
    ``byte_piece`` (part of a character, see the module docstring);
    ``byte_fallback``; ``unk``; ``special``.
    """
    ids = _encode(tokenizer, sentence)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    style, added, unk_id = tokenizer_style(tokenizer), _added_ids(tokenizer), getattr(tokenizer, "unk_token_id", None)
    pieces = []
    for token_id, token in zip(ids, tokens):
        token = "" if token is None else str(token)
        data, fallback, unk, special = _token_info(token, int(token_id), style, added, unk_id)
        pieces.append(
            {
                "id": int(token_id),
                "token": token,
                "text": show_bytes(data),
                "bytes_hex": data.hex(),
                "byte_piece": not _is_complete_utf8(data),
                "byte_fallback": fallback,
                "unk": unk,
                "special": special,
            }
        )
    return pieces


def _ratio(a, b):
    return a / b if b else None


def text_stats(tokenizer, text) -> dict:
    """The counts and ratios defined in the module docstring for one text."""
    pieces = token_pieces(tokenizer, text)
    ids = [p["id"] for p in pieces]
    n_words, n_chars, n_bytes, n_tokens = len(text.split()), len(text), len(text.encode("utf-8")), len(ids)
    return {
        "n_words": n_words,
        "n_chars": n_chars,
        "n_bytes": n_bytes,
        "n_tokens": n_tokens,
        "tokens_per_word": _ratio(n_tokens, n_words),
        "chars_per_token": _ratio(n_chars, n_tokens),
        "bytes_per_token": _ratio(n_bytes, n_tokens),
        "byte_split_share": _ratio(sum(p["byte_piece"] for p in pieces), n_tokens),
        "byte_fallback_share": _ratio(sum(p["byte_fallback"] for p in pieces), n_tokens),
        "unk_share": _ratio(sum(p["unk"] for p in pieces), n_tokens),
        "roundtrip_ok": _decode(tokenizer, ids) == text,
        "vocab_size": len(tokenizer),
    }


def stats_table(tokenizers: dict, texts: dict) -> list:
    """Rows {tokenizer, language, **text_stats} for every tokenizer x language, in input order."""
    return [
        {"tokenizer": name, "language": lang, **text_stats(tok, text)}
        for name, tok in tokenizers.items()
        for lang, text in texts.items()
    ]


def _fmt(value):
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "–" if value is None else f"{value}"


def stats_table_html(rows) -> str:
    """The stats rows as an escaped HTML table (metric definitions in the header tooltips)."""
    cols = ["tokenizer", "language"] + STAT_COLUMNS
    head = "".join(f'<th title="{html.escape(DEFINITIONS.get(c, c))}">{html.escape(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>\n" for r in rows)
    return f'<table class="tokenizer-stats">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>'


def first_sentence(text: str) -> str:
    """The first sentence of the first non-empty line (ends at . ! ? or the Persian ؟)."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    m = re.match(r"(.+?[.!?؟])(\s|$)", line)
    return m.group(1) if m else line


# ------------------------------------------------------------------------------------ rendering
_COLOURS = ("#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#e0e7ff")
_BYTE_STYLE = "background:#fee2e2;color:#991b1b;border:1px dashed #dc2626;font-family:monospace;font-size:85%"


def _is_rtl(pieces) -> bool:
    """Judge by the text the pieces spell (byte markers such as <0xD8> would count as Latin)."""
    if all("bytes_hex" in p for p in pieces):
        text = b"".join(bytes.fromhex(p["bytes_hex"]) for p in pieces).decode("utf-8", errors="ignore")
    else:
        text = "".join(p["text"] for p in pieces)
    strong = [unicodedata.bidirectional(c) for c in text]
    rtl = sum(b in ("R", "AL") for b in strong)
    return rtl > sum(b == "L" for b in strong)


def render_pieces_html(name, pieces, direction=None) -> str:
    """One tokenizer's pieces as coloured spans (alternating backgrounds; byte pieces dashed red).

    Every string is escaped. `direction` is 'ltr' or 'rtl'; by default it follows the text, so
    Persian pieces run right to left in token order.
    """
    direction = direction or ("rtl" if _is_rtl(pieces) else "ltr")
    spans = []
    for i, p in enumerate(pieces):
        style = _BYTE_STYLE if p.get("byte_piece") else f"background:{_COLOURS[i % len(_COLOURS)]}"
        text = p["text"].replace("\n", "⏎").replace("\t", "⇥") or "∅"
        title = f"id {p['id']}: {p['token']!r}" + (" (byte piece)" if p.get("byte_piece") else "")
        spans.append(
            f'<span class="tok{" tok-byte" if p.get("byte_piece") else ""}" '
            f'style="{style};display:inline-block;white-space:pre;unicode-bidi:isolate;padding:0 1px;margin:0 1px;border-radius:2px" '
            f'title="{html.escape(title, quote=True)}">{html.escape(text)}</span>'
        )
    n_bytes = sum(bool(p.get("byte_piece")) for p in pieces)
    return (
        f'<div class="tok-pieces"><div class="tok-name"><b>{html.escape(str(name))}</b>: '
        f"{len(pieces)} tokens, {n_bytes} byte pieces</div>"
        f'<div dir="{direction}" style="line-height:1.9;display:flex;flex-wrap:wrap">{"".join(spans)}</div></div>'
    )


# ------------------------------------------------------------------------------- chat templates
class ChatTemplateError(PipelineError):
    """A tokenizer has a chat template, but it rejected the conversation."""


def chat_template_render(tokenizer, conversation) -> "str | None":
    """The conversation rendered through the tokenizer's chat template as text (special tokens
    visible), or None when the tokenizer has no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    try:
        return tokenizer.apply_chat_template(list(conversation), tokenize=False)
    except Exception as exc:  # noqa: BLE001 - e.g. a template that refuses a system message
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ChatTemplateError(f"chat template rejected the conversation: {type(exc).__name__}: {first}") from exc


def chat_templates_html(rendered: dict) -> str:
    """{name: rendered text | None | {"error": message}} as escaped HTML, each prompt in a <pre>."""
    parts = []
    for name, text in rendered.items():
        head = f"<h4>{html.escape(str(name))}</h4>"
        if text is None:
            parts.append(f"{head}\n<p><em>no chat template</em></p>")
        elif isinstance(text, dict):
            parts.append(f"{head}\n<p><em>chat template failed: {html.escape(str(text.get('error')))}</em></p>")
        else:
            parts.append(f'{head}\n<pre class="chat-template">{html.escape(text)}</pre>')
    return '<div class="chat-templates">\n' + "\n".join(parts) + "\n</div>"


# -------------------------------------------------------------------------------------- figure
def plot_stats(rows, path):
    """Two panels of grouped bars (groups: languages, bars: tokenizers): tokens per word and bytes
    per token. Written to a temporary name in the same folder, then renamed into place."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs = list(dict.fromkeys(r["language"] for r in rows))
    toks = list(dict.fromkeys(r["tokenizer"] for r in rows))
    by = {(r["tokenizer"], r["language"]): r for r in rows}
    width = 0.8 / max(len(toks), 1)
    fig, axes = plt.subplots(1, 2, figsize=(max(8, 2.2 * len(langs) * 2), 4.2))
    for ax, key, label in zip(axes, ("tokens_per_word", "bytes_per_token"), ("tokens per word", "bytes per token")):
        for j, tok in enumerate(toks):
            xs = [i + (j - (len(toks) - 1) / 2) * width for i in range(len(langs))]
            ys = [(by.get((tok, lang)) or {}).get(key) or 0.0 for lang in langs]
            bars = ax.bar(xs, ys, width, label=tok)
            ax.bar_label(bars, fmt="%.2f", fontsize=7)
        ax.set_xticks(range(len(langs)), langs)
        ax.set_ylabel(label)
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=120)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
