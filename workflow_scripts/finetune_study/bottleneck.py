"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021), our own implementation.

AdapterHub's `adapters` library (1.3.0) is the usual home of these adapters, but it does not run
with the pinned transformers 5.x: it requires transformers ~=4.57.6, and imported anyway it fails
on names transformers 5 / huggingface_hub 1.x removed (huggingface_hub.HfFolder,
transformers.utils.is_remote_url). So the adapter is written here, small, in the spirit of PEFT:

- an adapter is `h + up(act(down(h)))` on the output h of a sub-layer's output projection, before
  its residual connection (Houlsby's placement). down: hidden -> hidden // reduction_factor, up:
  back. up starts at zero, so a fresh adapter leaves the model's outputs exactly unchanged (as
  LoRA's B does);
- `config` says where: houlsby (= AdapterHub's double_seq_bn) after the attention output and the
  feed-forward output of every layer (decoder cross-attention included); pfeiffer (= seq_bn) after
  the feed-forward output only;
- the adapter is a child module `bottleneck` of the projection it follows, applied by a forward hook,
  so the base model's own parameter names are unchanged;
- the base model is frozen; an encoder's classification head (`classifier`/`score`, and weights the
  checkpoint lacked: models.load_classifier's head_new_modules) is trained in full with it.

Saved (save) as two files: bottleneck_config.json (the settings and, per module, its hidden and
bottleneck sizes) and bottleneck_model.safetensors (every trained tensor by its name in the model).
load(model, folder) puts the same adapters on a freshly loaded base and loads them: the
predictions are the trained model's exactly (tests/test_bottleneck.py). No pickle anywhere.

Which modules an architecture's attention and feed-forward outputs are is
finetune_methods.BOTTLENECK_ARCHITECTURES (by config.model_type); the settings attention_modules and
ffn_modules name them for any other model (preflight.py asks for them at parse time).
"""

import json
from pathlib import Path

import torch

from .common import PipelineError
from .finetune_methods import BOTTLENECK_ARCHITECTURES, bottleneck_placement

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "bottleneck_model.safetensors"
FORMAT = "finetune_study.bottleneck/1"

ARCHITECTURES = BOTTLENECK_ARCHITECTURES
NON_LINEARITIES = {"relu": torch.nn.ReLU, "swish": torch.nn.SiLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh}


class Bottleneck(torch.nn.Module):
    """h -> h + up(act(down(h))), computed in the adapter's own dtype (float32 as trained)."""

    def __init__(self, hidden, size, non_linearity):
        super().__init__()
        self.down = torch.nn.Linear(hidden, size)
        self.act = NON_LINEARITIES[non_linearity]()
        self.up = torch.nn.Linear(size, hidden)
        with torch.no_grad():  # BERT's initialization for down; up at zero: the adapter starts as the identity
            self.down.weight.normal_(0.0, 0.02)
            self.down.bias.zero_()
            self.up.weight.zero_()
            self.up.bias.zero_()

    def forward(self, h):
        return h + self.up(self.act(self.down(h.to(self.down.weight.dtype)))).to(h.dtype)


def _apply_bottleneck(module, args, output):
    return module.bottleneck(output)


def _out_features(module, name):
    for attr in ("out_features", "nf"):  # torch Linear; GPT-2's Conv1D
        if isinstance(getattr(module, attr, None), int):
            return getattr(module, attr)
    raise PipelineError(f"bottleneck: module {name} ({type(module).__name__}) is not a linear layer; name another")


def _matches(name, suffixes):
    return any(name == s or name.endswith("." + s) for s in suffixes)


def placements(model, settings):
    """{module name: "attention" | "ffn"} where this config puts an adapter (see the module docstring)."""
    kind = bottleneck_placement(settings["config"])
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    known = ARCHITECTURES.get(model_type, (None, None))
    attention = settings.get("attention_modules") or known[0]
    ffn = settings.get("ffn_modules") or known[1]
    if ffn is None or ("attention" in kind and attention is None):
        raise PipelineError(
            f"bottleneck: where the attention and feed-forward outputs of a '{model_type}' model are is not "
            f"known; name them in the fine-tune's bottleneck.attention_modules and bottleneck.ffn_modules "
            f"(e.g. [self_attn.o_proj] and [mlp.down_proj])"
        )
    out = {}
    for name, _ in model.named_modules():
        if _matches(name, attention or ()):
            if "attention" in kind:
                out[name] = "attention"
        elif _matches(name, ffn):
            out[name] = "ffn"
    for what in kind:
        if what not in out.values():
            names = attention if what == "attention" else ffn
            raise PipelineError(
                f"bottleneck: no module named {names} in this {model_type} model; fix bottleneck."
                f"{'attention_modules' if what == 'attention' else 'ffn_modules'}"
            )
    return out


def insert(model, modules, non_linearity):
    """Put an adapter on each of `modules` ({name: [hidden, bottleneck size]}); returns the model."""
    for name, (hidden, size) in modules.items():
        target = model.get_submodule(name)
        target.add_module("bottleneck", Bottleneck(hidden, size, non_linearity))
        target.register_forward_hook(_apply_bottleneck)
    return model


def sizes(model, settings):
    """{module name: [hidden, bottleneck size]} of every adapter this config puts on the model."""
    rf = settings["reduction_factor"]
    out = {}
    for name in placements(model, settings):
        hidden = _out_features(model.get_submodule(name), name)
        size = int(hidden // rf)
        if size < 1:
            raise PipelineError(
                f"bottleneck.reduction_factor {rf} leaves no bottleneck on {name} ({hidden} features); lower it"
            )
        out[name] = [hidden, size]
    return out


HEAD_MODULES = ("classifier", "score")


def _head_modules(model, task_type):
    if task_type not in ("SEQ_CLS", "TOKEN_CLS"):
        return []
    names = [n for n, _ in model.named_modules() if n.split(".")[-1] in HEAD_MODULES and "bottleneck" not in n]
    return names + list(getattr(model, "head_new_modules", []))


def bottleneck_model(model, settings, task_type):
    """The model with this config's adapters, everything else frozen but an encoder's head."""
    modules = sizes(model, settings)
    for p in model.parameters():
        p.requires_grad_(False)
    insert(model, modules, settings["non_linearity"])
    for name in _head_modules(model, task_type):
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    model.bottleneck_config = {
        "format": FORMAT,
        **{k: settings[k] for k in ("config", "reduction_factor", "non_linearity")},
        "model_type": getattr(model.config, "model_type", None),
        "modules": modules,
    }
    return model


def save(model, folder):
    from safetensors.torch import save_file

    folder = Path(folder)
    trained = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
    save_file(trained, str(folder / WEIGHTS_FILE), metadata={"format": FORMAT})
    (folder / CONFIG_FILE).write_text(json.dumps(model.bottleneck_config, indent=2) + "\n", encoding="utf-8")


def load(model, folder):
    """The base `model` with the adapters (and trained head) saved in `folder`."""
    from safetensors.torch import load_file

    folder = Path(folder)
    cfg = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    if cfg.get("format") != FORMAT:
        raise PipelineError(f"{folder / CONFIG_FILE}: not a {FORMAT} adapter (format {cfg.get('format')!r})")
    names = {n for n, _ in model.named_modules()}
    absent = [n for n in cfg["modules"] if n not in names]
    if not absent:
        insert(model, cfg["modules"], cfg["non_linearity"])
    state = load_file(str(folder / WEIGHTS_FILE))
    own = dict(model.named_parameters())
    unknown = sorted(set(state) - set(own))
    missing = sorted(n for n in own if ".bottleneck." in n and n not in state)
    if absent or unknown or missing:
        raise PipelineError(
            f"{folder}: the saved adapter does not fit this model (no module {absent[0]})"
            if absent
            else f"{folder}: the saved adapter does not fit this model ({len(unknown)} unknown tensors, e.g. "
            f"{(unknown or missing)[0]}; {len(missing)} missing); rerun its finetune job"
        )
    with torch.no_grad():
        for name, t in state.items():
            own[name].copy_(t)
    model.bottleneck_config = cfg
    return model
