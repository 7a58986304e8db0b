# LoRA experiment workflow: raw data -> base/instruct/LoRA inference -> metrics -> figures -> report.
# Run:  snakemake --cores 1 results/report.html
# Then, optionally, Snakemake's own report of the finished run:  snakemake --report report.zip
# (figures and tables flagged report() in rules/, captions under report/).
# Each stage is one rule file under rules/; the config is validated in rules/common.smk.


configfile: "config.yaml"


report: "report/workflow.rst"


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
include: "rules/benchmarks.smk"
include: "rules/figures.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
