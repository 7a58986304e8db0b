# Token-classification tasks (named-entity recognition): each run's entities in the test sentences
# (an encoder's token head, or a prompted causal LM), the dictionary baseline, entity-level scores
# with bootstrap intervals (and each fine-tune against its zero-shot row), figures.
from finetune_study.tasks import token_classification as ner


rule tag_entities:
    input:
        unpack(predict_inputs),
    output:
        predictions=paths.NER_PREDICTIONS,
        provenance=paths.NER_PROVENANCE,
    log:
        "logs/tag_entities/{task}/{model}/{method}.log",
    benchmark:
        "benchmarks/tag_entities/{task}/{model}/{method}.tsv"
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
            ner.tag_settings(config, TASKS[w.task], w.model, w.method)
        ),
        code=code("tag_entities.py"),
        chunk_size=128,
    script:
        "../workflow_scripts/tag_entities.py"


rule dictionary_baseline:
    input:
        train=paths.SPLIT.format(task="{task}", split="train"),
        test=paths.SPLIT.format(task="{task}", split="test"),
    output:
        predictions=paths.NER_PREDICTIONS.format(
            task="{task}", model=ner.BASELINE[0], method=ner.BASELINE[1]
        ),
        provenance=paths.NER_PROVENANCE.format(
            task="{task}", model=ner.BASELINE[0], method=ner.BASELINE[1]
        ),
    log:
        "logs/dictionary_baseline/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        code=code("dictionary_baseline.py"),
    script:
        "../workflow_scripts/dictionary_baseline.py"


rule score_entities:
    input:
        unpack(lambda w: ner.score_inputs(w.task, TASKS[w.task], w.model, w.method)),
    output:
        metrics=paths.NER_METRICS,
    log:
        "logs/score_entities/{task}/{model}/{method}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        settings=lambda w: cfg.canonical(ner.score_settings(TASKS[w.task])),
        code=code("score_entities.py"),
    script:
        "../workflow_scripts/score_entities.py"


rule ner_figures:
    input:
        unpack(lambda w: ner.figure_inputs(w.task, TASKS[w.task])),
    output:
        scores=report(
            paths.FIGURE.format(task="{task}", figure="ner_scores"),
            caption="../report/entity_scores.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        per_type=report(
            paths.FIGURE.format(task="{task}", figure="ner_per_type"),
            caption="../report/entity_per_type.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        training=report(
            paths.FIGURE.format(task="{task}", figure="ner_training"),
            caption="../report/training_curves.rst",
            category="{task}",
            subcategory="fine-tuning",
        ),
    log:
        "logs/ner_figures/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        runs=lambda w: cfg.canonical(ner.run_labels(TASKS[w.task], MODELS)),
        entity_types=lambda w: cfg.canonical(ner.entity_types(TASKS[w.task])),
        code=code("make_ner_figures.py"),
    script:
        "../workflow_scripts/make_ner_figures.py"
