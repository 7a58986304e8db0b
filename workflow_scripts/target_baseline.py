"""Snakemake script: a source -> target baseline that needs no model (rule target_baseline): `copy`
writes each test source as its output; `lead` its first sentences, up to its references' mean
length (target_baselines.lead_baseline). Written like any run's outputs, so scored the same way."""

from finetune_study import common, provenance
from finetune_study import target_baselines as stm

BASELINES = {
    "copy": lambda r: stm.copy_baseline(r["text"]),
    "lead": lambda r: stm.lead_baseline(r["text"], r["references"]),
}

with common.log_to(common.snakemake_log(snakemake)):
    make = BASELINES[snakemake.wildcards.baseline]
    rows = [
        {"id": r["id"], "source": r["text"], "references": r["references"], "output": make(r)}
        for r in common.read_jsonl(snakemake.input.test)
    ]
    common.write_jsonl(snakemake.output.outputs, rows)
    common.write_json(
        snakemake.output.provenance, provenance.provenance(snakemake.params.code, {"test": snakemake.input.test})
    )
    print(f"{snakemake.wildcards.baseline} baseline: {len(rows)} outputs")
