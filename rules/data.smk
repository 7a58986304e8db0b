# Stage 2: read a task's raw files (or hub dataset), check them, deduplicate, subsample, and write
# each normalized split on its own, so a change to one split's sample reruns only that split.


rule prepare_data:
    input:
        files=data_inputs,
    output:
        rows=paths.SPLIT,
        info=paths.SPLIT_INFO,
    log:
        "logs/prepare_data/{task}/{split}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        settings=lambda w: cfg.canonical(
            keys.data_settings(config, TASKS[w.task], w.split)
        ),
        code=task_code("prepare_data.py"),
    script:
        "../workflow_scripts/prepare_data.py"


rule data_summary:
    input:
        unpack(
            lambda w: {
                s: paths.SPLIT.format(task=w.task, split=s) for s in data_lib.SPLITS
            }
        ),
        info=lambda w: [
            paths.SPLIT_INFO.format(task=w.task, split=s) for s in data_lib.SPLITS
        ],
    output:
        summary=paths.SUMMARY,
    log:
        "logs/data_summary/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        settings=lambda w: cfg.canonical(
            {
                k: TASKS[w.task][k]
                for k in ("type", "labels", "entity_types")
                if k in TASKS[w.task]
            }
        ),
        code=task_code("data_summary.py"),
    script:
        "../workflow_scripts/data_summary.py"
