"""Snakemake script: the first N test texts of a classification task as one plain text file, so a
task's dataset can be a text source of the tokenizer study (rule task_text)."""

from finetune_study import common

with common.log_to(common.snakemake_log(snakemake)):
    rows = common.read_jsonl(snakemake.input.test)[: snakemake.params.n]
    common.atomic_write_text(snakemake.output.text, "\n".join(r["text"] for r in rows) + "\n")
    print(f"{len(rows)} texts")
