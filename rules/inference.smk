# Stages 3 and 5: predictions on the test split, zero-shot ("zeroshot", "raw" prompt) or fine-tuned
# ("<method>-s<seed>": a PEFT adapter on the base, or a full fine-tune's model), plus the
# majority-class baseline. One row per example: raw output, parsed label, gold label.
# provenance.json holds the hashes the run was built from.
from finetune_study.tasks import classification


rule predict:
    input:
        unpack(predict_inputs),
    output:
        predictions=paths.PREDICTIONS,
        provenance=paths.PROVENANCE,
    log:
        "logs/predict/{task}/{model}/{method}.log",
    benchmark:
        "benchmarks/predict/{task}/{model}/{method}.tsv"
    wildcard_constraints:
        method=f"zeroshot|raw|{runs.FINETUNED_RUN}",
    conda:
        "../envs/workflow.yaml"
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    params:
        settings=lambda w: cfg.canonical(
            classification.inference_settings(config, TASKS[w.task], w.model, w.method)
        ),
        code=code("predict.py"),
        chunk_size=256,
    script:
        "../workflow_scripts/predict.py"


rule majority_baseline:
    input:
        train="results/{task}/data/train.jsonl",
        test="results/{task}/data/test.jsonl",
    output:
        predictions="results/{task}/majority/baseline/predictions.jsonl",
        provenance="results/{task}/majority/baseline/provenance.json",
    log:
        "logs/majority_baseline/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        labels=lambda w: cfg.canonical(TASKS[w.task]["labels"]),
        code=code("majority_baseline.py"),
    script:
        "../workflow_scripts/majority_baseline.py"
