# Stage 8: one self-contained results/report.html (figures embedded, every string escaped).


localrules:
    report,
    figures,
    score,



rule report:
    input:
        unpack(report_inputs),
    output:
        html="results/report.html",
    params:
        config=lambda w: cfg.canonical(config),
        runs=lambda w: cfg.canonical({t: [[m, meth, MODELS[m]["role"]] for m, meth in methods(t)] for t in TASKS}),
    log:
        "logs/report.log",
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/build_report.py"
