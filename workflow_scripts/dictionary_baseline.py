"""Snakemake script: the dictionary baseline of a token-classification task (rule
dictionary_baseline): the entities of the training split tagged in the test sentences by longest
match (entity_dictionary.py). Written like any run's entities, so it is scored the same way."""

from finetune_study import common, conll, entity_dictionary, provenance

with common.log_to(common.snakemake_log(snakemake)):
    entries = entity_dictionary.build(common.read_jsonl(snakemake.input.train))
    rows = []
    for r in common.read_jsonl(snakemake.input.test):
        tags = entity_dictionary.tag(r["tokens"], entries)
        rows.append(
            {
                "id": r["id"],
                "tokens": r["tokens"],
                "gold_tags": r["tags"],
                "gold_pairs": conll.tag_pairs(r["tokens"], r["tags"]),
                "pred_tags": tags,
                "pred_pairs": conll.tag_pairs(r["tokens"], tags),
                "output": "",
                "unparsed_lines": 0,
            }
        )
    common.write_jsonl(snakemake.output.predictions, rows)
    common.write_json(
        snakemake.output.provenance,
        provenance.provenance(snakemake.params.code, {"train": snakemake.input.train, "test": snakemake.input.test}),
    )
    print(f"dictionary of {len(entries)} training entities; tagged {len(rows)} test sentences")
