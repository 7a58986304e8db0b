# Stage 7: per-task figures: grouped accuracy/F1 bars with intervals (error bars across seeds),
# confusion matrices, training curves.
from finetune_study.tasks import classification


rule figures:
    input:
        unpack(lambda w: classification.figure_inputs(w.task, TASKS[w.task])),
    output:
        scores=report(
            "results/{task}/figures/scores.png",
            caption="../report/classification_scores.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        confusion=report(
            "results/{task}/figures/confusion.png",
            caption="../report/confusion.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        training=report(
            "results/{task}/figures/training.png",
            caption="../report/training_curves.rst",
            category="{task}",
            subcategory="fine-tuning",
        ),
    log:
        "logs/figures/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        runs=lambda w: cfg.canonical(classification.run_labels(TASKS[w.task], MODELS)),
        code=code("make_figures.py"),
    script:
        "../workflow_scripts/make_figures.py"


# A task's training grids: each point's validation loss and test metrics, the point chosen on
# validation loss (never on test), and the sweep figure. Only for tasks whose fine-tunes have a grid.
rule training_grid:
    input:
        unpack(training_grid_inputs),
    output:
        summary=report(
            paths.TRAINING_GRID,
            caption="../report/training_grid_table.rst",
            category="{task}",
            subcategory="training grid",
        ),
        figure=report(
            "results/{task}/figures/training_grid.png",
            caption="../report/training_grid.rst",
            category="{task}",
            subcategory="training grid",
        ),
    log:
        "logs/training_grid/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        grids=lambda w: cfg.canonical(grid_listing(w.task)),
        runs=lambda w: [f"{m}/{run}" for m, run in grid_runs(w.task)],
        metrics=lambda w: cfg.canonical(spec(w.task).GRID_METRICS),
        metrics_field=lambda w: spec(w.task).GRID_METRICS_FIELD,
        test_split=lambda w: spec(w.task).grid_test_split(TASKS[w.task]),
        code=code("grid_sweep.py"),
    script:
        "../workflow_scripts/grid_sweep.py"
