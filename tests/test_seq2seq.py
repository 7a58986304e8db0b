"""The seq2seq model kind (encoder-decoder: T5, BART) on tiny random models of tests/tiny.py.

For a T5 (decoder starts from pad) and a BART (decoder starts from EOS): loading through the model
kind, the batch layout (source and target padded apart) and its loss (the model's own cross-entropy
on the target tokens), every CPU fine-tune method training through training.train and reloading
from what adapters.save_trained wrote with the same outputs, resuming from a checkpoint to the same
weights as an uninterrupted run, greedy generation batched equal to one prompt at a time,
perplexity against a hand computation, bfloat16 against float32, and a hub id loaded offline from
a Hugging Face cache.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

import tiny
from finetune_study import (
    adapters,
    batching,
    checkpoints,
    generation_metrics,
    inference,
    loss,
    model_kinds,
    models,
    training,
)

SPEC = {"type": "seq2seq", "trust_remote_code": False, "dtype": "float32"}
TARGETS = {"t5": ["q", "v"], "bart": ["q_proj", "v_proj"]}  # PEFT's own defaults for the two families
MAKE = {"t5": tiny.make_tiny_t5, "bart": tiny.make_tiny_bart}
V = 4  # virtual tokens of prompt and prefix tuning
SOURCES = [f"translate number {i}: " + "x " * (i % 3) for i in range(6)]
TARGET_TEXTS = ["joy", "anger and sadness", "love", "fear of the dark", "surprise", "joy again"]
CPU = torch.device("cpu")
TRAIN = {
    "seed": 0,
    "learning_rate": 0.05,
    "weight_decay": 0.0,
    "batch_size": 3,
    "epochs": 1,
    "max_steps": 12,
    "warmup_ratio": 0.0,
    "eval_every": 100,
    "patience": 100,
    "checkpoint_every": 1000,
    "gradient_checkpointing": False,
    "packing": True,  # asked for, never done for an encoder-decoder
}
LR = {"full": 0.003}


def finetune(method, family):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": TARGETS[family]}
    return {
        "lora": {"method": "lora", "lora": lora},
        "dora": {"method": "dora", "lora": lora},
        "ia3": {"method": "ia3", "ia3": {"target_modules": None, "feedforward_modules": None}},
        "prompt_tuning": {"method": "prompt_tuning", "prompt": {"num_virtual_tokens": V}},
        "prefix_tuning": {"method": "prefix_tuning", "prompt": {"num_virtual_tokens": V}},
        "full": {"method": "full"},
        "bottleneck": {"method": "bottleneck", "bottleneck": {"config": "houlsby", "reduction_factor": 4}},
    }[method]


@pytest.fixture(scope="module", params=["t5", "bart"])
def s2s(request, tmp_path_factory):
    """(family, folder, tokenizer, training examples) of one tiny encoder-decoder model."""
    folder = MAKE[request.param](tmp_path_factory.mktemp(request.param))
    tok = models.load_tokenizer(folder, padding_side="right")
    examples = [generation_metrics.encode_source_target(tok, s, t) for s, t in zip(SOURCES, TARGET_TEXTS)]
    return request.param, folder, tok, examples


def trained(s2s, tmp_path, method="lora", dtype="float32", **cfg):
    family, folder, tok, examples = s2s
    model = adapters.trainable_model(
        models.load_seq2seq_lm(folder, dict(SPEC, dtype=dtype)), finetune(method, family), "SEQ_2_SEQ_LM"
    )
    log = training.train(
        model,
        examples,
        examples,
        {**TRAIN, "learning_rate": LR.get(method, 0.05), **cfg},
        tmp_path / "ckpt",
        tok.pad_token_id,
        CPU,
        models.DTYPES[dtype],  # the matmuls in the base's dtype (autocast), as finetune.py trains
        task_type="SEQ_2_SEQ_LM",
    )
    return model.eval(), log


def assert_loss_falls(log, margin):
    """The loss on the (memorisation) set, evaluated before and after training, fell by `margin`."""
    losses = [e["val_loss"] for e in log["evals"]]
    assert losses[-1] < losses[0] - margin, losses


def ppl(model, tok):
    return generation_metrics.perplexity(model, tok, SOURCES, TARGET_TEXTS, batch_size=4)


# ---------------------------------------------------------------- loading, batches, loss


def test_the_kind_loads_the_checkpoint(s2s):
    from safetensors.torch import load_file

    family, folder, tok, _ = s2s
    kind = model_kinds.get("seq2seq")
    assert kind.GENERATES and not kind.PACKING and "qlora" not in kind.METHODS
    model = kind.load(folder, SPEC, task_type="SEQ_2_SEQ_LM")
    assert type(model).__name__ == {"t5": "T5ForConditionalGeneration", "bart": "BartForConditionalGeneration"}[family]
    assert inference.is_encoder_decoder(model) and not model.training
    saved = load_file(folder / "model.safetensors")
    params = dict(model.named_parameters())
    assert saved.keys() & params.keys(), "no saved weight found among the model parameters"
    assert all(torch.equal(params[k], v) for k, v in saved.items() if k in params)
    # the examples: source with the tokenizer's EOS, target with it too
    _, _, _, examples = s2s
    assert examples[0]["labels"][-1] == tok.eos_token_id and examples[0]["input_ids"][-1] == tok.eos_token_id


def test_batch_pads_source_and_target_apart_and_never_packs(s2s):
    _, folder, tok, examples = s2s
    chosen = examples[:3]
    batch = batching.make_batch(chosen, tok.pad_token_id, TRAIN, "SEQ_2_SEQ_LM")
    assert set(batch) == {"input_ids", "attention_mask", "labels"}  # padded, not packed
    assert batch["input_ids"].shape[1] == max(len(e["input_ids"]) for e in chosen)
    assert batch["labels"].shape[1] == max(len(e["labels"]) for e in chosen) != batch["input_ids"].shape[1]
    for row, e in enumerate(chosen):
        assert batch["labels"][row, : len(e["labels"])].tolist() == e["labels"]
        assert (batch["labels"][row, len(e["labels"]) :] == -100).all()
        assert batch["attention_mask"][row].sum() == len(e["input_ids"])
    n = sum(len(e["labels"]) for e in chosen)
    assert loss.n_loss_tokens(batch, "SEQ_2_SEQ_LM") == n
    assert batching.token_counts(chosen, batch, "SEQ_2_SEQ_LM")[0] == n + sum(len(e["input_ids"]) for e in chosen)
    # the loss is the model's mean cross-entropy over the target tokens, each row as alone
    model = models.load_seq2seq_lm(folder, SPEC)
    with torch.no_grad():
        got = float(loss.batch_loss(model, batch, "SEQ_2_SEQ_LM"))
        alone = [
            float(model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]])).loss)
            * len(e["labels"])
            for e in chosen
        ]
    assert got == pytest.approx(sum(alone) / n, rel=1e-5)


# ---------------------------------------------------------------- fine-tuning


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "prompt_tuning", "prefix_tuning", "full", "bottleneck"])
def test_method_trains_saves_and_reloads(s2s, tmp_path, method):
    family, folder, tok, examples = s2s
    model, log = trained(s2s, tmp_path, method)
    assert_loss_falls(log, margin=0.1 if method in ("lora", "dora", "full") else 0.01)
    assert log["packing"] is False
    out = tmp_path / "adapter"
    out.mkdir()
    adapters.save_trained(model, out, method, folder)
    names = {p.name for p in out.iterdir()}
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names
    if method == "full":
        assert {"config.json", "model.safetensors"} <= names and "adapter_config.json" not in names
    elif method == "bottleneck":
        assert names == {"bottleneck_config.json", "bottleneck_model.safetensors"}
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= names
        assert json.loads((out / "adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    reloaded = model_kinds.get("seq2seq").load(folder, SPEC, adapter=out)
    before, after = ppl(model, tok), ppl(reloaded, tok)
    assert after["per_example"] == pytest.approx(before["per_example"], rel=1e-5)
    prompts = [e["input_ids"] for e in examples]
    d = {"max_new_tokens": 5, "batch_size": 4}
    assert inference.generate(reloaded, tok, prompts, d, progress=False) == inference.generate(
        model, tok, prompts, d, progress=False
    )


@pytest.mark.parametrize("method", [None, "lora"])
def test_greedy_generation_batched_equals_one_at_a_time(s2s, tmp_path, method):
    """Right-padded encoder inputs: a prompt's output never depends on its batch (float32), untrained
    and through a trained PEFT model."""
    _, folder, tok, examples = s2s
    model = trained(s2s, tmp_path, method)[0] if method else models.load_seq2seq_lm(folder, SPEC)
    prompts = [e["input_ids"] for e in examples]
    d = {"max_new_tokens": 6, "batch_size": 4}
    batched = inference.generate(model, tok, prompts, d, progress=False, with_ids=True)
    single = [
        inference.generate(model, tok, [p], dict(d, batch_size=1), progress=False, with_ids=True)[0] for p in prompts
    ]
    assert batched == single
    for text, ids in batched:  # no decoder start token, no padding or EOS in the new ids
        assert tok.pad_token_id not in ids and (not ids or ids[-1] != tok.eos_token_id)
        assert text == tok.decode(ids, skip_special_tokens=True)
    if method is None:  # the random models do write something
        assert all(len(ids) == 6 for _, ids in batched)


def test_resume_gives_the_uninterrupted_weights(s2s, tmp_path):
    family, folder, tok, examples = s2s
    a, log_a = trained(s2s, tmp_path / "a", max_steps=6, checkpoint_every=1, eval_every=2)
    kept = tmp_path / "b" / "ckpt"
    kept.mkdir(parents=True)
    assert sorted(p.name for p in (tmp_path / "a" / "ckpt").iterdir()) == ["step-00000005", "step-00000006"]
    shutil.copytree(tmp_path / "a" / "ckpt" / "step-00000005", kept / "step-00000005")  # killed after step 5
    torch.manual_seed(999)  # another RNG state: the checkpoint restores it
    b, log_b = trained(s2s, tmp_path / "b", max_steps=6, checkpoint_every=1, eval_every=2)
    assert log_b["resumed_from"] == [5] and log_b["final_step"] == 6
    assert [h["train_loss"] for h in log_b["history"]] == pytest.approx([h["train_loss"] for h in log_a["history"]])
    wa, wb = checkpoints.trainable_state(a), checkpoints.trainable_state(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    assert log_b["real_tokens"] == log_a["real_tokens"] and log_b["computed_tokens"] == log_a["computed_tokens"]


# ---------------------------------------------------------------- perplexity, precision


def test_perplexity_matches_the_models_own_loss(s2s):
    _, folder, tok, examples = s2s
    model = models.load_seq2seq_lm(folder, SPEC)
    got = generation_metrics.perplexity(model, tok, SOURCES, TARGET_TEXTS, batch_size=4)  # batches of mixed lengths
    total_nll, total_n, per = 0.0, 0, []
    with torch.no_grad():
        for s, t in zip(SOURCES, TARGET_TEXTS):
            labels = tok(t)["input_ids"]  # every reference token, the EOS included
            out = model(input_ids=torch.tensor([tok(s)["input_ids"]]), labels=torch.tensor([labels]))
            per.append(math.exp(float(out.loss)))
            total_nll += float(out.loss) * len(labels)
            total_n += len(labels)
    assert got["per_example"] == pytest.approx(per, rel=1e-4)
    assert got["corpus"] == pytest.approx(math.exp(total_nll / total_n), rel=1e-4)
    assert got["n_tokens"] == total_n == sum(len(e["labels"]) for e in examples)


def test_bfloat16_loss_is_near_float32(s2s, tmp_path):
    """bf16 base weights and matmuls (what dtype: auto gives on a GPU) against float32: the
    validation loss of the random model (about 11.5 nats) within 0.5%, and after the same LoRA
    training (float32 LoRA weights on the bf16 base) within 2%."""
    _, folder, tok, examples = s2s
    untrained, after = {}, {}
    for dtype in ("float32", "bfloat16"):
        model = models.load_seq2seq_lm(folder, dict(SPEC, dtype=dtype))
        assert next(model.parameters()).dtype == models.DTYPES[dtype]
        untrained[dtype] = training.evaluate(
            model, examples, 3, tok.pad_token_id, CPU, models.DTYPES[dtype], task_type="SEQ_2_SEQ_LM"
        )
        model, log = trained(s2s, tmp_path / dtype, dtype=dtype)
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
        after[dtype] = log["evals"][-1]["val_loss"]
    assert math.isfinite(untrained["bfloat16"]) and math.isfinite(after["bfloat16"])
    assert untrained["bfloat16"] == pytest.approx(untrained["float32"], rel=0.005)
    assert after["bfloat16"] == pytest.approx(after["float32"], rel=0.02), after
    assert after["bfloat16"] < untrained["bfloat16"] - 0.5


# ---------------------------------------------------------------- the hub path, offline

_MATERIALIZE = textwrap.dedent("""
    import sys
    from finetune_study import model_kinds, models
    spec = {"type": "seq2seq", "hub_id": sys.argv[1], "trust_remote_code": False, "dtype": "auto"}
    models.materialize(spec, True, sys.argv[2], model_kinds.get("seq2seq"))
""")


def test_hub_id_is_prepared_from_the_cache_offline(tmp_path):
    """A seq2seq hub id, cached as huggingface_hub leaves it (test_hub_cache.cache_model), is
    prepared offline (models.materialize, AutoModelForSeq2SeqLM) into the same safetensors."""
    from safetensors.torch import load_file
    from test_hub_cache import cache_model, offline_env

    hub_id = "tinyorg/tiny-t5"
    snapshot = cache_model(tmp_path / "hf_home" / "hub", hub_id, tiny.make_tiny_t5(tmp_path / "built"))
    out = tmp_path / "prepared"
    env = dict(os.environ, **offline_env(tmp_path / "hf_home"))
    proc = subprocess.run(
        [sys.executable, "-c", _MATERIALIZE, hub_id, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"loading {hub_id}" in proc.stdout
    prepared, cached = load_file(out / "model.safetensors"), load_file(snapshot / "model.safetensors")
    assert set(prepared) == set(cached) and all(prepared[k].equal(v) for k, v in cached.items())
    model = models.load_seq2seq_lm(out, SPEC)
    assert inference.is_encoder_decoder(model)
