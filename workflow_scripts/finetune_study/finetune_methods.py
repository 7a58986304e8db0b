"""The fine-tune methods, in one table: each method's name, the settings block of a fine-tune
entry it reads (only that block is in its stage key), its label in figures and tables, and
whether its examples can be packed. Which model kinds take a method is said by the model kinds
(model_kinds/); how each method builds its trainable model is adapters.BUILDERS. The schema's
method enum is checked against this table by tests/test_interfaces.py.

Standard library only: it runs at Snakemake parse time.
"""

METHODS = {
    "lora": {"settings": "lora", "label": "LoRA", "packing": True},
    "dora": {"settings": "lora", "label": "DoRA", "packing": True},
    "ia3": {"settings": "ia3", "label": "IA3", "packing": True},
    # prompt learning puts its virtual tokens before every row, so rows cannot be packed
    "prompt_tuning": {"settings": "prompt", "label": "prompt tuning", "packing": False},
    "prefix_tuning": {"settings": "prompt", "label": "prefix tuning", "packing": False},
    "full": {"settings": None, "label": "full fine-tune", "packing": True},
    "qlora": {"settings": "lora", "label": "QLoRA", "packing": True},
}
FINETUNE_METHODS = tuple(METHODS)
# which settings block of a fine-tune entry each method reads (full reads none)
METHOD_SETTINGS = {name: m["settings"] for name, m in METHODS.items()}
METHOD_LABELS = {name: m["label"] for name, m in METHODS.items()}
