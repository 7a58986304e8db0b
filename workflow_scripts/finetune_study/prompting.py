"""Prompts for generative classification: fill the task template, wrap it in the model's chat
template when asked, build the answer text used as the training target, and parse a label
back out of generated text.
"""

import random
import re


def fill_template(template, text, labels):
    return template.replace("{labels}", ", ".join(labels)).replace("{text}", text)


def build_prompt(text, prompt_cfg, labels, tokenizer, use_chat, shots=()):
    """The prompt string a causal LM sees before its answer. shots: few-shot examples, [(text,
    answer)], asked and answered before the question: in a chat template as user and assistant
    turns, in a raw prompt as each filled template, answer_prefix and answer, then a blank line."""
    template = prompt_cfg["template"]
    user = fill_template(template, text, labels)
    system = prompt_cfg.get("system")
    if use_chat:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template: true, but this tokenizer has no chat template; set it to false")
        messages = [{"role": "system", "content": system}] if system else []
        for t, a in shots:
            messages += [
                {"role": "user", "content": fill_template(template, t, labels)},
                {"role": "assistant", "content": a},
            ]
        messages.append({"role": "user", "content": user})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prefix = prompt_cfg.get("answer_prefix", " ")
    user = "".join(f"{fill_template(template, t, labels)}{prefix}{a}\n\n" for t, a in shots) + user
    return f"{system}\n{user}" if system else user


def fewshot_rows(train_rows, settings):
    """The few-shot examples of a stage key's `fewshot` ({"k", "seed"}; none without it): k rows of
    the train split (never test), drawn once with the task's seed, in the order drawn; the same for
    every test item."""
    fs = settings.get("fewshot")
    if not fs:
        return []
    rows = list(train_rows)
    if fs["k"] > len(rows):
        raise ValueError(f"prompt.fewshot: {fs['k']} examples asked for, but the train split has {len(rows)} rows")
    return random.Random(fs["seed"]).sample(rows, fs["k"])


def answer_text(label, prompt_cfg, use_chat):
    """The text that follows the prompt for a given label (no end-of-sequence token)."""
    return label if use_chat else prompt_cfg.get("answer_prefix", " ") + label


def encode_prompt_answer(tokenizer, prompt, answer, max_length, add_eos=True):
    """Token ids of prompt + answer and labels with the prompt masked (-100): the loss is on the answer only.
    The prompt is cut from the left when too long, so the answer is never truncated."""
    prompt_ids = tokenizer(prompt, add_special_tokens=not _has_bos(tokenizer, prompt))["input_ids"]
    answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        answer_ids = answer_ids + [tokenizer.eos_token_id]
    answer_ids = answer_ids[: max_length - min(len(prompt_ids), max_length // 2)]  # long responses: cut their end
    keep = max(1, max_length - len(answer_ids))
    prompt_ids = prompt_ids[-keep:]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def prompt_ids(tokenizer, prompt):
    return tokenizer(prompt, add_special_tokens=not _has_bos(tokenizer, prompt))["input_ids"]


def _has_bos(tokenizer, prompt):
    # A chat template usually writes the BOS token itself; do not add a second one.
    bos = tokenizer.bos_token
    return bool(bos) and prompt.startswith(bos)


def parse_label(output, labels):
    """The label named first in the output (whole word, case-insensitive), or None."""
    best, best_pos = None, None
    for label in labels:
        m = re.search(r"(?<![A-Za-z0-9])" + re.escape(label.lower()) + r"(?![A-Za-z0-9])", output.lower())
        if m and (best_pos is None or m.start() < best_pos or (m.start() == best_pos and len(label) > len(best))):
            best, best_pos = label, m.start()
    return best


def near_miss_label(output, labels, synonyms=None):
    """The label an unparsed output almost names, or None (also None when parse_label parses it).

    Words are runs of letters/digits (the boundary parse_label uses), compared case-insensitively.
    A word names a label when it shares a prefix with the label name of at least 3 characters and
    at least half the label's length, rounded down (len(label) // 2): "sad" -> sadness (3 >= 7 // 2),
    "angry" -> anger, "surprised" -> surprise, "fearful" -> fear, "joyful" -> joy, "loving" -> love;
    "an" (2 characters) names nothing. synonyms, {label: [words]}, adds whole-word (or whole-phrase)
    matches, e.g. {"joy": ["happy"]}. If several labels are named, the one named earliest in the
    text wins; at the same position the longer match (shared prefix or synonym), then the earlier label.
    """
    if parse_label(output, labels) is not None:
        return None
    text = output.lower()
    found = []  # (position, -match length, label index)
    for m in re.finditer(r"[a-z0-9]+", text):
        word = m.group()
        for j, label in enumerate(labels):
            name = label.lower()
            shared = 0
            while shared < min(len(word), len(name)) and word[shared] == name[shared]:
                shared += 1
            if shared >= 3 and shared >= len(name) // 2:
                found.append((m.start(), -shared, j))
    for label, words in (synonyms or {}).items():
        if label not in labels:
            raise ValueError(f"synonyms for {label!r}, which is not in the label set {labels}")
        for w in words:
            m = re.search(r"(?<![A-Za-z0-9])" + re.escape(w.lower()) + r"(?![A-Za-z0-9])", text)
            if m:
                found.append((m.start(), -len(w), labels.index(label)))
    return labels[min(found)[2]] if found else None


ALPACA_WITH_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)


def instruction_prompt(row, style, tokenizer, shots=()):
    """Prompt for an Alpaca-style record {instruction, input}: the Alpaca format or the chat template.
    shots: few-shot records {instruction, input, output} answered before it (chat: user and assistant
    turns; Alpaca: each filled template followed by its output and a blank line)."""
    if style == "chat":
        messages = []
        for r in [*shots, row]:
            messages.append({"role": "user", "content": r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "")})
            if r is not row:
                messages.append({"role": "assistant", "content": r["output"]})
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{_alpaca(r)}{r['output']}\n\n" for r in shots) + _alpaca(row)


def _alpaca(row):
    template = ALPACA_WITH_INPUT if row["input"] else ALPACA_NO_INPUT
    return template.replace("{instruction}", row["instruction"]).replace("{input}", row["input"])
