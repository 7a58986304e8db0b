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
    "bottleneck": {"settings": "bottleneck", "label": "bottleneck adapters", "packing": True},
}
FINETUNE_METHODS = tuple(METHODS)
# which settings block of a fine-tune entry each method reads (full reads none)
METHOD_SETTINGS = {name: m["settings"] for name, m in METHODS.items()}
METHOD_LABELS = {name: m["label"] for name, m in METHODS.items()}

# bottleneck adapters (bottleneck.py): AdapterHub's config names, two of them aliases. Where each puts
# an adapter, and the non-linearity it uses when none is set (AdapterHub's defaults).
BOTTLENECK_CONFIGS = {
    "double_seq_bn": {"same_as": "houlsby", "places": ("attention", "ffn"), "non_linearity": "swish"},
    "houlsby": {"places": ("attention", "ffn"), "non_linearity": "swish"},
    "seq_bn": {"same_as": "pfeiffer", "places": ("ffn",), "non_linearity": "relu"},
    "pfeiffer": {"places": ("ffn",), "non_linearity": "relu"},
}

# where bottleneck adapters go: model_type -> (attention output modules, feed-forward output modules),
# as module name suffixes (bottleneck.py; a model of another type names them in its settings)
_BERT = (["attention.output.dense"], ["output.dense"])
_LLAMA = (["self_attn.o_proj"], ["mlp.down_proj"])
_BART = (["self_attn.out_proj", "encoder_attn.out_proj"], ["fc2"])
BOTTLENECK_ARCHITECTURES = {
    **dict.fromkeys(["bert", "roberta", "xlm-roberta", "electra", "camembert", "mpnet"], _BERT),
    "distilbert": (["attention.out_lin"], ["ffn.lin2"]),
    "gpt2": (["attn.c_proj", "crossattention.c_proj"], ["mlp.c_proj"]),
    **dict.fromkeys(
        ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "gemma3_text", "phi3", "olmo2"], _LLAMA
    ),
    **dict.fromkeys(["t5", "mt5"], (["SelfAttention.o", "EncDecAttention.o"], ["DenseReluDense.wo"])),
    "phi": (["self_attn.dense"], ["mlp.fc2"]),
    **dict.fromkeys(["bart", "mbart", "marian", "m2m_100"], _BART),
}


def bottleneck_placement(config):
    """Where a bottleneck config puts adapters: ("attention", "ffn") or ("ffn",)."""
    return BOTTLENECK_CONFIGS[config]["places"]


def bottleneck_settings(block):
    """A bottleneck block in one canonical form, as its stage key holds it: the alias resolved
    (double_seq_bn is houlsby, seq_bn is pfeiffer), the config's own non-linearity where none is set,
    unset module lists left out. Two spellings of one adapter are one key."""
    config = BOTTLENECK_CONFIGS[block["config"]].get("same_as", block["config"])
    out = {
        "config": config,
        "reduction_factor": block["reduction_factor"],
        "non_linearity": block.get("non_linearity") or BOTTLENECK_CONFIGS[config]["non_linearity"],
    }
    for k in ("attention_modules", "ffn_modules"):
        if block.get(k):
            out[k] = list(block[k])
    return out
