# Source -> target tasks (summarization, translation): each run's outputs per decoding point (a
# causal LM continuing the prompt, or an encoder-decoder), the copy and lead baselines, reference
# perplexity, multi-reference scores with bootstrap intervals (and each fine-tune against its
# zero-shot row), figures.
from finetune_study.tasks import source_target as s2t


rule generate_targets:
    input:
        unpack(predict_inputs),
    output:
        outputs=paths.TARGET_OUTPUTS,
        provenance=paths.TARGET_PROVENANCE,
    log:
        "logs/generate_targets/{task}/{model}/{method}/{decoding}.log",
    benchmark:
        "benchmarks/generate_targets/{task}/{model}/{method}/{decoding}.tsv"
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
            s2t.target_settings(config, TASKS[w.task], w.model, w.method, w.decoding)
        ),
        peft_task_type=lambda w: tasks.peft_task_type(
            "source_target", MODELS[w.model]["type"]
        ),
        code=code("generate_targets.py"),
        chunk_size=64,
    script:
        "../workflow_scripts/generate_targets.py"


rule target_baseline:
    input:
        test=paths.SPLIT.format(task="{task}", split="test"),
    output:
        outputs=paths.TARGET_OUTPUTS.format(
            task="{task}",
            model="{baseline}",
            method="baseline",
            decoding=s2t.BASELINE_DECODING,
        ),
        provenance=paths.TARGET_PROVENANCE.format(
            task="{task}",
            model="{baseline}",
            method="baseline",
            decoding=s2t.BASELINE_DECODING,
        ),
    log:
        "logs/target_baseline/{task}/{baseline}.log",
    wildcard_constraints:
        baseline="copy|lead",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code("target_baseline.py"),
    script:
        "../workflow_scripts/target_baseline.py"


rule target_perplexity:
    input:
        unpack(predict_inputs),
    output:
        perplexity=paths.TARGET_PERPLEXITY,
    log:
        "logs/target_perplexity/{task}/{model}/{method}.log",
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
            s2t.perplexity_settings(config, TASKS[w.task], w.model, w.method)
        ),
        peft_task_type=lambda w: tasks.peft_task_type(
            "source_target", MODELS[w.model]["type"]
        ),
        code=code("target_perplexity.py"),
    script:
        "../workflow_scripts/target_perplexity.py"


rule score_targets:
    input:
        unpack(
            lambda w: s2t.score_inputs(
                w.task, TASKS[w.task], w.model, w.method, w.decoding
            )
        ),
    output:
        metrics=paths.TARGET_METRICS,
    log:
        "logs/score_targets/{task}/{model}/{method}/{decoding}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=lambda w: cfg.canonical(s2t.score_settings(TASKS[w.task])),
        bertscore=lambda w: cfg.canonical(
            dict(TASKS[w.task]["bertscore"], model=bertscore_model(w.task))
        ),
        code=code("score_targets.py"),
    script:
        "../workflow_scripts/score_targets.py"


rule target_figures:
    input:
        unpack(lambda w: s2t.figure_inputs(w.task, TASKS[w.task])),
    output:
        scores=report(
            paths.FIGURE.format(task="{task}", figure="target_scores"),
            caption="../report/target_scores.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        training=report(
            paths.FIGURE.format(task="{task}", figure="target_training"),
            caption="../report/training_curves.rst",
            category="{task}",
            subcategory="fine-tuning",
        ),
    log:
        "logs/target_figures/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        runs=lambda w: cfg.canonical(s2t.figure_listing(TASKS[w.task], MODELS)),
        metrics=lambda w: cfg.canonical(s2t.metrics(TASKS[w.task])),
        code=code("make_target_figures.py"),
    script:
        "../workflow_scripts/make_target_figures.py"
