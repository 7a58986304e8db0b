# Tokenizer and chat-template study: how tokenizers of several model families split English and
# Persian (and task) text, and how each model's chat template renders one conversation.


rule task_text:
    input:
        test="results/{task}/data/test.jsonl",
    output:
        text="results/tokenizers/texts/{task}.txt",
    log:
        "logs/task_text/{task}.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        n=lambda w: study_inputs.task_texts(config, TASKS)[w.task],
        code=code("task_text.py"),
    script:
        "../workflow_scripts/task_text.py"


rule tokenizer_stats:
    input:
        unpack(lambda w: study_inputs.inputs(config, TASKS, workflow.basedir)),
    output:
        table=report(
            "results/tokenizers/table.json",
            caption="../report/tokenizer_table.rst",
            category="tokenizer study",
            subcategory="tokenizers",
        ),
        figure=report(
            "results/tokenizers/stats.png",
            caption="../report/tokenizer_stats.rst",
            category="tokenizer study",
            subcategory="tokenizers",
        ),
        pieces="results/tokenizers/pieces.json",
    log:
        "logs/tokenizer_stats.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        tokenizers=lambda w: cfg.canonical(study_inputs.tokenizers(config)),
        sentence=lambda w: cfg.canonical(config["tokenizer_study"]["sentences"]),
        code=code("tokenizer_stats.py"),
    script:
        "../workflow_scripts/tokenizer_stats.py"


rule chat_templates:
    input:
        models=lambda w: [
            paths.MODEL_DIR.format(model=m) for m in study_inputs.models_in_use(TASKS)
        ],
    output:
        rendered="results/tokenizers/chat_templates.json",
    log:
        "logs/chat_templates.log",
    conda:
        "../envs/workflow.yaml"
    resources:
        mem_mb=2000,
        runtime=5,
    params:
        tokenizers=lambda w: cfg.canonical(
            {
                m: paths.MODEL_DIR.format(model=m)
                for m in study_inputs.models_in_use(TASKS)
            }
        ),
        conversation=lambda w: cfg.canonical(config["tokenizer_study"]["conversation"]),
        code=code("chat_templates.py"),
    script:
        "../workflow_scripts/chat_templates.py"
