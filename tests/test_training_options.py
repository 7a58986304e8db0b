"""The training block's step size and machinery: token-sized steps (tokens_per_step), fused
kernels (kernels: liger), gradient_checkpointing: auto and compile. Their parse-time checks, the
step arithmetic, what a real tiny fine-tune consumes per step, and the settings reaching the model.
The GPU-only ones carry the `gpu` marker and skip, saying why, where there is no CUDA."""

import copy
import importlib.util

import pytest
import torch

import tiny
from conftest import REPO
from finetune_study import adapters, batching, step_sizes, training, training_options
from finetune_study import config as cfg
from finetune_study.common import ConfigError

SCHEMA = REPO / "schemas" / "config.schema.yaml"
GIB = 2**30


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny.make_tiny_llama(tmp_path_factory.mktemp("llama"))
    return AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)


def _lora(llama, seed=0):
    """A LoRA copy without dropout (two layouts of one step then compute one function), with a
    non-zero B so the adapter changes the outputs."""
    torch.manual_seed(seed)
    m = adapters.lora_model(
        copy.deepcopy(llama[0]),
        {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "CAUSAL_LM",
    )
    for n, p in m.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    return m


def _examples(tok, n):
    from finetune_study import prompting

    out = []
    for i in range(n):
        prompt = f"Text: example number {i} " + "word " * (3 * i % 11) + "\nLabel:"
        ids, labels = prompting.encode_prompt_answer(tok, prompt, [" joy", " anger"][i % 2], max_length=64)
        out.append({"input_ids": ids, "labels": labels})
    return out


CFG = {
    "seed": 3,
    "learning_rate": 0.01,
    "weight_decay": 0.0,
    "batch_size": 4,
    "epochs": 1,
    "max_steps": None,
    "warmup_ratio": 0.0,
    "eval_every": 100,
    "patience": 10,
    "checkpoint_every": 100,
    "gradient_checkpointing": False,
    "max_length": 64,
}


# ---------------------------------------------------------------- parse time


def test_token_step_arithmetic_and_its_errors():
    t = {"tokens_per_step": 4096, "pack_length": 512, "gradient_accumulation": 2, "max_length": 256}
    assert step_sizes.token_step(t) == {"rows": 8, "micro_rows": 4, "pack_length": 512}
    assert step_sizes.token_step({**t, "pack_length": None, "max_length": 1024}) == {
        "rows": 4,
        "micro_rows": 2,
        "pack_length": 1024,
    }
    assert step_sizes.token_step({**t, "tokens_per_step": None}) is None
    with pytest.raises(ValueError, match="4000 is not a whole number of packed rows of 512 tokens"):
        step_sizes.token_step({**t, "tokens_per_step": 4000})
    with pytest.raises(ValueError, match="not a whole number"):
        step_sizes.token_step({**t, "tokens_per_step": 256})  # less than one row
    with pytest.raises(ValueError, match="3 rows of 512 tokens do not split into gradient_accumulation 2"):
        step_sizes.token_step({**t, "tokens_per_step": 1536})


def _config(tmp_path, **training):
    c = tiny.tiny_config(tmp_path / "models", tmp_path / "work")
    c["tasks"]["emotion"]["finetune"]["tiny_llama"]["training"].update(training)
    return c


def _error(config, monkeypatch, cuda="0"):
    monkeypatch.setenv("LORA_WF_CUDA", cuda)
    with pytest.raises(ConfigError) as err:
        _validate(config)
    return str(err.value)


def _validate(config):
    return cfg.validate(config, SCHEMA, files=(("config.yaml", copy.deepcopy(config)),))


def test_parse_time_errors_name_the_file_the_key_and_the_fix(tmp_path, monkeypatch):
    key = "config.yaml: tasks.emotion.finetune.tiny_llama.training"
    c = _config(tmp_path, tokens_per_step=1024)
    assert _error(c, monkeypatch).startswith(f"{key}.tokens_per_step: a token-sized step is made of packed rows;")
    c = _config(tmp_path, tokens_per_step=1000, packing=True, pack_length=256, max_length=256)
    assert _error(c, monkeypatch) == (
        f"{key}.tokens_per_step: 1000 is not a whole number of packed rows of 256 tokens (pack_length); "
        "make it a multiple of 256"
    )
    c = _config(tmp_path, tokens_per_step=1024, packing=True, pack_length=128, max_length=256)
    assert "max_length 256 is longer than a packed row (128 tokens)" in _error(c, monkeypatch)
    c = _config(tmp_path, kernels="liger")
    assert _error(c, monkeypatch).startswith(f"{key}.kernels: liger kernels need a CUDA GPU")
    if importlib.util.find_spec("liger_kernel") is None:  # a GPU machine without the extra
        assert "pip install -e '.[liger]'" in _error(c, monkeypatch, cuda="1")
    c = _config(tmp_path, gradient_checkpointing="maybe")
    assert "gradient_checkpointing: 'maybe' is not one of [False, True, 'auto']" in _error(c, monkeypatch)
    c = _config(tmp_path, tokens_per_step=1024, packing=True, pack_length=256, max_length=256, kernels="none")
    monkeypatch.setenv("LORA_WF_CUDA", "0")
    _validate(c)  # a valid token-sized step passes
    for setting in ("auto", True, False):
        _validate(_config(tmp_path, gradient_checkpointing=setting, compile=True))


def test_what_the_key_holds():
    from finetune_study import keys

    plain = keys._training_key({"batch_size": 8, "kernels": "none", "compile": False, "tokens_per_step": None}, 0)
    assert plain == {"batch_size": 8, "seed": 0}  # defaults add nothing: existing fine-tunes keep their keys
    set_ = keys._training_key(
        {"kernels": "liger", "compile": True, "tokens_per_step": 4096, "gradient_checkpointing": "auto"}, 0
    )
    assert set_ == {
        "kernels": "liger",
        "compile": True,
        "tokens_per_step": 4096,
        "gradient_checkpointing": "auto",
        "seed": 0,
    }


# ---------------------------------------------------------------- token-sized steps


def test_token_sized_steps_consume_tokens_per_step_and_split_equals_one_batch(llama, tmp_path):
    tok = llama[1]
    train, val = _examples(tok, 40), _examples(tok, 4)
    length, tokens = 64, 256  # 4 rows of 64 tokens a step
    rows = batching.pack_rows([len(e["input_ids"]) for e in train], length)
    steps = len(rows) // 4  # steps of full rows only
    assert steps >= 2
    logs, weights = [], []
    for accumulation in (1, 2):
        m = _lora(llama, seed=1)
        c = dict(CFG, packing=True, pack_length=length, tokens_per_step=tokens, gradient_accumulation=accumulation)
        logs.append(
            training.train(
                m,
                train,
                val,
                dict(c, max_steps=steps),
                tmp_path / str(accumulation),
                tok.eos_token_id,
                "cpu",
                task_type="CAUSAL_LM",
            )
        )
        weights.append({n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad})
    one, split = logs
    assert [h["tokens"] for h in one["history"]] == [tokens] * steps  # computed tokens per optimizer step
    assert [h["tokens"] for h in split["history"]] == [tokens] * steps
    assert one["computed_tokens"] == steps * tokens
    # the real tokens are the examples of the first `steps` x 4 rows of the epoch's row order, counted directly
    order = batching._epoch_order(len(rows), CFG["seed"], 0)[: steps * 4]
    assert one["real_tokens"] == split["real_tokens"] == sum(len(train[i]["input_ids"]) for r in order for i in rows[r])
    # two micro-batches of 2 rows, each weighted by its answer tokens, train as one batch of 4 rows
    assert [h["train_loss"] for h in split["history"]] == pytest.approx(
        [h["train_loss"] for h in one["history"]], rel=1e-5
    )
    for n in weights[0]:
        torch.testing.assert_close(weights[1][n], weights[0][n], rtol=1e-4, atol=1e-6)
    assert one["training_options"]["gradient_checkpointing"] == {
        "setting": False,
        "enabled": False,
        "reason": "set in the config",
    }


# ---------------------------------------------------------------- gradient_checkpointing: auto


def test_auto_checkpointing_rule_with_measured_numbers():
    decide = step_sizes.checkpointing_decision
    assert decide("auto", "cpu")[0] is False
    assert decide("auto", "cuda", 70 * GIB, 80 * GIB)[0] is True  # over 0.85 x 80 = 68 GiB
    assert decide("auto", "cuda", 67 * GIB, 80 * GIB)[0] is False
    assert decide("auto", "cuda", None, 80 * GIB, oom=True) == (
        True,
        "auto: one step without checkpointing ran out of GPU memory",
    )
    assert decide(True, "cpu") == (True, "set in the config") and decide(False, "cuda")[0] is False


def test_auto_checkpointing_decision_reaches_the_model(llama):
    def never():
        raise AssertionError("measured on a CPU")

    for device, measured, expect in (
        ("cuda", (70 * GIB, 80 * GIB, False), True),
        ("cuda", (10 * GIB, 80 * GIB, False), False),
        ("cpu", None, False),
    ):
        m = _lora(llama)
        got = training_options.decide_checkpointing(m, "auto", device, (lambda v=measured: v) if measured else never)
        assert got["enabled"] is expect
        assert m.get_base_model().is_gradient_checkpointing is expect


# ---------------------------------------------------------------- compile


def test_compile_reaches_the_decoder_stack_and_trains_as_eager(llama, tmp_path, monkeypatch):
    # inductor takes about a minute to compile on a 2-core CPU; aot_eager traces the same graphs
    # (dynamo and AOT autograd) without generating code
    monkeypatch.setattr(training_options, "COMPILE_BACKEND", "aot_eager")
    tok = llama[1]
    train, val = _examples(tok, 12), _examples(tok, 4)
    c = dict(CFG, packing=True, pack_length=128, tokens_per_step=256, max_steps=2)
    logs = {}
    for compiled in (False, True):
        m = _lora(llama, seed=2)
        logs[compiled] = training.train(
            m,
            train,
            val,
            dict(c, compile=compiled),
            tmp_path / str(compiled),
            tok.eos_token_id,
            "cpu",
            task_type="CAUSAL_LM",
        )
        assert (m.get_base_model().model._compiled_call_impl is not None) is compiled
    assert logs[True]["training_options"]["compile_backend"] == "aot_eager"
    assert [h["train_loss"] for h in logs[True]["history"]] == pytest.approx(
        [h["train_loss"] for h in logs[False]["history"]], rel=1e-5
    )
    assert logs[True]["best_val_loss"] == pytest.approx(logs[False]["best_val_loss"], rel=1e-5)


# ---------------------------------------------------------------- on a CUDA GPU


def _need_cuda(what):
    if not torch.cuda.is_available():
        pytest.skip(f"needs a CUDA GPU ({what}); none here")


@pytest.mark.gpu
def test_liger_fused_loss_equals_the_chunked_loss_on_cuda(llama):
    _need_cuda("Liger's Triton kernels")
    if importlib.util.find_spec("liger_kernel") is None:
        pytest.skip("liger-kernel is not installed (pip install -e '.[liger]')")
    from finetune_study.loss import causal_answer_loss

    tok = llama[1]
    batch = {k: v.cuda() for k, v in batching.collate_packed(_examples(tok, 8), tok.eos_token_id, 128).items()}
    out = []
    for kernels in ("none", "liger"):
        m = _lora(llama).cuda()
        if kernels == "liger":
            training_options.apply_liger(m)
        loss = causal_answer_loss(m, batch)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}
        out.append((loss.detach(), grads))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-4, atol=1e-5)
    for n in out[0][1]:
        torch.testing.assert_close(out[1][1][n], out[0][1][n], rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
def test_auto_checkpointing_measures_a_step_on_cuda_and_restores_the_rng(llama):
    _need_cuda("the step's peak memory")
    tok = llama[1]
    m = _lora(llama).cuda()
    stream = batching.stream(_examples(tok, 8), dict(CFG, batch_size=4), "CAUSAL_LM", tok.eos_token_id)
    before = torch.cuda.get_rng_state()
    peak, total, oom = training_options.measure_step(m, stream, "CAUSAL_LM", torch.device("cuda"), torch.float32)
    assert not oom and 0 < peak < total
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert all(p.grad is None for p in m.parameters())
