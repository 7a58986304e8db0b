"""Token classification, fine-tuning examples: an encoder learns one tag per word at the word's first
sub-word (word_tokens.py; the other sub-words are ignored in the loss); a causal LM learns
prompt -> the gold entities as `type: text` lines (ner_prompting.py), the loss on the answer only.
A sentence longer than the fine-tune's max_length is an error before the model loads."""

from .. import conll, ner_prompting, prompting, word_tokens


def _where(rows_name):
    return lambda r: f"{rows_name}: sentence {r['id']} (line {r['line']} of the task's file)"


def _encoder_examples(rows, tok, s):
    index = {t: i for i, t in enumerate(s["labels"])}
    max_length = s["finetune"]["training"]["max_length"]
    word_tokens.check_lengths(rows, tok, max_length, _where("the fine-tune's data"), "its training.max_length")
    out = []
    for r in rows:
        ids, first = word_tokens.encode_words(tok, r["tokens"])
        out.append(
            {"input_ids": ids, "labels": word_tokens.token_labels(len(ids), first, [index[t] for t in r["tags"]])}
        )
    return out


def _causal_examples(rows, tok, s):
    types, max_length = s["entity_types"], s["finetune"]["training"]["max_length"]
    use_chat = s["model"].get("chat_template", False)
    out = []
    for r in rows:
        prompt = ner_prompting.build_prompt(r["tokens"], s["prompt"], types, tok, use_chat)
        answer = ner_prompting.answer_text(conll.tag_pairs(r["tokens"], r["tags"]), s["prompt"], use_chat)
        ids, lab = prompting.encode_prompt_answer(tok, prompt, answer, max_length)
        out.append({"input_ids": ids, "labels": lab})
    return out


EXAMPLES = {"encoder": _encoder_examples, "causal_lm": _causal_examples}


def examples(rows, tok, settings, model_kind):
    """Training examples {"input_ids", "labels"} of one split (settings: the finetune stage key)."""
    return EXAMPLES[model_kind](rows, tok, settings)
