"""Model loading: resolve a config entry (hub id, local folder, pip package, GGUF file) and
materialize it once as a plain safetensors checkpoint; load that checkpoint in later stages.

A fine-tune's output folder (results/<task>/<model>/<method>-s<seed>/adapter) is loaded on top
of the prepared model: a PEFT adapter (adapter_config.json) or bottleneck adapters
(bottleneck_config.json, bottleneck.py) on the base weights, or, for a full
fine-tune (config.json, no adapter_config.json), the folder itself as the model (artifact_kind).
A qlora adapter's quantization.json says its base is loaded in 4-bit, as it was trained.
Causal LMs (load_causal_lm), encoder-decoder models (load_seq2seq_lm) and encoders with a head
(load_classifier, load_token_classifier) each have their loader.

Security: trust_remote_code only when the config asks for it; weights saved and loaded as
safetensors (use_safetensors=True), so no pickle is ever read.
"""

import contextlib
import importlib.util
import json
import os
from pathlib import Path

import torch

from . import heads, model_files, precision, weight_digests
from .common import PipelineError, atomic_dir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name():
    """What a model job computes on, for its provenance: 'cuda (NVIDIA H200)' or 'cpu'."""
    return f"cuda ({torch.cuda.get_device_name()})" if torch.cuda.is_available() else "cpu"


def resolve_dtype(name, dev=None):
    """A config dtype as a torch dtype. The stage keys already hold the resolved name
    (precision.model_dtype); 'auto' (bench scripts, direct callers) is resolved here for `dev`:
    bfloat16 on a bf16 GPU or a CPU with native bf16, float32 otherwise."""
    if name != "auto":
        return DTYPES[name]
    dev = torch.device(dev) if dev is not None else device()
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if precision.cpu_has_native_bf16() else torch.float32


def package_dir(package):
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError(f"package '{package}' is not installed; pip install it (see README) or use hub_id")
    return Path(list(spec.submodule_search_locations)[0])


def resolve_source(spec, use_hub):
    """Return (folder_or_hub_id, gguf_file or None)."""
    if use_hub or "source" not in spec:
        if "hub_id" not in spec:
            raise PipelineError("model has no hub_id; add one or set use_hub: false")
        return spec["hub_id"], None
    src = spec["source"]
    if "gguf_package" in src:
        mod = importlib.import_module(src["gguf_package"])
        path = Path(mod.assemble())
        return str(path.parent), path.name
    if "package" in src:
        folder = package_dir(src["package"]) / src.get("subdir", "")
    elif "path" in src:
        folder = Path(src["path"])
    else:
        raise PipelineError("model source needs one of path, package, gguf_package")
    if not folder.exists():
        raise PipelineError(f"model folder {folder} not found; fix the model's source")
    gguf = src.get("gguf_file")
    if gguf and not (folder / gguf).is_file():
        raise PipelineError(f"GGUF file {folder / gguf} not found; fix source.gguf_file")
    return str(folder), gguf


def _hub_model_error(hub_id, error):
    """One line for a hub id that could not be loaded: offline and not cached, or the hub's own reason."""
    from huggingface_hub import is_offline_mode

    if is_offline_mode():
        reason = model_files.offline_reason()
    else:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return model_files.hub_error(hub_id, reason)


def _clear_gguf_state(model):
    # A GGUF load leaves quantizer state behind that blocks training and save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


@contextlib.contextmanager
def one_gguf_parse():
    """Inside: a GGUF file is parsed once. transformers reads a GGUF file's metadata three times to
    load a model from it (the tokenizer, the config, the weights), each a new gguf.GGUFReader that
    walks every field (Gemma-3's 262k-token vocabulary: about 13 s a parse on a 2-core CPU). Here
    gguf.GGUFReader hands back the reader it already made for the same file: read-only, so the same
    tensors and tokenizer come out. Yields the readers made, by path."""
    import gguf

    made, reader_class = {}, gguf.GGUFReader

    def reader(path, mode="r"):
        key = (os.path.realpath(path), mode)
        if key not in made:
            made[key] = reader_class(path, mode)
        return made[key]

    gguf.GGUFReader = reader
    try:
        yield made
    finally:
        gguf.GGUFReader = reader_class


