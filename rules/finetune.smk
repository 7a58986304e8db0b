# Stage 4: LoRA fine-tune. The adapter (PEFT format) is the declared output; resumable
# checkpoints live under checkpoint_dir, outside Snakemake's outputs, keyed by the settings.


rule finetune:
    input:
        model=model_dir,
        train="results/{task}/data/train.jsonl",
        validation="results/{task}/data/validation.jsonl",
    output:
        adapter=directory("results/{task}/{model}/lora/adapter"),
        train_log="results/{task}/{model}/lora/train_log.json",
    params:
        settings=lambda w: cfg.canonical(finetune_settings(w.task, w.model)),
        checkpoints=lambda w: f"{CHECKPOINT_DIR}/{w.task}/{w.model}/{cfg.short_hash(finetune_settings(w.task, w.model))}",
    log:
        "logs/finetune/{task}/{model}.log",
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/finetune.py"
