# Stage 1: materialize each model once as a plain safetensors checkpoint + tokenizer, keyed on
# where the weights come from and how they load (not on roles, resources or sizes).


rule prepare_model:
    output:
        model=directory(paths.MODEL_DIR),
    log:
        "logs/prepare_model/{model}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=30,
    params:
        spec=lambda w: cfg.canonical(keys.model_origin(config, MODELS[w.model])),
        code=code("prepare_model.py"),
    script:
        "../workflow_scripts/prepare_model.py"
