"""bf16 where the hardware has it: how `dtype: auto` resolves (from what the CPU reports), that the
resolved dtype is in every model stage key, that trained weights stay float32, and that bf16 and
float32 agree within stated tolerances on a tiny model (likelihood scoring, generation, one
training step), and where a bf16 fine-tune's attention computes in float32 (attention.py). Also
the thread count a model job takes under --cores 1 and --cores 2."""

import copy

import pytest
import torch

import tiny
from finetune_study import adapters, attention, common, inference, keys, precision, training
from finetune_study import config as cfg
from finetune_study.loss import batch_loss
from finetune_study.tasks import classification, generation

# The bf16-against-float32 checks below run on the CPU and, where there is one, on a CUDA GPU.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

X86_BF16 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
X86_AMX = "flags\t\t: fpu avx512f amx_tile amx_bf16 amx_int8\n"
X86_NONE = "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics bf16 i8mm\n"
ARM_NONE = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull\n"


def test_native_bf16_is_read_from_the_cpu_flags():
    assert precision.cpu_flags_have_bf16(X86_BF16)
    assert precision.cpu_flags_have_bf16(X86_AMX)
    assert precision.cpu_flags_have_bf16(ARM_BF16)
    assert not precision.cpu_flags_have_bf16(X86_NONE)
    assert not precision.cpu_flags_have_bf16(ARM_NONE)
    assert not precision.cpu_flags_have_bf16("model name\t: bf16 in a name is no flag\n")


@pytest.mark.parametrize("node", [True, False])
@pytest.mark.parametrize("visible,hidden", [("", True), ("-1", True), ("0", False), ("1,0", False), (None, False)])
def test_hidden_gpus_are_no_gpu(monkeypatch, visible, hidden, node):
    """CUDA_VISIBLE_DEVICES '' or -1 hides every GPU: dtype auto then reads the CPU alone. The NVIDIA
    device nodes are faked (present or absent), so the rule is checked on a machine without a GPU."""
    real_exists = precision.os.path.exists
    fake_nodes = {"/dev/nvidia0", "/dev/nvidiactl"} if node else set()
    monkeypatch.setattr(
        precision.os.path,
        "exists",
        lambda p: p in fake_nodes if str(p).startswith("/dev/nvidia") else real_exists(p),
    )
    if visible is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    precision.machine_has_gpu.cache_clear()
    try:
        expected = {(True, False): True, (True, True): False, (False, False): False, (False, True): False}
        assert precision.machine_has_gpu() is expected[(node, hidden)]
    finally:
        precision.machine_has_gpu.cache_clear()


@pytest.mark.parametrize(
    "cpu_bf16,gpu,gpus,expected",
    [
        (True, False, 0, "bfloat16"),
        (False, False, 0, "float32"),
        (False, False, 1, "bfloat16"),
        (False, True, 0, "bfloat16"),
    ],
)
def test_auto_resolves_to_bf16_where_the_hardware_has_it(monkeypatch, cpu_bf16, gpu, gpus, expected):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: cpu_bf16)
    monkeypatch.setattr(precision, "machine_has_gpu", lambda: gpu)
    assert precision.resolve("auto", gpus) == expected
    for explicit in ("float32", "bfloat16", "float16"):  # an explicit dtype always wins
        assert precision.resolve(explicit, gpus) == explicit


def _config():
    c = tiny.tiny_config("/nonexistent/models", "/tmp")
    return cfg.validate(c, tiny.REPO / "schemas" / "config.schema.yaml")


