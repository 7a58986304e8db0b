"""Encoder classification heads: which head fits a checkpoint, the mean-pooling head, and the one
tokenization (encode: truncation; batched with batching.right_padded) that fine-tuning and
prediction both use.

- A sentence-transformers checkpoint (modules.json with a Pooling module) was trained for the
  pooling its 1_Pooling/config.json names; for mean pooling its BERT pooler (dense + tanh on the
  CLS token) is untrained, so the head is a masked mean of the last hidden states + dropout + a
  Linear layer (MeanPoolingClassifier; pooling_mode_mean_sqrt_len_tokens too: same direction).
  Any other checkpoint, a sentence-transformers one pooled on its CLS token included, keeps
  AutoModelForSequenceClassification (the CLS pooler).
- save_pretrained drops the sentence-transformers files, so models.materialize records the choice
  in `head.json` ({"pooling": "mean"|"cls", "source": why}) in the prepared folder, and
  models.load_classifier reads it (no head.json: "cls", for folders prepared before it existed).
- The head's initial weights come from a seed, so the untrained-head row and the fine-tune's
  starting point are reproducible.
"""

import json
from pathlib import Path

import torch

from .common import PipelineError

HEAD_FILE = "head.json"
CLASSIFIER_FILE = "classifier.safetensors"  # a fully fine-tuned mean-pooling head
POOLINGS = ("mean", "cls")
HEAD_KINDS = {"mean": "mean pooling (sentence-transformers)", "cls": "CLS pooler (AutoModelForSequenceClassification)"}


# ---------------------------------------------------------------- tokenization (train = predict)


def encode(tokenizer, texts, max_length):
    """Token ids of each text, truncated to max_length tokens (special tokens included), no padding.
    Fine-tuning and prediction both call this, so an encoder sees the same tokens in both."""
    texts = list(texts)
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"] if texts else []


def _choose(modules, read_file, where):
    """Head choice from a sentence-transformers modules.json (parsed list) and a reader of its files."""
    pooling = [m for m in modules if str(m.get("type", "")).endswith("models.Pooling")]
    if not pooling:
        return {"pooling": "cls", "source": f"{where}: modules.json has no Pooling module; CLS pooler"}
    cfg_name = "/".join(p for p in (pooling[0].get("path", "").strip("/"), "config.json") if p)
    cfg = json.loads(read_file(cfg_name))
    if cfg.get("pooling_mode_mean_tokens") or cfg.get("pooling_mode_mean_sqrt_len_tokens"):
        mode = (
            "pooling_mode_mean_tokens" if cfg.get("pooling_mode_mean_tokens") else "pooling_mode_mean_sqrt_len_tokens"
        )
        return {"pooling": "mean", "source": f"{where}: sentence-transformers checkpoint, {cfg_name} sets {mode}"}
    if cfg.get("pooling_mode_cls_token"):
        return {
            "pooling": "cls",
            "source": f"{where}: sentence-transformers checkpoint, {cfg_name} sets pooling_mode_cls_token",
        }
    modes = sorted(k for k, v in cfg.items() if k.startswith("pooling_mode") and v)
    return {
        "pooling": "cls",
        "source": f"{where}: sentence-transformers pooling {modes or 'unknown'} is not supported here; CLS pooler",
    }


def detect_head(where):
    """{"pooling": "mean"|"cls", "source": why} for a local folder or a hub id. A hub id is asked for
    its modules.json; if the hub cannot be reached (offline), the CLS pooler is assumed and the
    source says so."""
    folder = Path(where)
    if folder.is_dir():
        if not (folder / "modules.json").is_file():
            return {
                "pooling": "cls",
                "source": f"{where}: no modules.json (not a sentence-transformers checkpoint); CLS pooler",
            }
        try:
            modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
            return _choose(modules, lambda name: (folder / name).read_text(encoding="utf-8"), str(where))
        except (OSError, ValueError, AttributeError) as e:  # a broken sentence-transformers layout
            return {
                "pooling": "cls",
                "source": f"{where}: modules.json or its pooling config unreadable "
                f"({type(e).__name__}: {e}); CLS pooler",
            }
    try:
        modules = json.loads(_hub_text(where, "modules.json"))
    except Exception as e:  # offline, unreachable, gated, or not there
        # RemoteEntryNotFoundError (EntryNotFoundError in older huggingface_hub): the hub answered that
        # the repository has no such file. LocalEntryNotFoundError is the offline case: nobody was asked.
        if type(e).__name__ in ("RemoteEntryNotFoundError", "EntryNotFoundError"):
            return {
                "pooling": "cls",
                "source": f"hub {where}: no modules.json (not a sentence-transformers checkpoint); CLS pooler",
            }
        return {
            "pooling": "cls",
            "source": f"hub {where}: could not read modules.json ({type(e).__name__}); CLS pooler assumed (offline?)",
        }
    try:
        return _choose(modules, lambda name: _hub_text(where, name), f"hub {where}")
    except Exception as e:
        return {
            "pooling": "cls",
            "source": f"hub {where}: has modules.json but its pooling config could not be read "
            f"({type(e).__name__}); CLS pooler assumed",
        }


