"""Instruction generation, fine-tuning examples: the instruction prompt (in the task's prompt
style) -> the reference response, with the loss on the response tokens only."""

from .. import prompting


def _causal_examples(rows, tok, s):
    max_length = s["finetune"]["training"]["max_length"]
    out = []
    for r in rows:
        prompt = prompting.instruction_prompt(r, s["prompt_style"], tok)
        ids, lab = prompting.encode_prompt_answer(tok, prompt, r["output"], max_length)
        out.append({"input_ids": ids, "labels": lab})
    return out


EXAMPLES = {"causal_lm": _causal_examples}


def examples(rows, tok, settings, model_kind):
    """Training examples {"input_ids", "labels"} of one split (settings: the finetune stage key)."""
    return EXAMPLES[model_kind](rows, tok, settings)
