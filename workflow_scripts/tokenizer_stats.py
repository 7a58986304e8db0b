"""Snakemake script: compare how tokenizers split the texts of each language.

input.texts: text files, the file stem is the language name (english.txt -> "english").
params.tokenizers: JSON string {name: folder, .gguf file or hub id}.
params.sentence: JSON string {language: sample sentence}; a language without one uses the first
    sentence of its text.
output.table: JSON {"definitions": {...}, "tokenizers": {...}, "rows": [{tokenizer, language, stats}]}.
output.figure: PNG, grouped bars per language (tokens per word; bytes per token).
output.pieces: JSON {"order": [tokenizer names as configured], "sentences": {language: sentence},
    "pieces": {tokenizer: {language: [piece]}}} (write_json sorts keys; "order" keeps config order).
Definitions of every number: finetune_study/tokenizer_study.py.
"""

import json
from pathlib import Path

from finetune_study import common
from finetune_study import tokenizer_study as ts


def _json(value):
    return json.loads(value) if isinstance(value, str) else dict(value)


def main(texts, tokenizers, sentences, table, figure, pieces):
    specs, sentences = _json(tokenizers), _json(sentences or "{}")
    by_lang = {Path(p).stem: Path(p).read_text(encoding="utf-8") for p in texts}
    for lang, text in by_lang.items():
        if not text.strip():
            raise common.PipelineError(f"text file for language '{lang}' is empty")
    toks = ts.load_tokenizers(specs)
    rows = ts.stats_table(toks, by_lang)
    for r in rows:
        print(
            f"{r['tokenizer']:>14} {r['language']:>10}: {r['n_tokens']} tokens, "
            f"{r['tokens_per_word']:.2f} tokens/word, byte-split share {r['byte_split_share']:.3f}"
        )
    common.write_json(table, {"definitions": ts.DEFINITIONS, "tokenizers": specs, "rows": rows})
    ts.plot_stats(rows, figure)
    chosen = {lang: sentences.get(lang) or ts.first_sentence(text) for lang, text in by_lang.items()}
    common.write_json(
        pieces,
        {
            "order": list(toks),
            "sentences": chosen,
            "pieces": {
                name: {lang: ts.token_pieces(tok, s) for lang, s in chosen.items()} for name, tok in toks.items()
            },
        },
    )


if "snakemake" in globals():
    with common.log_to(common.snakemake_log(snakemake)):  # noqa: F821
        main(
            list(snakemake.input.texts),
            snakemake.params.tokenizers,
            snakemake.params.sentence,  # noqa: F821
            snakemake.output.table,
            snakemake.output.figure,
            snakemake.output.pieces,
        )  # noqa: F821
