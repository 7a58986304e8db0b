"""Source -> target, fine-tuning examples: one per (source, reference) pair, the loss on the
target tokens only. A causal LM reads prompt + target with the prompt masked; an encoder-decoder
reads the prompt as its encoder input and the target as its labels (with the tokenizer's end of
sequence, so it learns to stop)."""

from .. import prompting, source_prompting


def _pairs(rows):
    return [(r, ref) for r in rows for ref in r["references"]]


def _causal_examples(rows, tok, s):
    max_length = s["finetune"]["training"]["max_length"]
    out = []
    for r, ref in _pairs(rows):
        prompt = source_prompting.model_input(r["text"], s, tok)
        target = source_prompting.target_text(ref, s, "causal_lm")
        ids, lab = prompting.encode_prompt_answer(tok, prompt, target, max_length)
        out.append({"input_ids": ids, "labels": lab})
    return out


def _seq2seq_examples(rows, tok, s):
    max_length = s["finetune"]["training"]["max_length"]
    out = []
    for r, ref in _pairs(rows):
        source = tok(source_prompting.model_input(r["text"], s, tok), truncation=True, max_length=max_length)
        target = tok(
            text_target=source_prompting.target_text(ref, s, "seq2seq"), truncation=True, max_length=max_length
        )
        out.append({"input_ids": source["input_ids"], "labels": target["input_ids"]})
    return out


EXAMPLES = {"causal_lm": _causal_examples, "seq2seq": _seq2seq_examples}


def examples(rows, tok, settings, model_kind):
    """Training examples {"input_ids", "labels"} of one split (settings: the finetune stage key)."""
    return EXAMPLES[model_kind](rows, tok, settings)
