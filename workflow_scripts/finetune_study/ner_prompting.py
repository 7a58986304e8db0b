"""Prompts for named-entity recognition by a causal LM: the prompt that asks for the entities of a
sentence as `type: text` lines, the answer a fine-tune learns (built from the gold tags), and the
parser that reads a model's output back into (type, text) pairs.

parse_entities reads every non-empty line: `none` (any case) means no entity; `type: text` with a
known type (case-insensitive; spaces, '_' and '-' alike, so `creative work` is `creative-work`;
a leading '-', '*' or '1.' bullet allowed) is one pair; any other line is counted as unparsed, as
a classification output that names no label is.
"""

import re

from . import prompting

NONE = "none"
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s*")


def _type_key(name):
    return re.sub(r"[\s_-]+", "-", name.strip().lower())


def build_prompt(words, prompt_cfg, types, tok, use_chat, shots=()):
    """The prompt for one sentence: {text} is its words joined by spaces, {types} the entity types.
    shots: few-shot examples [(words, [(type, text)])], each asked and answered before the sentence
    (prompting.build_prompt)."""
    cfg = dict(prompt_cfg, template=prompt_cfg["template"].replace("{types}", ", ".join(types)))
    examples = [(" ".join(w), answer_text(pairs, cfg, True)) for w, pairs in shots]
    return prompting.build_prompt(" ".join(words), cfg, [], tok, use_chat, examples)


def answer_text(pairs, prompt_cfg, use_chat):
    """The entity lines a fine-tune learns after the prompt (no end-of-sequence token)."""
    body = "\n".join(f"{t}: {x}" for t, x in pairs) or NONE
    return body if use_chat else prompt_cfg.get("answer_prefix", "\n") + body


def parse_entities(output, types):
    """([(type, text)], unparsed line count) of a model's output."""
    known = {_type_key(t): t for t in types}
    pairs, unparsed = [], 0
    for line in output.splitlines():
        line = _BULLET.sub("", line).strip()
        if not line or line.lower().rstrip(".") == NONE:
            continue
        name, sep, text = line.partition(":")
        kind = known.get(_type_key(name)) if sep else None
        if kind and text.strip():
            pairs.append((kind, text.strip()))
        else:
            unparsed += 1
    return pairs, unparsed
