"""CoNLL files for named-entity recognition: one token per line, a blank line between sentences.

- read_conll: a file -> sentences {"line", "lines", "tokens", "tags"}, with line numbers so that
  every later error can name the file and line. A break is a line that is empty or holds only
  whitespace (WNUT-17's train file has break lines holding a single tab); -DOCSTART- lines start a
  document (each sentence of a file that has them is numbered with its document, "doc"); every
  token line must have as many columns as the first.
- to_iob2: IOB1 tags (I- starts an entity unless it separates two of one type) to IOB2.
- check_tags: every tag is O, B-<type> or I-<type>; strict: an I- tag continues its type.
- spans: (type, start, end) entities in strict IOB2 reading, the same as seqeval's strict mode
  (scheme=IOB2): B-X starts an entity, following I-X extend it, any other I- tag is no entity.
- entity_types / entity_counts: the types in the tags, and the number of entities of each.

Standard library only: Snakemake runs these checks at parse time, before any model loads.
Every problem a user can fix is a PipelineError with one line naming the file, the line and the fix.
"""

from pathlib import Path

from .common import PipelineError, read_text

SEPARATORS = ("auto", "tab", "space")


def _columns(line, separator):
    if separator == "tab" or (separator == "auto" and "\t" in line):
        return line.split("\t")
    return line.split()


def _column(columns, index, setting, path, n):
    if not -len(columns) <= index < len(columns):
        raise PipelineError(
            f"{path}:{n}: {setting} {index} is outside this file's {len(columns)} columns "
            f"(0 to {len(columns) - 1}, or -1 to -{len(columns)} from the end); fix {setting}"
        )
    return columns[index]


def read_conll(path, token_column=0, tag_column=-1, separator="auto", encoding="utf-8"):
    """Sentences of a CoNLL file: [{"line": first token's line, "lines": [line of each token],
    "tokens": [...], "tags": [...]}], line numbers 1-based. In a file with -DOCSTART- lines each
    sentence also has "doc", its document: the number of -DOCSTART- lines above it."""

    path = Path(path)
    if separator not in SEPARATORS:
        raise PipelineError(f"{path}: separator {separator!r} is not one of {', '.join(SEPARATORS)}; fix separator")
    if not path.is_file():
        raise PipelineError(f"{path}: data file not found; check data_dir and the task's files: entry")
    text = read_text(path, encoding)
    sentences, sentence, width, doc = [], None, None, 0
    marked = any(line.split()[:1] == ["-DOCSTART-"] for line in text.split("\n"))
    for n, line in enumerate(text.split("\n"), 1):  # not splitlines: tokens may hold \x1c, \x85, \u2028 and such
        line = line.rstrip("\r\n")
        if line.strip() == "":  # a break: empty, or only whitespace (WNUT-17 train has lines of one tab)
            sentence = None
            continue
        columns = _columns(line, separator)
        if columns[0] == "-DOCSTART-":
            sentence, doc = None, doc + 1
            continue
        if width is None:
            width = len(columns)
            _column(columns, token_column, "token_column", path, n)
            _column(columns, tag_column, "tag_column", path, n)
        elif len(columns) != width:
            raise PipelineError(
                f"{path}:{n}: {len(columns)} columns, but this file's token lines have {width}; fix the line "
                f"(columns are separated by a tab, or by spaces)"
            )
        if sentence is None:
            sentence = {"line": n, "lines": [], "tokens": [], "tags": []}
            if marked:  # the document: -DOCSTART- lines before it (0: sentences before the first mark)
                sentence["doc"] = doc
            sentences.append(sentence)
        sentence["lines"].append(n)
        sentence["tokens"].append(columns[token_column])
        sentence["tags"].append(columns[tag_column])
    return sentences


def to_iob2(tags):
    """IOB1 -> IOB2: an I-X that starts an entity (at the start, after O or after another type)
    becomes B-X; a B-X (IOB1's mark between two adjacent entities of one type) stays."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def is_bio(tag):
    """O, or B-/I- and a type that is not empty and has no whitespace or '-' at either end."""
    if tag == "O":
        return True
    kind = tag[2:]
    return tag[:2] in ("B-", "I-") and kind != "" and kind == kind.strip() and kind.strip("-") == kind


def check_tags(tags, lines, path, strict=True):
    """PipelineError naming path:line for a tag that is not BIO, and (strict) for an I-X that does
    not continue a B-X or I-X, i.e. a sentence that is not valid IOB2."""
    prev = None
    for tag, line in zip(tags, lines, strict=True):
        if not is_bio(tag):
            raise PipelineError(
                f"{path}:{line}: tag {tag!r} is not BIO: a tag is O, B-<type> or I-<type> (e.g. B-person); "
                f"fix the tag, or check tag_column if this column is not the tags"
            )
        if strict and tag.startswith("I-") and (prev is None or prev[2:] != tag[2:]):
            before = f"follows {prev!r}" if prev is not None else "starts the sentence"
            raise PipelineError(
                f"{path}:{line}: tag {tag!r} {before}, but in IOB2 an I- tag continues a B- or I- tag of "
                f"its type; set tag_scheme: iob1 to convert, or fix the tag"
            )
        prev = tag


def spans(tags):
    """[(type, start, end)] entities, end exclusive, in strict IOB2 reading (seqeval's strict mode):
    B-X starts an entity and following I-X extend it; an I- tag that continues nothing is no entity."""
    out, start, kind = [], None, None
    for i, tag in enumerate([*tags, "O"]):
        if start is not None and tag == "I-" + kind:
            continue
        if start is not None:
            out.append((kind, start, i))
            start = None
        if tag.startswith("B-"):
            start, kind = i, tag[2:]
    return out


def entity_types(sentences):
    """The entity types of the tags (every tag but O), sorted."""
    return sorted({tag[2:] for s in sentences for tag in s["tags"] if tag != "O"})


def entity_counts(sentences, types):
    """{type: number of entities (spans)} for the given types, in their order; other types are not counted."""
    counts = {t: 0 for t in types}
    for s in sentences:
        for kind, _, _ in spans(s["tags"]):
            if kind in counts:
                counts[kind] += 1
    return counts


def tag_pairs(tokens, tags):
    """A tagger's entities as (type, text) pairs: the words of each span joined by a space."""
    return [(kind, " ".join(tokens[start:end])) for kind, start, end in spans(tags)]
