"""Bottleneck adapters (method bottleneck, finetune_study/bottleneck.py), in process and cheap.

Parameter counts against the papers' (computed by hand from the architecture, models built on the
meta device from their configs, no weights), where each config puts its adapters in every
architecture the workflow knows, that every setting reaches the module it configures, that a fresh
adapter is the identity and a saved one reloads to the same predictions exactly, resuming, and the
config side: one key per adapter whatever its spelling, the reduction factor as a grid key, and
bad settings as one line at parse time. Training, saving and reloading through each model kind:
tests/test_methods.py and tests/test_seq2seq.py; the pipeline rows: tests/test_methods.py.
"""

import copy
import shutil

import pytest
import torch

import tiny
from finetune_study import adapters, keys, model_kinds, models, runs, training
from finetune_study import config as cfg
from finetune_study.common import ConfigError, PipelineError

SPEC = {"type": "causal_lm", "trust_remote_code": False, "dtype": "float32"}
SCHEMA = tiny.REPO / "schemas" / "config.schema.yaml"


def on_meta(build):
    with torch.device("meta"):
        return build()


def with_bottleneck(model, task_type="CAUSAL_LM", **settings):
    block = {"config": "pfeiffer", "reduction_factor": 16, **settings}
    return adapters.trainable_model(model, {"method": "bottleneck", "bottleneck": block}, task_type)


def adapted(model):
    """{module name: the width of the adapter after it} of every module carrying one."""
    return {
        n[: -len(".bottleneck")]: m.down.out_features for n, m in model.named_modules() if n.endswith(".bottleneck")
    }


# ---------------------------------------------------------------- sizes and places


def test_parameter_counts_are_the_papers_on_bert_base_and_gpt2():
    from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

    # BERT-base: 12 layers of hidden 768. Pfeiffer at reduction 16: one adapter per layer, down
    # 768 -> 48 (+48 biases) and up 48 -> 768 (+768 biases) = 74,544; x 12 = 894,528 (the paper's 0.9 M)
    for config, rf, want in [("pfeiffer", 16, 894_528), ("houlsby", 16, 1_789_056), ("seq_bn", 8, 1_779_840)]:
        model = with_bottleneck(
            on_meta(lambda: BertModel(BertConfig())), "FEATURE_EXTRACTION", config=config, reduction_factor=rf
        )
        assert adapters.parameter_counts(model)["trainable"] == want
    assert abs(894_528 - 0.9e6) < 0.01e6
    # GPT-2 small, its Conv1D projections: the same widths, so the same counts
    gpt2 = with_bottleneck(on_meta(lambda: GPT2LMHeadModel(GPT2Config())), config="double_seq_bn")
    counts = adapters.parameter_counts(gpt2)
    assert counts["trainable"] == 1_789_056 and counts["total"] == 124_439_808 + 1_789_056  # GPT-2's 124.4 M


