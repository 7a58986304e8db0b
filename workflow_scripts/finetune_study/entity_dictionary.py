"""The dictionary baseline of named-entity recognition: every entity seen in the training split
(its words, lowercased) with the type it has most often there (ties: the type first in sorted
order), tagged in a sentence by longest match from left to right. It needs no model and shows what
memorizing the training entities scores; a majority-tag baseline (every word O) would score F1 0 by
construction."""

from collections import Counter

from .conll import spans


def build(rows):
    """{tuple of lowercased words: type} from training rows {"tokens", "tags"}."""
    seen = {}
    for r in rows:
        for kind, start, end in spans(r["tags"]):
            seen.setdefault(tuple(w.lower() for w in r["tokens"][start:end]), Counter())[kind] += 1
    return {words: min(c, key=lambda t: (-c[t], t)) for words, c in seen.items()}


def tag(words, entries):
    """IOB2 tags of a sentence: at each word the longest dictionary entry starting there, else O."""
    longest = max((len(k) for k in entries), default=0)
    lower, tags, i = [w.lower() for w in words], [], 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            kind = entries.get(tuple(lower[i : i + n]))
            if kind:
                tags += [f"B-{kind}"] + [f"I-{kind}"] * (n - 1)
                i += n
                break
        else:
            tags.append("O")
            i += 1
    return tags
