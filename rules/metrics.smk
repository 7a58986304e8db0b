# Stage 6: accuracy, macro/weighted F1 with 95% bootstrap intervals, per-class precision/recall,
# confusion matrix, parse failures and near-misses; then per task the comparison of runs: mean
# and sd across seeds, and each fine-tuned run against its own zero-shot row (paired McNemar test).
from finetune_study.tasks import classification


rule score:
    input:
        predictions=paths.PREDICTIONS,
    output:
        metrics=paths.METRICS,
    log:
        "logs/score/{task}/{model}/{method}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        settings=lambda w: cfg.canonical(classification.score_settings(TASKS[w.task])),
        code=code("score.py"),
    script:
        "../workflow_scripts/score.py"


rule compare:
    input:
        unpack(lambda w: classification.compare_inputs(w.task, TASKS[w.task])),
    output:
        comparison=report(
            paths.COMPARISON,
            caption="../report/comparison.rst",
            category="{task}",
            subcategory="evaluation",
        ),
    log:
        "logs/compare/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        runs=lambda w: cfg.canonical(
            [list(r) for r in classification.scored_runs(TASKS[w.task])]
        ),
        bootstrap=lambda w: TASKS[w.task]["bootstrap"],
        code=code("compare.py"),
    script:
        "../workflow_scripts/compare.py"
