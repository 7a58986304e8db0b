# Stage 2: read a task's raw files (or hub dataset), check them, subsample, write normalized splits.


rule prepare_data:
    input:
        files=data_inputs,
    output:
        train="results/{task}/data/train.jsonl",
        validation="results/{task}/data/validation.jsonl",
        test="results/{task}/data/test.jsonl",
        summary="results/{task}/data/summary.json",
    params:
        settings=lambda w: data_params(w.task),
        data_dir=config["data_dir"],
    log:
        "logs/prepare_data/{task}.log",
    resources:
        mem_mb=4000,
        runtime=10,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/prepare_data.py"