def test_every_model_stage_key_holds_the_resolved_dtype(monkeypatch):
    monkeypatch.setattr(precision, "machine_has_gpu", lambda: False)
    c = _config()
    task = c["tasks"]["emotion"]
    stage_keys = {}
    for bf16 in (False, True):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda bf16=bf16: bf16)
        stage_keys[bf16] = {
            "predict llama": classification.inference_settings(c, task, "tiny_llama", "zeroshot"),
            "predict bert": classification.inference_settings(c, task, "tiny_bert", "zeroshot"),
            "finetune llama": keys.finetune_settings(c, task, "tiny_llama", "lora-s0"),
            "finetune bert": keys.finetune_settings(c, task, "tiny_bert", "lora-s0"),
        }
        # the materialized checkpoint keeps its own dtype on disk: its key holds what was asked for
        assert keys.model_origin(c, c["models"]["tiny_llama"])["dtype"] == "auto"
    for stage in stage_keys[True]:
        assert stage_keys[False][stage] != stage_keys[True][stage], stage
        assert stage_keys[False][stage]["model"]["dtype"] == "float32"
        assert stage_keys[True][stage]["model"]["dtype"] == "bfloat16"
    # an explicit dtype is the same key on every machine
    explicit = copy.deepcopy(c)
    explicit["models"]["tiny_llama"]["dtype"] = "float32"
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert (
        classification.inference_settings(explicit, explicit["tasks"]["emotion"], "tiny_llama", "zeroshot")
        == stage_keys[False]["predict llama"]
    )


def test_a_full_fine_tune_keeps_float32_master_weights_under_auto():
    model = {"dtype": "auto"}
    assert precision.master_dtype(model, "full") == "float32"
    assert precision.master_dtype({"dtype": "bfloat16"}, "full") == "bfloat16"  # asked for: trains bf16 weights
    for method in ("lora", "dora", "ia3", "prompt_tuning", "prefix_tuning"):
        assert precision.master_dtype({"dtype": "bfloat16"}, method) == "float32"


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    return tiny.make_tiny_llama(tmp_path_factory.mktemp("models") / "llama", chat=False)


def _llama(folder, dtype, device="cpu"):
    from finetune_study import models

    spec = {"type": "causal_lm", "trust_remote_code": False, "dtype": dtype}
    return models.load_causal_lm(folder, spec).to(device)


def _prompts(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randint(10, 1000, (int(torch.randint(5, 30, (1,), generator=g)),), generator=g).tolist() for _ in range(n)
    ]


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_likelihood_scores_agree_with_float32(tiny_llama_dir, device):
    labels = [[11, 12], [300], [501, 502, 503], [77]]
    prompts = _prompts()
    scores = {
        d: torch.tensor(inference.label_logprobs(_llama(tiny_llama_dir, d, device), prompts, labels, 4, progress=False))
        for d in ("float32", "bfloat16")
    }
    # tolerance: bf16 keeps 8 bits of mantissa; a label's log-probability (-10 to -33 nats here,
    # spread 9 nats) may move by at most 0.02 nats (measured: 0.002)
    assert (scores["float32"] - scores["bfloat16"]).abs().max() < 0.02
    assert scores["float32"].std() > 1  # the labels really score differently


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_generation_follows_float32_logits(tiny_llama_dir, device):
    """Greedy generation in bf16: the first new token's logits are within a stated tolerance of
    float32 (0.005; measured 0.003, the logits' spread is 0.11), and every first token whose float32
    margin over the runner-up is clear (> 0.01, more than twice that) is the same."""
    prompts = _prompts(8, seed=1)
    logits = {}
    for d in ("float32", "bfloat16"):
        model = _llama(tiny_llama_dir, d, device)
        ids, mask = inference.left_padded(prompts, 0)
        with torch.no_grad():
            logits[d] = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits[:, -1].float().cpu()
        first = inference.generate(
            model,
            type("T", (), {"pad_token_id": 0, "decode": lambda self, x, **k: ""})(),
            prompts,
            {"max_new_tokens": 1, "batch_size": 4},
            progress=False,
            with_ids=True,
        )
        logits[d + "_tokens"] = [n[0] for _, n in first]
    assert (logits["float32"] - logits["bfloat16"]).abs().max() < 0.005
    top2 = logits["float32"].topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.01
    assert clear.sum() >= 3  # the check below compares something
    for i in torch.nonzero(clear).flatten().tolist():
        assert logits["float32_tokens"][i] == logits["bfloat16_tokens"][i] == int(logits["float32"][i].argmax())
    assert logits["float32_tokens"] == [int(t) for t in logits["float32"].argmax(-1)]