def materialize(spec, use_hub, out_dir, kind):
    """Load the model from its source and save it as safetensors + tokenizer into out_dir. kind: its
    model kind (model_kinds.get(spec["type"])): the Auto class it loads with, and whether it has a head."""
    import transformers
    from transformers import AutoTokenizer

    where, gguf = resolve_source(spec, use_hub)
    kwargs = {"trust_remote_code": spec["trust_remote_code"]}
    if gguf:
        kwargs["gguf_file"] = gguf
    print(f"loading {where}" + (f" ({gguf})" if gguf else ""))
    cls = getattr(transformers, kind.AUTO_CLASS)
    # 'auto' keeps the checkpoint's own dtype on disk (GGUF: dequantized to float32), whatever this
    # machine computes in; later stages cast to their resolved dtype (precision.model_dtype).
    if spec["dtype"] == "auto":
        dtype = torch.float32 if gguf else "auto"
    else:
        dtype = DTYPES[spec["dtype"]]
    if Path(where).is_dir() and not gguf:
        model_files.check_folder_weights(where, "fix or replace the model's source")
    try:
        with one_gguf_parse() if gguf else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
            # safetensors only (a GGUF file is read by its own parser): no pickle is ever loaded
            model = cls.from_pretrained(where, dtype=dtype, **({} if gguf else {"use_safetensors": True}), **kwargs)
    except OSError as e:
        if Path(where).is_dir():
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PipelineError(f"{where}: {first}; the model's source needs safetensors weights") from None
        raise PipelineError(_hub_model_error(where, e)) from None
    if gguf:
        _clear_gguf_state(model)
    # save_pretrained keeps no sentence-transformers files: record here which head fits (heads.py)
    head = heads.detect_head(where) if kind.HEAD else None
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if head:
            heads.write_head(tmp, head)
            print(f"classification head: {head['pooling']} ({head['source']})")
        weight_digests.record(tmp)  # checked before jobs use the folder (weight_digests.py)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"saved {n_params / 1e6:.1f}M parameters to {out_dir}")


def load_tokenizer(model_dir, trust_remote_code=False, padding_side="left"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def artifact_kind(folder):
    """What a fine-tune wrote into `folder`: "peft" (adapter_config.json: an adapter for the base
    model), "bottleneck" (bottleneck_config.json: bottleneck adapters, bottleneck.py), "full"
    (config.json: the whole fine-tuned model), or None for no folder."""
    if not folder:
        return None
    folder = Path(folder)
    if (folder / "adapter_config.json").is_file():
        return "peft"
    if (folder / "bottleneck_config.json").is_file():
        return "bottleneck"
    if (folder / "config.json").is_file():
        return "full"
    raise PipelineError(
        f"{folder}: neither adapter_config.json (a PEFT adapter), bottleneck_config.json (bottleneck "
        f"adapters) nor config.json (a full fine-tune); rerun its finetune job"
    )


def check_weights(model_dir, adapter=None):
    """One line naming a truncated or corrupt safetensors file of the folders a job loads, and that
    deleting the folder rebuilds it (model_files.safetensors_problem), before transformers reads it;
    then a prepared folder's files against the digests recorded when it was prepared, hashing only
    those whose stat differs from the parse's stamp (weight_digests.verify; the stamp is not written)."""
    for folder in (model_dir, adapter):
        if folder:
            model_files.check_folder_weights(folder, f"delete {folder}/ and rerun: the workflow rebuilds it")
    if model_dir and (Path(model_dir) / weight_digests.MANIFEST).is_file():
        weight_digests.verify(model_dir, write=False)


def quantization_config(settings):
    """transformers' BitsAndBytesConfig for a 4-bit base (adapters.NF4). CUDA only: checked before
    anything imports bitsandbytes."""
    if not torch.cuda.is_available():
        raise PipelineError("a 4-bit (qlora) base model needs a CUDA GPU and bitsandbytes; none here")
    from transformers import BitsAndBytesConfig

    kw = dict(settings)
    kw["bnb_4bit_compute_dtype"] = DTYPES[kw.get("bnb_4bit_compute_dtype", "bfloat16")]
    return BitsAndBytesConfig(**kw)


def with_adapter(model, adapter):
    """The loaded base model with a fine-tune's adapter folder on top: PEFT's, or bottleneck adapters."""
    if artifact_kind(adapter) == "bottleneck":
        from . import bottleneck

        return bottleneck.load(model, adapter)
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter)


