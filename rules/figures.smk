# Stage 7: per-task figures: grouped accuracy/F1 bars with intervals (error bars across seeds),
# confusion matrices, training curves.


rule figures:
    input:
        unpack(figure_inputs),
    output:
        scores="results/{task}/figures/scores.png",
        confusion="results/{task}/figures/confusion.png",
        training="results/{task}/figures/training.png",
    params:
        runs=lambda w: cfg.canonical(run_label_list(w.task)),
        code=code("make_figures.py"),
    log:
        "logs/figures/{task}.log",
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/make_figures.py"
