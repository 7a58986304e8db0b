"""Classification, fine-tuning examples: an encoder learns text -> label index through its
classification head (the tokenization predict uses too: heads.encode); a causal LM learns
prompt -> label with the loss on the answer tokens only."""

from .. import heads, prompting


def _encoder_examples(rows, tok, s):
    labels, max_length = s["labels"], s["finetune"]["training"]["max_length"]
    ids = heads.encode(tok, [r["text"] for r in rows], max_length)
    return [{"input_ids": i, "labels": labels.index(r["label"])} for r, i in zip(rows, ids)]


def _causal_examples(rows, tok, s):
    labels, max_length = s["labels"], s["finetune"]["training"]["max_length"]
    use_chat = s["model"].get("chat_template", False)
    out = []
    for r in rows:
        prompt = prompting.build_prompt(r["text"], s["prompt"], labels, tok, use_chat)
        answer = prompting.answer_text(r["label"], s["prompt"], use_chat)
        ids, lab = prompting.encode_prompt_answer(tok, prompt, answer, max_length)
        out.append({"input_ids": ids, "labels": lab})
    return out


EXAMPLES = {"encoder": _encoder_examples, "causal_lm": _causal_examples}


def examples(rows, tok, settings, model_kind):
    """Training examples {"input_ids", "labels"} of one split (settings: the finetune stage key)."""
    return EXAMPLES[model_kind](rows, tok, settings)
