"""Snakemake script: the majority-class baseline of a classification task (rule majority_baseline):
every test row predicted as the most frequent label of the training split (ties: the label listed
first). Scored like any model run, so it gets the same metrics and intervals."""

import json
from collections import Counter

from finetune_study import common, provenance

labels = json.loads(snakemake.params.labels)
with common.log_to(common.snakemake_log(snakemake)):
    counts = Counter(r["label"] for r in common.read_jsonl(snakemake.input.train))
    majority = max(labels, key=lambda lab: (counts[lab], -labels.index(lab)))
    rows = [
        {"id": r["id"], "text": r["text"], "gold": r["label"], "pred": majority, "output": majority}
        for r in common.read_jsonl(snakemake.input.test)
    ]
    common.write_jsonl(snakemake.output.predictions, rows)
    common.write_json(
        snakemake.output.provenance,
        provenance.provenance(snakemake.params.code, {"train": snakemake.input.train, "test": snakemake.input.test}),
    )
    print(f"majority label '{majority}' ({counts[majority]} of {sum(counts.values())} training rows)")