LLAMA_LORA = {"method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}}


def _causal_batch(ids, mask=None):
    labels = ids.clone()
    labels[:, : ids.shape[1] // 2] = -100  # the loss on the second half
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids) if mask is None else mask, "labels": labels}


def _lora_step(folder, dtype_name, batch, float32_attention=False, device="cpu"):
    """One LoRA backward pass of the tiny LLaMA loaded in dtype_name on `device`, under
    training.autocast: (model, loss, the trained weights' gradients, on the CPU). LoRA B starts at
    zero: it is given values here (drawn on the CPU, the same on every device), so that A's
    gradient is not zero either."""
    compute = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    model = adapters.trainable_model(_llama(folder, dtype_name), LLAMA_LORA, "CAUSAL_LM")
    if float32_attention:
        assert attention.use_float32_attention(model) == attention.NAME
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    for n, p in trained.items():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(1))
    model.to(device)
    with training.autocast(device, compute):
        loss = batch_loss(model, {k: v.to(device) for k, v in batch.items()}, "CAUSAL_LM")
    loss.backward()
    return model, loss, torch.cat([p.grad.flatten() for p in trained.values()]).cpu()


@pytest.mark.parametrize("device", DEVICES)
def test_one_bf16_training_step_matches_float32_and_trains_float32_weights(tiny_llama_dir, device):
    batch = _causal_batch(torch.tensor(_prompts(4, seed=2)[0][:20] * 2).view(2, -1))
    out = {}
    for d, compute in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        model, loss, grads = _lora_step(tiny_llama_dir, d, batch, device=device)
        trained = [p for p in model.parameters() if p.requires_grad]
        assert trained and all(p.dtype == torch.float32 for p in trained)  # float32 masters
        assert {p.dtype for p in model.parameters() if not p.requires_grad} == {compute}
        assert loss.dtype == torch.float32
        out[d] = (float(loss), grads)
    (l32, g32), (l16, g16) = out["float32"], out["bfloat16"]
    assert abs(l32 - l16) / l32 < 0.01  # loss within 1 %
    cosine = torch.nn.functional.cosine_similarity(g32, g16, dim=0)
    assert cosine > 0.98, cosine  # the same descent direction
    assert 0.8 < g16.norm() / g32.norm() < 1.25


@pytest.mark.parametrize(
    "dtype,gpus,gpu,requested,expected",
    [
        ("bfloat16", 0, False, "auto", "float32"),  # a bf16 fine-tune on a CPU: float32 attention
        ("bfloat16", 1, False, "auto", "bfloat16"),  # on a GPU node: the bf16 kernel
        ("bfloat16", 0, True, "auto", "bfloat16"),
        ("float32", 0, False, "auto", "float32"),
        ("bfloat16", 0, False, "compute", "bfloat16"),
        ("bfloat16", 1, False, "float32", "float32"),
    ],
)
def test_attention_dtype_resolves_per_machine(monkeypatch, dtype, gpus, gpu, requested, expected):
    monkeypatch.setattr(precision, "machine_has_gpu", lambda: gpu)
    model = {"dtype": dtype, "resources": {"gpus": gpus}}
    assert attention.resolve(requested, model) == expected


