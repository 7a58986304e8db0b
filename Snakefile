# LoRA experiment workflow: raw data -> base/instruct/LoRA inference -> metrics -> figures -> report.
# Run:  snakemake --cores 1 results/report.html
# Each stage is one rule file under rules/; the config is validated in rules/common.smk.


configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/data.smk"
include: "rules/finetune.smk"
include: "rules/inference.smk"
include: "rules/metrics.smk"
include: "rules/generation.smk"
include: "rules/token_classification.smk"
include: "rules/source_target.smk"
include: "rules/tokenizers.smk"
include: "rules/figures.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