def tiny_models():
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        BertConfig,
        BertForSequenceClassification,
        DistilBertConfig,
        DistilBertForSequenceClassification,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        M2M100Config,
        M2M100ForConditionalGeneration,
        PhiConfig,
        PhiForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    small = {"vocab_size": 64}
    encoder_decoder = {"d_model": 16, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32}
    encoder_decoder |= {f"{side}_{n}": 2 for side in ("encoder", "decoder") for n in ("layers", "attention_heads")}
    return {
        "bert": BertForSequenceClassification(
            BertConfig(**small, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
        ),
        "distilbert": DistilBertForSequenceClassification(
            DistilBertConfig(**small, dim=16, hidden_dim=32, n_layers=2, n_heads=2)
        ),
        "gpt2": GPT2LMHeadModel(GPT2Config(**small, n_embd=16, n_layer=2, n_head=2)),
        "llama": LlamaForCausalLM(
            LlamaConfig(**small, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
        ),
        "t5": T5ForConditionalGeneration(
            T5Config(**small, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_decoder_layers=2, num_heads=2)
        ),
        "phi": PhiForCausalLM(
            PhiConfig(**small, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
        ),
        "m2m_100": M2M100ForConditionalGeneration(M2M100Config(**small, **encoder_decoder)),
        "bart": BartForConditionalGeneration(BartConfig(**small, **encoder_decoder)),
    }


# every attention output (self- and cross-attention) and every feed-forward output, by hand, per layer
ATTENTION = {
    "bert": ["bert.encoder.layer.{i}.attention.output.dense"],
    "distilbert": ["distilbert.transformer.layer.{i}.attention.out_lin"],
    "gpt2": ["transformer.h.{i}.attn.c_proj"],
    "llama": ["model.layers.{i}.self_attn.o_proj"],
    "phi": ["model.layers.{i}.self_attn.dense"],
    "m2m_100": [
        "model.encoder.layers.{i}.self_attn.out_proj",
        "model.decoder.layers.{i}.self_attn.out_proj",
        "model.decoder.layers.{i}.encoder_attn.out_proj",
    ],
    "t5": [
        "encoder.block.{i}.layer.0.SelfAttention.o",
        "decoder.block.{i}.layer.0.SelfAttention.o",
        "decoder.block.{i}.layer.1.EncDecAttention.o",
    ],
    "bart": [
        "model.encoder.layers.{i}.self_attn.out_proj",
        "model.decoder.layers.{i}.self_attn.out_proj",
        "model.decoder.layers.{i}.encoder_attn.out_proj",
    ],
}
FFN = {
    "bert": ["bert.encoder.layer.{i}.output.dense"],
    "distilbert": ["distilbert.transformer.layer.{i}.ffn.lin2"],
    "gpt2": ["transformer.h.{i}.mlp.c_proj"],
    "llama": ["model.layers.{i}.mlp.down_proj"],
    "phi": ["model.layers.{i}.mlp.fc2"],
    "m2m_100": ["model.encoder.layers.{i}.fc2", "model.decoder.layers.{i}.fc2"],
    "t5": ["encoder.block.{i}.layer.1.DenseReluDense.wo", "decoder.block.{i}.layer.2.DenseReluDense.wo"],
    "bart": ["model.encoder.layers.{i}.fc2", "model.decoder.layers.{i}.fc2"],
}


def test_houlsby_adds_after_attention_and_feed_forward_pfeiffer_after_feed_forward_only():
    built = {c: on_meta(tiny_models) for c in ("houlsby", "pfeiffer")}
    for arch in ATTENTION:
        task = "SEQ_CLS" if arch in ("bert", "distilbert") else "CAUSAL_LM"
        ffn = {p.format(i=i) for p in FFN[arch] for i in range(2)}
        attention = {p.format(i=i) for p in ATTENTION[arch] for i in range(2)}
        for config, want in (("houlsby", attention | ffn), ("pfeiffer", ffn)):
            got = adapted(with_bottleneck(built[config][arch], task, config=config, reduction_factor=4))
            assert set(got) == want, (arch, config)
            assert set(got.values()) == {16 // 4}


# ---------------------------------------------------------------- every setting reaches the adapter


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return tiny.make_tiny_llama(tmp_path_factory.mktemp("llama"))


def test_each_setting_reaches_the_adapter(llama):
    def build(**settings):
        return with_bottleneck(models.load_causal_lm(llama, SPEC), **settings)

    # reduction_factor: the width, hidden 32 // rf (a fraction rounds down, as AdapterHub does)
    for rf, width in ((4, 8), (8, 4), (2.5, 12)):
        assert set(adapted(build(reduction_factor=rf)).values()) == {width}
    # non_linearity: the config's own when unset, else the one named
    acts = {
        (c, a): {type(m.act) for n, m in build(config=c, non_linearity=a).named_modules() if n.endswith("bottleneck")}
        for c, a in (("houlsby", None), ("pfeiffer", None), ("pfeiffer", "gelu"), ("houlsby", "tanh"))
    }
    assert acts == {
        ("houlsby", None): {torch.nn.SiLU},
        ("pfeiffer", None): {torch.nn.ReLU},
        ("pfeiffer", "gelu"): {torch.nn.GELU},
        ("houlsby", "tanh"): {torch.nn.Tanh},
    }
    # ffn_modules / attention_modules: other modules, their own widths (up_proj's 64 outputs)
    got = adapted(build(ffn_modules=["mlp.up_proj"], attention_modules=["self_attn.q_proj"], config="houlsby"))
    assert got == {
        **{f"model.layers.{i}.mlp.up_proj": 4 for i in range(2)},
        **{f"model.layers.{i}.self_attn.q_proj": 2 for i in range(2)},
    }
    with pytest.raises(PipelineError, match=r"no module named \['mlp.nothing'\].*bottleneck.ffn_modules"):
        build(ffn_modules=["mlp.nothing"])
    with pytest.raises(PipelineError, match="reduction_factor 64 leaves no bottleneck"):
        build(reduction_factor=64)


def test_an_unknown_architecture_names_the_settings_to_give():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    model = on_meta(
        lambda: GPTNeoXForCausalLM(
            GPTNeoXConfig(
                vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
            )
        )
    )
    with pytest.raises(
        PipelineError, match="'gpt_neox' model.*bottleneck.attention_modules and bottleneck.ffn_modules"
    ):
        with_bottleneck(model, config="houlsby")
    got = adapted(
        with_bottleneck(
            model, config="houlsby", attention_modules=["attention.dense"], ffn_modules=["mlp.dense_4h_to_h"]
        )
    )
    assert set(got) == {f"gpt_neox.layers.{i}.{m}" for i in range(2) for m in ("attention.dense", "mlp.dense_4h_to_h")}


# ---------------------------------------------------------------- identity at start, exact reload, resume


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_fresh_adapter_is_the_identity_and_the_saved_one_reloads_exactly(llama, tmp_path):
    ids = torch.arange(3, 40).reshape(1, -1)
    base = logits(models.load_causal_lm(llama, SPEC), ids)
    model = with_bottleneck(models.load_causal_lm(llama, SPEC), config="houlsby", reduction_factor=4).eval()
    assert torch.equal(logits(model, ids), base)  # up starts at zero
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # trained-like weights, every one of them
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    trained = logits(model, ids)
    assert not torch.allclose(trained, base, atol=1e-3)
    adapters.save_trained(model, tmp_path, "bottleneck", llama)
    assert torch.equal(logits(models.load_causal_lm(llama, SPEC, adapter=tmp_path), ids), trained)
    # what loads it names what is wrong: another model's adapter is one line
    other = tiny.make_tiny_llama(tmp_path / "other_model")
    (tmp_path / "other_model" / "config.json").write_text(
        (other / "config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 1')
    )
    with pytest.raises(PipelineError, match="does not fit this model"):
        models.load_causal_lm(tmp_path / "other_model", SPEC, adapter=tmp_path)


@pytest.mark.parametrize("task_type", ["SEQ_CLS", "TOKEN_CLS"])
def test_encoder_head_and_adapters_reload_exactly(tmp_path, task_type):
    load = {"SEQ_CLS": models.load_classifier, "TOKEN_CLS": models.load_token_classifier}[task_type]
    folder = tiny.make_tiny_bert(tmp_path / "bert")
    prepared = tmp_path / "prepared"
    models.materialize(
        {"type": "encoder", "trust_remote_code": False, "dtype": "float32", "source": {"path": str(folder)}},
        False,
        prepared,
        model_kinds.get("encoder"),
    )
    spec, labels = {"type": "encoder", "trust_remote_code": False, "dtype": "float32"}, ["a", "b", "c"]
    model = with_bottleneck(load(prepared, spec, labels, seed=0), task_type, config="houlsby", reduction_factor=4)
    trained_names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"classifier.weight", "classifier.bias"} <= trained_names
    assert all(".bottleneck." in n or n.startswith("classifier.") for n in trained_names)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)
    ids = torch.arange(5, 30).reshape(1, -1)
    want = logits(model.eval(), ids)
    (tmp_path / "adapter").mkdir()
    adapters.save_trained(model, tmp_path / "adapter", "bottleneck", prepared)
    got = logits(load(prepared, spec, labels, seed=9, adapter=tmp_path / "adapter"), ids)
    assert torch.equal(got, want)  # the head comes from the file, not from seed 9


def test_resume_gives_the_uninterrupted_weights(llama, tmp_path):
    tok = models.load_tokenizer(llama, padding_side="right")
    exs = [{"input_ids": (ids := tok(f"text {i} " + "x " * i)["input_ids"]), "labels": ids} for i in range(4)]
    cfg_ = {
        "seed": 0,
        "learning_rate": 0.01,
        "weight_decay": 0.0,
        "batch_size": 2,
        "epochs": 1,
        "max_steps": 3,
        "warmup_ratio": 0.0,
        "eval_every": 100,
        "patience": 100,
        "checkpoint_every": 1,
        "gradient_checkpointing": False,
    }

    def run(where):
        torch.manual_seed(0)
        model = with_bottleneck(models.load_causal_lm(llama, SPEC), config="houlsby", reduction_factor=4)
        log = training.train(model, exs, exs, cfg_, where, tok.pad_token_id, torch.device("cpu"), task_type="CAUSAL_LM")
        return model, log

    a, log_a = run(tmp_path / "a")
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "step-00000002", tmp_path / "b" / "step-00000002")  # killed after step 2
    b, log_b = run(tmp_path / "b")
    assert log_b["resumed_from"] == [2] and log_b["final_step"] == 3
    assert [h["train_loss"] for h in log_b["history"]] == pytest.approx([h["train_loss"] for h in log_a["history"]])
    wa = {n: p for n, p in a.named_parameters() if p.requires_grad}
    wb = {n: p for n, p in b.named_parameters() if p.requires_grad}
    assert wa.keys() == wb.keys() and all(".bottleneck." in n for n in wa)
    for n in wa:
        torch.testing.assert_close(wa[n], wb[n], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- config: keys, grid, parse-time errors


def config_with(*entries):
    config = tiny.tiny_config("/models", "/work")
    ft = config["tasks"]["emotion"]["finetune"]
    ft["tiny_llama"] = [ft["tiny_llama"], *entries]
    return config


def validated(config):
    """The config checked as if it came from a file named study.yaml."""
    return cfg.validate(copy.deepcopy(config), SCHEMA, files=(("study.yaml", copy.deepcopy(config)),))


def test_one_key_per_adapter_and_the_reduction_factor_as_a_grid_key():
    plain = validated(tiny.tiny_config("/models", "/work"))
    lora_key = keys.finetune_settings(plain, plain["tasks"]["emotion"], "tiny_llama", "lora-s0")

    def key(block):
        c = validated(config_with({"method": "bottleneck", "bottleneck": block}))
        assert keys.finetune_settings(c, c["tasks"]["emotion"], "tiny_llama", "lora-s0") == lora_key  # untouched
        return keys.finetune_settings(c, c["tasks"]["emotion"], "tiny_llama", "bottleneck-s0")["finetune"]

    default = key({})
    assert default["bottleneck"] == {"config": "pfeiffer", "reduction_factor": 16, "non_linearity": "relu"}
    assert "lora" not in default and "prompt" not in default
    assert key({"config": "seq_bn", "non_linearity": "relu"}) == default  # one adapter, one key
    assert key({"config": "double_seq_bn"}) == key({"config": "houlsby", "non_linearity": "swish"})
    assert key({"reduction_factor": 8}) != default and key({"config": "houlsby"}) != default

    c = validated(
        config_with(
            {
                "method": "bottleneck",
                "bottleneck": {"config": "houlsby"},
                "grid": {"bottleneck.reduction_factor": [8, 32]},
            }
        )
    )
    task = c["tasks"]["emotion"]
    points = [r for m, r in runs.methods(task) if m == "tiny_llama" and r.startswith("bottleneck")]
    assert points == ["bottleneck-rf8-s0", "bottleneck-rf32-s0"]
    rfs = [
        keys.finetune_settings(c, task, "tiny_llama", r)["finetune"]["bottleneck"]["reduction_factor"] for r in points
    ]
    assert rfs == [8, 32]


@pytest.mark.parametrize(
    "entry,message",
    [
        (
            {"method": "bottleneck", "bottleneck": {"config": "houlsbi"}},
            "study.yaml: tasks.emotion.finetune.tiny_llama[1].bottleneck.config: 'houlsbi' is not one of",
        ),
        (
            {"method": "bottleneck", "bottleneck": {"reduction_factor": 0.5}},
            "study.yaml: tasks.emotion.finetune.tiny_llama[1].bottleneck.reduction_factor: 0.5 is less than the minimum of 1",
        ),
        (
            {"method": "bottleneck", "bottleneck": {"reduction": 16}},
            "study.yaml: tasks.emotion.finetune.tiny_llama[1].bottleneck: unknown key 'reduction'; did you mean 'reduction_factor'?",
        ),
        (
            {"method": "ia3", "grid": {"bottleneck.reduction_factor": [8, 16]}},
            "study.yaml: tasks.emotion.finetune.tiny_llama[1].grid: ['bottleneck.reduction_factor'] not read by method ia3",
        ),
        (
            {"method": "bottleneck", "grid": {"bottleneck.reduction_factor": [0]}},
            "study.yaml: tasks.emotion.finetune.tiny_llama[1].grid: point rf0: bottleneck.reduction_factor: 0 is less "
            "than the minimum of 1",
        ),
    ],
    ids=["unknown config", "reduction below 1", "misspelt key", "grid key of another method", "grid point below 1"],
)
def test_bad_settings_are_one_line_naming_the_key(entry, message):
    with pytest.raises(ConfigError) as e:
        validated(config_with(entry))
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_unknown_architecture_without_module_names_is_a_parse_time_error(tmp_path):
    """preflight (parse time) reads the model's config.json: a bottleneck fine-tune of an architecture
    whose outputs are not known, without attention_modules / ffn_modules, is one line naming the key."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    from finetune_study import preflight

    folder = tmp_path / "neox"
    neox = GPTNeoXConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    GPTNeoXForCausalLM(neox).save_pretrained(folder, safe_serialization=True)
    config = tiny.tiny_config("/models", tmp_path / "work")
    config["models"]["tiny_neox"] = {"type": "causal_lm", "source": {"path": str(folder)}, "params_b": 0.001}
    task = config["tasks"]["emotion"]

    def error(block):
        task["finetune"] = {"tiny_neox": {"method": "bottleneck", "bottleneck": block}}
        checked = validated(config)
        try:
            preflight.check(checked, (("study.yaml", config),), results=tmp_path / "results")
        except ConfigError as e:
            return str(e)

    assert error({"config": "houlsby", "ffn_modules": ["mlp.dense_4h_to_h"]}) == (
        "study.yaml: tasks.emotion.finetune.tiny_neox.bottleneck: where a 'gpt_neox' model's attention and "
        "feed-forward outputs are is not known (model 'tiny_neox'); set bottleneck.attention_modules (module "
        "names, e.g. [mlp.dense_4h_to_h])"
    )
    assert "set bottleneck.ffn_modules (" in error({"config": "pfeiffer"})
    assert error({"config": "pfeiffer", "ffn_modules": ["mlp.dense_4h_to_h"]}) is None
    assert "bottleneck.ffn_modules: ['mlp.nothing'] not in model 'tiny_neox'" in error({"ffn_modules": ["mlp.nothing"]})
