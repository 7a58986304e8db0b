# Stage 8: one self-contained results/report.html (figures embedded, every string escaped) and
# results/metrics.csv, one row per task x model x method x seed (x decoding point).


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


rule report:
    input:
        unpack(report_inputs),
    output:
        html=paths.REPORT,
        table=paths.METRICS_TABLE,
    log:
        "logs/report.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        config=lambda w: cfg.canonical(config),
        runs=lambda w: report_runs(),
        code=code("build_report.py", *tasks.TASK_TYPES),
    script:
        "../workflow_scripts/build_report.py"
