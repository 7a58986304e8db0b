# Stage 4: LoRA fine-tune, one job per model and seed. The adapter (PEFT format) is the declared
# output; resumable checkpoints live under checkpoint_dir, outside Snakemake's outputs, keyed in
# the job on everything the result depends on (keys.resume_key) and deleted after success.


rule finetune:
    input:
        model=model_dir,
        train="results/{task}/data/train.jsonl",
        validation="results/{task}/data/validation.jsonl",
    output:
        adapter=directory("results/{task}/{model}/lora-s{seed}/adapter"),
        train_log="results/{task}/{model}/lora-s{seed}/train_log.json",
    params:
        settings=lambda w: cfg.canonical(keys.finetune_settings(config, TASKS[w.task], w.model, int(w.seed))),
        code=code("finetune.py"),
    log:
        "logs/finetune/{task}/{model}/lora-s{seed}.log",
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/finetune.py"
