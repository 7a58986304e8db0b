# Generation tasks (instruction tuning): responses per model x method x decoding point, their
# BLEU / ROUGE-L / BERTScore (+ bootstrap intervals, human scores), reference perplexity, figures.
from finetune_study.tasks import generation


rule generate:
    input:
        unpack(predict_inputs),
    output:
        generations=paths.GENERATIONS,
        human_eval_template=paths.HUMAN_EVAL_TEMPLATE,
        provenance=paths.GEN_PROVENANCE,
    log:
        "logs/generate/{task}/{model}/{method}/{decoding}.log",
    benchmark:
        "benchmarks/generate/{task}/{model}/{method}/{decoding}.tsv"
    conda:
        "../envs/workflow.yaml"
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    params:
        settings=lambda w: cfg.canonical(
            generation.generation_settings(
                config,
                TASKS[w.task],
                w.model,
                generation.decodings(TASKS[w.task])[w.decoding],
                w.method,
            )
        ),
        code=code("generate.py"),
        chunk_size=64,
    script:
        "../workflow_scripts/generate.py"


rule reference_perplexity:
    input:
        unpack(predict_inputs),
    output:
        perplexity=paths.PERPLEXITY,
    log:
        "logs/reference_perplexity/{task}/{model}/{method}.log",
    conda:
        "../envs/workflow.yaml"
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    params:
        settings=lambda w: cfg.canonical(
            generation.perplexity_settings(config, TASKS[w.task], w.model)
        ),
        code=code("reference_perplexity.py"),
    script:
        "../workflow_scripts/reference_perplexity.py"


rule score_generation:
    input:
        unpack(
            lambda w: generation.score_inputs(
                w.task, TASKS[w.task], w.model, w.method, w.decoding
            )
        ),
    output:
        metrics=paths.GEN_METRICS,
    log:
        "logs/score_generation/{task}/{model}/{method}/{decoding}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        bertscore=lambda w: cfg.canonical(
            dict(TASKS[w.task]["bertscore"], model=bertscore_model(w.task))
        ),
        bootstrap=lambda w: TASKS[w.task]["bootstrap"],
        code=code("score_generation.py"),
    script:
        "../workflow_scripts/score_generation.py"


rule generation_figures:
    input:
        unpack(lambda w: generation.figure_inputs(w.task, TASKS[w.task])),
    output:
        scores=report(
            "results/{task}/figures/gen_scores.png",
            caption="../report/generation_scores.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        sweep=report(
            "results/{task}/figures/sweep.png",
            caption="../report/decoding_sweep.rst",
            category="{task}",
            subcategory="evaluation",
        ),
        training=report(
            "results/{task}/figures/gen_training.png",
            caption="../report/training_curves.rst",
            category="{task}",
            subcategory="fine-tuning",
        ),
    log:
        "logs/generation_figures/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        runs=lambda w: cfg.canonical(
            [
                [m, meth, d, MODELS[m]["type"]]
                for m, meth, d in generation.gen_runs(TASKS[w.task])
            ]
        ),
        decodings=lambda w: cfg.canonical(generation.figure_decodings(TASKS[w.task])),
        code=code("make_generation_figures.py"),
    script:
        "../workflow_scripts/make_generation_figures.py"
