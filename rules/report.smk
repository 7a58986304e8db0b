# Stage 8: one self-contained results/report.html (figures embedded, every string escaped).


localrules:
    report,
    figures,
    generation_figures,
    task_text,
    tokenizer_stats,
    chat_templates,
    score,



rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report.html",
    params:
        config=lambda w: cfg.canonical(config),
        runs=lambda w: report_runs(),
    log:
        "logs/report.log",
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/build_report.py"