def load_causal_lm(model_dir, spec, adapter=None, quantize=None):
    """The prepared causal LM, with a fine-tune's output folder if given: a PEFT adapter on top (its
    base in 4-bit when the adapter has quantization.json), or a full fine-tune loaded instead of
    the base. quantize: 4-bit settings (adapters.NF4) for training qlora."""
    from transformers import AutoModelForCausalLM

    kind = artifact_kind(adapter)
    if kind == "full":
        model_dir, adapter = adapter, None
    elif kind == "peft" and (Path(adapter) / "quantization.json").is_file():
        quantize = json.loads((Path(adapter) / "quantization.json").read_text(encoding="utf-8"))
    check_weights(model_dir, adapter)
    kw = {"dtype": resolve_dtype(spec["dtype"])}
    if quantize:
        kw = {"quantization_config": quantization_config(quantize), "dtype": torch.bfloat16, "device_map": {"": 0}}
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, use_safetensors=True, trust_remote_code=spec["trust_remote_code"], attn_implementation="sdpa", **kw
    )
    if adapter:
        model = with_adapter(model, adapter)
    head = model.get_output_embeddings()
    if head is not None:
        head.register_forward_pre_hook(_contiguous_input)
    return (model if quantize else model.to(device())).eval()


def _contiguous_input(module, args):
    """The LM head's input made contiguous. generate's prefill hands it the last position of every row
    (hidden[:, -1:], not contiguous); when the head's weight does not require grad (a PEFT model's
    frozen base), torch's matmul then runs it as a bmm over the weight copied once per row: 16 copies
    of Gemma-3's 262k x 640 head, 30-50 s a batch on a CPU instead of 40 ms. Same values either way."""
    return (args[0].contiguous(), *args[1:])


def load_seq2seq_lm(model_dir, spec, adapter=None):
    """The prepared encoder-decoder model (AutoModelForSeq2SeqLM), with a fine-tune's output folder
    if given: a PEFT adapter on top, or a full fine-tune loaded instead of the base."""
    from transformers import AutoModelForSeq2SeqLM

    if artifact_kind(adapter) == "full":
        model_dir, adapter = adapter, None
    check_weights(model_dir, adapter)
    model = AutoModelForSeq2SeqLM.from_pretrained(
        model_dir,
        dtype=resolve_dtype(spec["dtype"]),
        use_safetensors=True,
        trust_remote_code=spec["trust_remote_code"],
    )
    if adapter:
        model = with_adapter(model, adapter)
    return model.to(device()).eval()


def load_classifier(model_dir, spec, labels, seed, adapter=None):
    """Encoder + classification head, the head chosen by the folder's head.json (heads.py): mean
    pooling + Linear for a sentence-transformers checkpoint, else AutoModelForSequenceClassification
    (CLS pooler). The head is initialized from `seed`, so the zero-shot row (untrained head) and the
    starting point of fine-tuning are reproducible. `model.head_kind` names the head. Weights
    the checkpoint lacks besides the classifier (e.g. a missing BERT pooler) are listed in
    `model.head_new_modules`, so adapters saves them with the adapter. With a full fine-tune's
    folder as `adapter`, that folder is loaded instead (its head.json, weights and trained head)."""
    if artifact_kind(adapter) == "full":
        model_dir, adapter = adapter, None
    check_weights(model_dir, adapter)
    pooling = heads.read_head(model_dir)["pooling"]
    dtype = resolve_dtype(spec["dtype"])
    if pooling == "mean":
        model = heads.load_mean_pooling(model_dir, len(labels), seed, dtype, spec["trust_remote_code"])
        model.head_new_modules = []
    else:
        from transformers import AutoModelForSequenceClassification

        torch.manual_seed(seed)
        model, info = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
            dtype=dtype,
            output_loading_info=True,
            use_safetensors=True,
            trust_remote_code=spec["trust_remote_code"],
        )
        model.head_kind = heads.HEAD_KINDS["cls"]
        model.head_new_modules = sorted(
            {k.rsplit(".", 1)[0] for k in info["missing_keys"] if not k.startswith(("classifier.", "score."))}
        )
    if adapter:
        model = with_adapter(model, adapter)
    return model.to(device()).eval()


TOKEN_HEAD = "token classification (a Linear layer on every sub-word)"


def load_token_classifier(model_dir, spec, labels, seed, adapter=None):
    """Encoder + token-classification head (AutoModelForTokenClassification: dropout and a Linear layer
    on every sub-word's last hidden state), one output per tag in `labels`. The head is initialized
    from `seed` (the zero-shot row is the untrained head, the fine-tune's starting point); with a
    full fine-tune's folder as `adapter`, that folder is loaded instead, its trained head included."""
    from transformers import AutoModelForTokenClassification

    if artifact_kind(adapter) == "full":
        model_dir, adapter = adapter, None
    check_weights(model_dir, adapter)
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(
        model_dir,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        dtype=resolve_dtype(spec["dtype"]),
        use_safetensors=True,
        trust_remote_code=spec["trust_remote_code"],
    )
    model.head_kind, model.head_new_modules = TOKEN_HEAD, []
    if adapter:
        model = with_adapter(model, adapter)
    return model.to(device()).eval()
