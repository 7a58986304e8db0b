# Stage 8: one self-contained results/report.html (figures embedded, every string escaped) and
# results/metrics.csv, one row per task x model x method x seed (x decoding point).
# What a person reads (these two, every figure, the comparison and grid tables) carries a report()
# flag, its caption under report/: `snakemake --report report.zip` (docs/snakemake_report.md).


localrules:
    report,
    training_grid,
    figures,
    generation_figures,
    task_text,
    tokenizer_stats,
    chat_templates,
    score,
    compare,
    majority_baseline,
    data_summary,
    general_ability,


rule report:
    input:
        unpack(report_inputs),
    output:
        html=report(
            paths.REPORT,
            caption="../report/study_report.rst",
            category="all tasks",
            subcategory="results",
        ),
        table=report(
            paths.METRICS_TABLE,
            caption="../report/metrics_table.rst",
            category="all tasks",
            subcategory="results",
        ),
    log:
        "logs/report.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        # tracking (MLflow) changes no result: not in the params, so turning it on reruns nothing
        config=lambda w: cfg.canonical(cfg.without_tracking(config)),
        runs=lambda w: report_runs(),
        code=code("build_report.py", *tasks.TASK_TYPES),
    script:
        "../workflow_scripts/build_report.py"
