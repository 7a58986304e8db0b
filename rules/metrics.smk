# Stage 6: accuracy, macro/weighted F1, per-class precision/recall, confusion matrix, parse failures.


rule score:
    input:
        predictions="results/{task}/{model}/{method}/predictions.jsonl",
    output:
        metrics="results/{task}/{model}/{method}/metrics.json",
    params:
        labels=lambda w: cfg.canonical(TASKS[w.task]["labels"]),
    log:
        "logs/score/{task}/{model}/{method}.log",
    resources:
        mem_mb=1000,
        runtime=5,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/score.py"
