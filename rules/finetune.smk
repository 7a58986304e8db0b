# Stage 4: fine-tunes, one job per model x method x seed (the run <method>-s<seed>: lora-s0, dora-s0,
# ia3-s1, full-s0, ...). The output folder holds a PEFT adapter, or the whole model for `full`;
# resumable checkpoints live under checkpoint_dir, outside Snakemake's outputs, keyed in the job on
# everything the result depends on (provenance.resume_key) and deleted after success. Snakemake's
# benchmark records the job's wall time and peak memory for the report. A fine-tune with
# `distributed: {processes: N}` runs N processes through torchrun (DDP or FSDP); on SLURM it asks for
# its nodes, one task per process and its GPUs per node, and starts one torchrun per node by srun.


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
    threads: lambda w: sharding.threads(finetune_sharding(w), model_resources(w.model))
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        # one process: its GPUs; several: gres per node, one SLURM task per process (sharding.py)
        gpu=lambda w: None if finetune_slurm(w) else model_resources(w.model)["gpus"],
        nodes=lambda w: (finetune_slurm(w) or {}).get("nodes"),
        tasks=lambda w: (finetune_slurm(w) or {}).get("tasks"),
        tasks_per_gpu=lambda w: (finetune_slurm(w) or {}).get("tasks_per_gpu"),
        gres=lambda w: (finetune_slurm(w) or {}).get("gres"),
        cpus_per_task=lambda w: (finetune_slurm(w) or {}).get("cpus_per_task"),
        mpi=lambda w: (finetune_slurm(w) or {}).get("mpi"),
    params:
        settings=lambda w: cfg.canonical(
            keys.finetune_settings(config, TASKS[w.task], w.model, w.method)
        ),
        code=task_code("finetune.py"),
    script:
        "../workflow_scripts/finetune.py"
