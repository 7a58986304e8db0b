"""Snakemake script: render one conversation through each tokenizer's chat template.

params.tokenizers: JSON string {name: folder, .gguf file or hub id}.
params.conversation: JSON string, a list of {"role", "content"} (system, user, assistant).
output.rendered: JSON {name: rendered prompt (special tokens visible) | null when the tokenizer
    has no chat template | {"error": message} when its template rejects the conversation}.
"""

import json

from finetune_study import common
from finetune_study import tokenizer_study as ts


def main(tokenizers, conversation, rendered):
    specs = json.loads(tokenizers) if isinstance(tokenizers, str) else dict(tokenizers)
    conv = json.loads(conversation) if isinstance(conversation, str) else list(conversation)
    if not conv or not all(isinstance(m, dict) and {"role", "content"} <= set(m) for m in conv):
        raise common.PipelineError("chat template conversation: expected a non-empty list of {role, content}")
    out = {}
    for name, where in specs.items():
        tok = ts.load_tokenizer(name, where)
        try:
            out[name] = ts.chat_template_render(tok, conv)
        except ts.ChatTemplateError as exc:
            out[name] = {"error": str(exc)}
        print(
            f"{name}: "
            + (
                "no chat template"
                if out[name] is None
                else "template error"
                if isinstance(out[name], dict)
                else f"{len(out[name])} chars"
            )
        )
    common.write_json(rendered, out)


if "snakemake" in globals():
    with common.log_to(common.snakemake_log(snakemake)):  # noqa: F821
        main(snakemake.params.tokenizers, snakemake.params.conversation, snakemake.output.rendered)  # noqa: F821
