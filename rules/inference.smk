# Stages 3 and 5: predictions on the test split, zero-shot ("zeroshot", "raw" prompt) or with the
# LoRA adapter ("lora"). One row per example: raw output, parsed label, gold label.



rule predict:
    input:
        unpack(predict_inputs),
    output:
        predictions="results/{task}/{model}/{method}/predictions.jsonl",
    params:
        settings=lambda w: cfg.canonical(inference_settings(w.task, w.model, w.method)),
        chunks=lambda w: f"{CHECKPOINT_DIR}/predict/{w.task}/{w.model}/{w.method}",
        chunk_size=256,
    log:
        "logs/predict/{task}/{model}/{method}.log",
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/predict.py"
