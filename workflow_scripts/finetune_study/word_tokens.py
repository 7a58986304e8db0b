"""Words to sub-word tokens for a token-classification head: the first sub-word of each word carries
the word's tag, the word's other sub-words and the special tokens are ignored (-100) in the loss.

The words are joined by single spaces and tokenized once; each token is mapped to the word its
character offsets fall in (a fast tokenizer's offset_mapping), so this works the same for WordPiece,
BPE and SentencePiece tokenizers, with or without a leading-space convention. Fine-tuning and
tagging both call encode_words, so a word's first sub-word is the same in both. A word the tokenizer
turns into no token at all has none (None) and is tagged O.

check_lengths raises one line, before any model loads, when a sentence is longer than max_length
sub-word tokens (it would be cut, and its last words never tagged): how many would be truncated, the
longest, and the setting that fits them.
"""

from .common import PipelineError

IGNORE = -100


def encode_words(tok, words):
    """(input_ids with special tokens, first[w]: the index of word w's first sub-word, or None)."""
    text, spans, pos = " ".join(words), [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=True)
    first, w = [None] * len(words), 0
    for i, (s, e) in enumerate(enc["offset_mapping"]):
        if e <= s:  # special tokens have empty offsets
            continue
        while w < len(words) and spans[w][1] <= s:
            w += 1
        if w < len(words) and s < spans[w][1] and e > spans[w][0] and first[w] is None:
            first[w] = i
    return list(enc["input_ids"]), first


def token_labels(n_tokens, first, tag_ids):
    """Labels per sub-word: a word's tag id at its first sub-word, IGNORE everywhere else."""
    labels = [IGNORE] * n_tokens
    for i, t in zip(first, tag_ids):
        if i is not None:
            labels[i] = t
    return labels


def check_lengths(rows, tok, max_length, where, setting):
    """PipelineError naming the first too-long sentence (where(row): its file and line), how many
    of the rows would be truncated at max_length sub-word tokens, and the value of `setting` that
    fits the longest."""
    lengths = [len(encode_words(tok, r["tokens"])[0]) for r in rows]
    over = [i for i, n in enumerate(lengths) if n > max_length]
    if over:
        first, longest = over[0], max(lengths)
        raise PipelineError(
            f"{where(rows[first])}: sentence of {len(rows[first]['tokens'])} words is {lengths[first]} sub-word "
            f"tokens, over max_length {max_length}; {len(over)} of {len(rows)} sentences would be truncated "
            f"(longest {longest}); set {setting} to {longest} or more"
        )
    return lengths
