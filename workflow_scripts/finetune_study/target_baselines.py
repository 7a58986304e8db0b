"""Baselines of a source -> target task that need no model, and the sentence splitter they and
ROUGE-Lsum share: `copy` (the source as the output: what a fine-tune must beat at least) and `lead`
(the source's first sentences up to its references' mean length, the classic summarization
baseline). Standard library only."""

import re

_SENTENCE_END = re.compile(r"(?<=[.!?؟۔])\s+|\n+")


def sentences(text) -> list:
    """Sentences of a text: split at newlines and at whitespace after . ! ? ؟ ۔, stripped, empties dropped."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def copy_baseline(source) -> str:
    """The source itself (stripped): the do-nothing system."""
    return source.strip()


def lead_baseline(source, references) -> str:
    """The first sentences of the source, whole, joined by spaces: sentences are added while the
    total word count (whitespace words) stays <= the mean word count of the item's references; the
    first sentence is always kept in full, even when it alone is longer (never cut mid-sentence)."""
    references = [references] if isinstance(references, str) else list(references)
    if not references:
        raise ValueError("lead_baseline needs at least one reference")
    budget = sum(len(r.split()) for r in references) / len(references)
    sents = sentences(source)
    if not sents:
        return ""
    lead, words = [sents[0]], len(sents[0].split())
    for s in sents[1:]:
        words += len(s.split())
        if words > budget:
            break
        lead.append(s)
    return " ".join(lead)