def _hub_text(repo, name):
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo, name)).read_text(encoding="utf-8")


def write_head(folder, head):
    if head.get("pooling") not in POOLINGS:
        raise PipelineError(f"head pooling must be one of {POOLINGS}, got {head.get('pooling')!r}")
    (Path(folder) / HEAD_FILE).write_text(json.dumps(head, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_head(model_dir):
    """The head recorded by materialize; a folder without head.json (prepared before it existed) gets cls."""
    path = Path(model_dir) / HEAD_FILE
    if not path.is_file():
        return {
            "pooling": "cls",
            "source": f"no {HEAD_FILE} in {model_dir} (prepared before head detection); CLS pooler",
        }
    head = json.loads(path.read_text(encoding="utf-8"))
    if head.get("pooling") not in POOLINGS:
        raise PipelineError(
            f"{path}: pooling must be one of {POOLINGS}, got {head.get('pooling')!r}; rerun prepare_model"
        )
    return head


# ---------------------------------------------------------------- the mean-pooling head


def mean_pool(hidden, attention_mask):
    """Masked mean of hidden states (B, T, H) over the real tokens, in float32 (sentence-transformers'
    mean pooling: sum of the real tokens' states / their count)."""
    m = attention_mask.to(torch.float32).unsqueeze(-1)
    return (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)


class MeanPoolingClassifier(torch.nn.Module):
    """Encoder (AutoModel) -> masked mean pooling -> dropout -> Linear `classifier`.

    Called like a transformers sequence classifier: model(input_ids, attention_mask, labels) returns
    .logits and, with 1-D integer labels, .loss (cross-entropy). PEFT wraps it as SEQ_CLS: LoRA on the
    encoder's projections, `classifier` in modules_to_save."""

    head_kind = HEAD_KINDS["mean"]

    def __init__(self, backbone, num_labels, seed, dropout=None):
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.name_or_path = getattr(backbone, "name_or_path", None)
        hidden = self.config.hidden_size
        if dropout is None:
            dropout = getattr(self.config, "classifier_dropout", None)
            if dropout is None:
                dropout = getattr(self.config, "hidden_dropout_prob", 0.1)
        self.dropout = torch.nn.Dropout(dropout)
        # float32 whatever the encoder's dtype (bfloat16 on a GPU): the head is tiny and trains in full,
        # so its weights and optimizer state stay float32, like the LoRA weights
        self.classifier = torch.nn.Linear(hidden, num_labels, dtype=torch.float32)
        # the head's initial weights depend on `seed` only (not on whatever used the global RNG before):
        # normal(0, initializer_range), bias 0, as transformers initializes a classifier
        g = torch.Generator().manual_seed(int(seed))
        std = getattr(self.config, "initializer_range", 0.02)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.randn(num_labels, hidden, generator=g, dtype=torch.float32) * std)
            self.classifier.bias.zero_()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        labels=None,
        inputs_embeds=None,
        token_type_ids=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        **kwargs,
    ):
        from transformers.modeling_outputs import SequenceClassifierOutput

        ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
        if attention_mask is None:
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        out = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            token_type_ids=token_type_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(self.dropout(mean_pool(out.last_hidden_state, attention_mask)))
        loss = None
        if labels is not None:
            loss = torch.nn.functional.cross_entropy(logits.float(), labels.view(-1))
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=out.hidden_states, attentions=out.attentions
        )

    def save_pretrained(self, folder, safe_serialization=True):
        """A full fine-tune's folder: the encoder as a transformers checkpoint (config.json +
        model.safetensors) and the head in classifier.safetensors (load_mean_pooling reads both)."""
        from safetensors.torch import save_file

        if not safe_serialization:
            raise ValueError("only safetensors")
        self.backbone.save_pretrained(folder, safe_serialization=True)
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in self.classifier.state_dict().items()},
            str(Path(folder) / CLASSIFIER_FILE),
        )

    # what the adapters builders and PEFT ask of a transformers model
    def gradient_checkpointing_enable(self, **kwargs):
        self.backbone.gradient_checkpointing_enable(**kwargs)

    def enable_input_require_grads(self):
        self.backbone.enable_input_require_grads()

    def get_input_embeddings(self):
        return self.backbone.get_input_embeddings()


def load_mean_pooling(model_dir, num_labels, seed, dtype, trust_remote_code):
    """Encoder + mean-pooling head; the head from `seed`, or, in a full fine-tune's folder, its trained
    weights (classifier.safetensors)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    backbone = AutoModel.from_pretrained(
        model_dir, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
    )
    model = MeanPoolingClassifier(backbone, num_labels, seed)
    trained = Path(model_dir) / CLASSIFIER_FILE
    if trained.is_file():
        model.classifier.load_state_dict(load_file(str(trained)))
    return model
