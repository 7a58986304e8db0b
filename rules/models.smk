# Stage 1: materialize each model once as a plain safetensors checkpoint + tokenizer.


rule prepare_model:
    output:
        model=directory("results/models/{model}"),
    params:
        spec=lambda w: cfg.canonical(MODELS[w.model]),
        use_hub=config["use_hub"],
    log:
        "logs/prepare_model/{model}.log",
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=30,
    conda:
        "../envs/workflow.yaml"
    script:
        "../workflow_scripts/prepare_model.py"
