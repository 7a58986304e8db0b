"""Inputs of a source -> target task's models: the task's prompt template with {text} filled by the
source (cut to max_source_tokens tokens of the model's tokenizer first, so a long dialogue never
pushes the instruction out), wrapped in the chat template for a causal LM that uses one. An
encoder-decoder reads the filled template as its encoder input, without a chat template.

Used alike by fine-tuning, generation and reference perplexity, so a model is always asked the
way it was trained.
"""

from . import prompting


def cut_source(tokenizer, text, max_tokens):
    """The source cut to its first max_tokens tokens (no special tokens), or unchanged if shorter."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= max_tokens:
        return text
    return tokenizer.decode(ids[:max_tokens], skip_special_tokens=True)


def model_input(text, settings, tokenizer, shots=()):
    """The prompt text a model reads for one source (settings: the stage key's prompt, chat_template
    and max_source_tokens). shots: few-shot examples [(source, target)], each source cut like this
    one and answered with its target before it (prompting.build_prompt)."""
    source = cut_source(tokenizer, text, settings["max_source_tokens"])
    examples = [(cut_source(tokenizer, t, settings["max_source_tokens"]), a) for t, a in shots]
    return prompting.build_prompt(source, settings["prompt"], [], tokenizer, settings["chat_template"], examples)


def fewshot_pairs(train_rows, settings):
    """(source, first reference) of the stage key's few-shot examples (prompting.fewshot_rows)."""
    return [(r["text"], r["references"][0]) for r in prompting.fewshot_rows(train_rows, settings)]


def answer(reference, settings):
    """The text a causal LM is trained to write after its prompt (no end-of-sequence token)."""
    return prompting.answer_text(reference, settings["prompt"], settings["chat_template"])


# what a model kind is trained (and scored) to write for a reference: a causal LM continues its
# prompt (after answer_prefix, or as the assistant turn); an encoder-decoder's decoder starts afresh
TARGET_TEXT = {"causal_lm": answer, "seq2seq": lambda reference, settings: reference}


def target_text(reference, settings, model_kind):
    return TARGET_TEXT[model_kind](reference, settings)