def test_attention_dtype_is_in_the_fine_tune_key_only_where_it_changes_the_run(monkeypatch):
    monkeypatch.setattr(precision, "machine_has_gpu", lambda: False)
    c = _config()

    def key(model_dtype, attention_dtype):
        c2 = copy.deepcopy(c)
        c2["models"]["tiny_llama"]["dtype"] = model_dtype
        c2["tasks"]["emotion"]["finetune"]["tiny_llama"]["training"]["attention_dtype"] = attention_dtype
        return keys.finetune_settings(c2, c2["tasks"]["emotion"], "tiny_llama", "lora-s0")

    assert key("bfloat16", "auto")["finetune"]["attention_dtype"] == "float32"
    assert "attention_dtype" not in key("bfloat16", "compute")["finetune"]
    assert key("bfloat16", "auto") != key("bfloat16", "compute")
    # a float32 fine-tune has one attention dtype: the setting is not in its key
    assert key("float32", "auto") == key("float32", "compute") == key("float32", "float32")
    assert "attention_dtype" not in key("float32", "auto")["finetune"]
    assert "attention_dtype" not in key("float32", "auto")["finetune"]["training"]


def test_float32_attention_holds_under_bf16_autocast():
    """The registered attention computes on float32 q/k/v even inside a bf16 autocast region (which
    would otherwise cast sdpa's inputs back down): the same values as torch's sdpa called directly on
    the float32 tensors, outside autocast."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 9, 16, generator=g).to(torch.bfloat16) for _ in range(3))
    mask = torch.tril(torch.ones(9, 9, dtype=torch.bool))[None, None].expand(2, 1, 9, 9).clone()
    mask[0, :, :, :3] = False  # left padding in row 0
    mask[0, :, :3, 0] = True  # a pad row sees one position (no all-masked row)

    class Layer(torch.nn.Module):
        is_causal = True

    direct = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = attention._sdpa_float32(Layer(), q, k, v, mask)
        down = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, direct.transpose(1, 2).to(torch.bfloat16))  # transformers returns (B, L, H, D)
    assert down.dtype == torch.bfloat16  # what autocast does to a plain sdpa call


def test_float32_attention_in_a_bf16_training_step_stays_near_float32(tiny_llama_dir):
    """One LoRA step of a bf16 model with float32 attention: the model runs the registered attention,
    and its loss and gradient agree with the float32 model's at least as closely as stated for bf16."""
    ids = torch.tensor(_prompts(4, seed=3)[1][:16] * 2).view(2, -1)
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # padding: the attention mask reaches the float32 kernel
    batch = _causal_batch(ids, mask)
    _, l32, g32 = _lora_step(tiny_llama_dir, "float32", batch)
    _, l16, g16 = _lora_step(tiny_llama_dir, "bfloat16", batch, float32_attention=True)
    assert abs(float(l32) - float(l16)) / float(l32) < 0.01
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0) > 0.98


