# The forgetting check: lm-evaluation-harness (optional lm-eval package) on the standard sets of a
# task's `benchmarks` block, for every zero-shot causal LM and each fine-tune of one (its adapter on
# the base, no merged copy); then per task each fine-tune against its base on the same items.
# What a job depends on is in finetune_study/benchmarks.py: the model's loading, the sets and the
# limit, never decoding; the adapter and the sets' files are inputs.
from finetune_study import benchmarks


rule benchmark:
    input:
        unpack(
            lambda w: benchmarks.job_inputs(
                config, w.task, TASKS[w.task], w.model, w.method
            )
        ),
    output:
        results=benchmarks.BENCHMARK_RESULTS,
        samples=benchmarks.BENCHMARK_SAMPLES,
    log:
        "logs/benchmark/{task}/{model}/{method}.log",
    benchmark:
        benchmarks.BENCHMARK_JOB
    wildcard_constraints:
        method=f"zeroshot|{runs.FINETUNED_RUN}",
    conda:
        "../envs/workflow.yaml"
    threads: lambda w: model_resources(w.model)["cpus_per_task"]
    resources:
        mem_mb=lambda w: model_resources(w.model)["mem_mb"],
        runtime=lambda w: model_resources(w.model)["runtime"],
        gpu=lambda w: model_resources(w.model)["gpus"],
    params:
        settings=lambda w: cfg.canonical(
            benchmarks.job_settings(config, TASKS[w.task], w.model)
        ),
        code=code("run_benchmarks.py"),
    script:
        "../workflow_scripts/run_benchmarks.py"


rule general_ability:
    input:
        unpack(lambda w: benchmarks.outputs(config, w.task, TASKS[w.task])),
    output:
        comparison=benchmarks.GENERAL_ABILITY,
        figure=report(
            paths.FIGURE.format(task="{task}", figure="general_ability"),
            caption="../report/general_ability.rst",
            category="{task}",
            subcategory="general ability",
        ),
    log:
        "logs/general_ability/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        settings=lambda w: cfg.canonical(
            benchmarks.comparison_settings(config, TASKS[w.task])
        ),
        code=code("compare_general_ability.py"),
    script:
        "../workflow_scripts/compare_general_ability.py"
