# Stage 4: fine-tunes, one job per model x method x seed (the run <method>-s<seed>: lora-s0, dora-s0,
# ia3-s1, full-s0, ...). The output folder holds a PEFT adapter, or the whole model for `full`;
# resumable checkpoints live under checkpoint_dir, outside Snakemake's outputs, keyed in the job on
# everything the result depends on (provenance.resume_key) and deleted after success. Snakemake's
# benchmark records the job's wall time and peak memory for the report.


rule finetune:
    input:
        model=model_dir,
        train=paths.SPLIT.format(task="{task}", split="train"),
        validation=paths.SPLIT.format(task="{task}", split="validation"),
    output:
        adapter=directory(paths.ADAPTER),
        train_log=paths.TRAIN_LOG,
    log:
        "logs/finetune/{task}/{model}/{method}.log",
    benchmark:
        paths.FINETUNE_BENCHMARK
    wildcard_constraints:
        method=runs.FINETUNED_RUN,
    conda:
        "../envs/workflow.yaml"
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    params:
        settings=lambda w: cfg.canonical(
            keys.finetune_settings(config, TASKS[w.task], w.model, w.method)
        ),
        code=task_code("finetune.py"),
    script:
        "../workflow_scripts/finetune.py"