def test_float32_attention_reaches_the_encoder_inside_a_mean_pooling_head():
    """A PEFT-wrapped mean-pooling classifier (the default study's MiniLM head) holds its encoder one
    level down: use_float32_attention finds it, and the bf16 logits stay near the float32 ones."""
    from transformers import BertConfig, BertModel

    from finetune_study.heads import MeanPoolingClassifier

    torch.manual_seed(0)
    encoder = BertModel(
        BertConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    )
    lora = {"method": "lora", "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"]}}
    ids = torch.randint(1, 64, (3, 11), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    logits = {}
    for d in (torch.float32, torch.bfloat16):
        model = adapters.trainable_model(
            MeanPoolingClassifier(copy.deepcopy(encoder).to(d), 3, seed=0), lora, "SEQ_CLS"
        )
        if d == torch.bfloat16:
            assert attention.implementation(model) == "sdpa"
            assert attention.use_float32_attention(model) == attention.NAME
        model.eval()
        with torch.no_grad(), training.autocast("cpu", d):
            logits[d] = model(input_ids=ids, attention_mask=mask).logits.float()
    assert torch.allclose(logits[torch.float32], logits[torch.bfloat16], atol=0.05), logits


@pytest.mark.parametrize("maker,targets", [("make_tiny_t5", ["q", "v"]), ("make_tiny_bart", ["q_proj", "v_proj"])])
def test_float32_attention_in_a_bf16_seq2seq_training_step(tmp_path, maker, targets):
    """Encoder-decoder models through the float32 attention: T5's additive position bias joins the
    mask in float32 too. One LoRA step's loss within 1 % of the float32 model's."""
    from finetune_study import models

    folder = getattr(tiny, maker)(tmp_path / maker)
    spec = {"type": "seq2seq_lm", "trust_remote_code": False}
    g = torch.Generator().manual_seed(5)
    src, tgt = torch.randint(5, 200, (2, 9), generator=g), torch.randint(5, 200, (2, 6), generator=g)
    mask = torch.ones_like(src)
    mask[1, 6:] = 0
    batch = {"input_ids": src, "attention_mask": mask, "labels": tgt}
    lora = {
        "method": "lora",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": targets},
    }
    losses = {}
    for d, compute in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        torch.manual_seed(0)
        model = adapters.trainable_model(models.load_seq2seq_lm(folder, {**spec, "dtype": d}), lora, "SEQ_2_SEQ_LM")
        if d == "bfloat16":
            assert attention.use_float32_attention(model) == attention.NAME
        model.train()
        with training.autocast("cpu", compute):
            loss = batch_loss(model, batch, "SEQ_2_SEQ_LM")
        loss.backward()
        losses[d] = float(loss)
    assert abs(losses["float32"] - losses["bfloat16"]) / losses["float32"] < 0.01, losses


@pytest.mark.parametrize(
    "torch_threads,job,affinity,cores,expected",
    [
        (0, 1, 2, 1, 2),  # --cores 1 on 2 cores: the one running job takes both
        (0, 1, 2, 2, 1),  # --cores 2: two one-thread jobs side by side
        (0, 2, 2, 2, 2),  # a rule asking for 2 threads under --cores 2
        (0, 4, 4, 4, 4),  # SLURM job with cpus_per_task 4 (its inner snakemake has --cores 4)
        (0, 1, 16, 4, 4),  # 16 cores, --cores 4: four jobs of four threads
        (3, 1, 16, 1, 3),  # torch_threads wins
    ],
)
def test_model_jobs_split_the_cores_by_concurrent_jobs(torch_threads, job, affinity, cores, expected):
    assert common.cpu_threads({"torch_threads": torch_threads}, job, affinity, cores) == expected


def test_batch_size_is_in_the_keys_only_where_outputs_depend_on_it(monkeypatch, tiny_llama_dir):
    """float32 outputs are batch-invariant up to float rounding (tests/test_inference_training.py);
    bf16 likelihood scores move with the batch's padding a hundred times more (measured here), so
    under bf16 the batch size is in the key."""
    monkeypatch.setattr(precision, "machine_has_gpu", lambda: False)
    c = _config()
    task = c["tasks"]["emotion"]
    for bf16, expected in ((False, None), (True, task["decoding"]["batch_size"])):
        monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda bf16=bf16: bf16)
        for model in ("tiny_llama", "tiny_bert"):
            assert classification.inference_settings(c, task, model, "zeroshot").get("batch_size") == expected
        point = {"max_new_tokens": 4, "batch_size": 5}
        gen_task = {k: v for k, v in task.items() if k != "decoding"}  # a generation task has decodings instead
        gen = generation.generation_settings(c, dict(gen_task, prompt_style="alpaca"), "tiny_llama", point)
        assert gen["decoding"].get("batch_size") == (5 if bf16 else None)
    labels, prompts = [[11, 12], [300], [501, 502, 503]], _prompts(16, seed=3)
    diffs = {}
    for d in ("float32", "bfloat16"):
        model = _llama(tiny_llama_dir, d)
        one, eight = (torch.tensor(inference.label_logprobs(model, prompts, labels, b, progress=False)) for b in (1, 8))
        diffs[d] = float((one - eight).abs().max())
    # float32: at most float rounding of a multi-threaded reduction (0 to 2e-6 measured); bf16: 3e-4
    assert diffs["float32"] < 1e-5 < diffs["bfloat16"]
