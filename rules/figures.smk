# Stage 7: per-task figures: grouped accuracy/F1 bars, confusion matrices, training curves.



rule figures:
    input:
        unpack(figure_inputs),
    output:
        scores="results/{task}/figures/scores.png",
        confusion="results/{task}/figures/confusion.png",
        training="results/{task}/figures/training.png",
    params:
        runs=lambda w: cfg.canonical([[m, meth, MODELS[m]["role"]] for m, meth in methods(w.task)]),
    log:
        "logs/figures/{task}.log",
    resources:
        mem_mb=2000,
        runtime=5,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/make_figures.py"
