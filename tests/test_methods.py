"""Fine-tuning methods beyond LoRA (lora, dora, ia3, prompt_tuning, prefix_tuning, full; qlora on CUDA).

On the tiny models of tests/tiny.py, for every CPU-capable method: the real training loop lowers the
loss on a fixed batch, the trainable parameters are exactly the method's (counted independently
from the model's shape), the saved artifact is in the promised format and reloads with plain PEFT /
transformers, and predictions through the reloaded artifact equal those taken in-process. A
prompt-learning model's virtual tokens are added by our own code in the loss and in label
scoring; those numbers are checked against PEFT's own forward. Then the config side: qlora without
CUDA stops `snakemake -n` at parse time, the method checks name the key, and one tiny pipeline
run with two methods of one model gives two rows (report and metrics.csv) with their parameter
counts and Snakemake benchmark timings, while adding a method plans only that method's jobs.

qlora itself cannot be trained here (no CUDA GPU, no bitsandbytes); what is tested is that it is
refused before anything imports bitsandbytes.
"""

import copy
import csv
import json
import sys

import pytest
import torch

import tiny
from finetune_study import (
    adapters,
    batching,
    bottleneck,
    heads,
    inference,
    keys,
    model_kinds,
    models,
    prompting,
    runs,
    training,
)

SPEC = {"type": "causal_lm", "trust_remote_code": False, "dtype": "float32"}
ENC_SPEC = {"type": "encoder", "trust_remote_code": False, "dtype": "float32"}
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
V = 4  # virtual tokens of prompt and prefix tuning
FINETUNES = {
    "lora": {"method": "lora", "lora": LORA},
    "dora": {"method": "dora", "lora": LORA},
    "ia3": {"method": "ia3", "ia3": {"target_modules": None, "feedforward_modules": None}},
    "prompt_tuning": {"method": "prompt_tuning", "prompt": {"num_virtual_tokens": V}},
    "prefix_tuning": {"method": "prefix_tuning", "prompt": {"num_virtual_tokens": V}},
    "full": {"method": "full"},
    "bottleneck": {"method": "bottleneck", "bottleneck": {"config": "houlsby", "reduction_factor": 4}},
}
CAUSAL_METHODS = list(FINETUNES)
TRAIN = {
    "seed": 0,
    "learning_rate": 0.05,
    "weight_decay": 0.0,
    "batch_size": 8,
    "epochs": 1,
    "max_steps": 12,
    "warmup_ratio": 0.0,
    "eval_every": 100,
    "patience": 100,
    "checkpoint_every": 1000,
    "gradient_checkpointing": False,
}
LR = {"full": 0.003}  # every weight moves: a smaller step
LABELS = [" joy", " anger", " melancholy"]  # of different token lengths


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    folder = tiny.make_tiny_llama(tmp_path_factory.mktemp("llama"))
    return folder, models.load_tokenizer(folder, padding_side="right"), json.loads((folder / "config.json").read_text())


def expected_trainable(method, cfg, base_params):
    """The method's trainable parameters, from the model's shape alone (not from the model)."""
    h, layers, ff = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])  # k/v projection width
    r, b = LORA["r"], h // 4  # b: the bottleneck's width at reduction factor 4
    lora = layers * (r * (h + h) + r * (h + kv))  # A (r x in) + B (out x r) on q_proj (h -> h) and v_proj (h -> kv)
    return {
        "lora": lora,
        "dora": lora + layers * (h + kv),  # + a magnitude per output feature of q_proj and v_proj
        "ia3": layers * (kv + kv + ff),  # PEFT's LLaMA default: k_proj, v_proj outputs, down_proj input
        "prompt_tuning": V * h,  # one embedding per virtual token
        "prefix_tuning": V * layers * 2 * kv,  # a key and a value per virtual token and layer
        "full": base_params,
        # houlsby: down (h -> b, + bias) and up (b -> h, + bias) after o_proj and after down_proj
        "bottleneck": layers * 2 * (h * b + b + b * h + h),
    }[method]


def examples(tok, n=8):
    out = []
    for i in range(n):
        ids, lab = prompting.encode_prompt_answer(
            tok, f"Text: example {i} " + "x " * (i % 5) + "\nLabel:", [" joy", " anger"][i % 2], max_length=64
        )
        out.append({"input_ids": ids, "labels": lab})
    return out


def prompts_and_labels(tok):
    prompts = [tok(f"Text: example {i} " + "y " * i + "\nLabel:")["input_ids"] for i in range(5)]
    return prompts, [tok(a, add_special_tokens=False)["input_ids"] for a in LABELS]


def assert_loss_falls(log, margin=0.02):
    losses = [h["train_loss"] for h in log["history"]]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - margin, losses


def assert_safetensors_only(folder):
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))], names
    return names


# ---------------------------------------------------------------- causal LM: every CPU method


@pytest.mark.parametrize("method", CAUSAL_METHODS)
def test_causal_method_trains_saves_and_reloads(llama, tmp_path, method):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder, tok, cfg = llama
    base = models.load_causal_lm(folder, SPEC)
    base_params = n_params(base)
    embed_before = base.get_input_embeddings().weight.detach().clone()
    model = adapters.trainable_model(base, FINETUNES[method], "CAUSAL_LM")
    counts = adapters.parameter_counts(model)
    want = expected_trainable(method, cfg, base_params)
    assert counts["trainable"] == want
    assert counts["total"] == base_params + (0 if method == "full" else want)
    assert counts["trainable_share"] == pytest.approx(want / counts["total"])

    log = training.train(
        model,
        examples(tok),
        examples(tok),
        dict(TRAIN, learning_rate=LR.get(method, 0.05)),
        tmp_path / "ckpt",
        tok.pad_token_id,
        torch.device("cpu"),
        task_type="CAUSAL_LM",
    )
    assert_loss_falls(log)
    embeddings_moved = not torch.equal(model.get_input_embeddings().weight, embed_before)
    assert embeddings_moved == (method == "full")  # the base stays frozen under every PEFT method

    model.eval()
    prompts, label_ids = prompts_and_labels(tok)
    in_process = inference.label_logprobs(model, prompts, label_ids, batch_size=3, progress=False)
    out = tmp_path / "adapter"
    out.mkdir()
    adapters.save_trained(model, out, method, folder)
    names = assert_safetensors_only(out)
    if method == "full":
        assert {"config.json", "model.safetensors"} <= set(names) and "adapter_config.json" not in names
        reloaded = AutoModelForCausalLM.from_pretrained(out, use_safetensors=True).eval()
    elif method == "bottleneck":  # its own format: settings + the trained tensors (bottleneck.py)
        assert names == ["bottleneck_config.json", "bottleneck_model.safetensors"]
        reloaded = bottleneck.load(models.load_causal_lm(folder, SPEC), out).eval()
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(names)
        peft_type = json.loads((out / "adapter_config.json").read_text())["peft_type"]
        assert peft_type == {"dora": "LORA"}.get(method, method.upper())
        fresh = models.load_causal_lm(folder, SPEC)
        reloaded = PeftModel.from_pretrained(fresh, out).eval()
    for got in (
        inference.label_logprobs(reloaded, prompts, label_ids, batch_size=2, progress=False),
        inference.label_logprobs(
            models.load_causal_lm(folder, SPEC, adapter=out), prompts, label_ids, batch_size=5, progress=False
        ),
    ):
        torch.testing.assert_close(torch.tensor(got), torch.tensor(in_process), atol=1e-5, rtol=0)
    if method in ("prompt_tuning", "full"):  # generation goes through PEFT's own generate for prompt tuning
        d = {"max_new_tokens": 3, "batch_size": 2}
        assert inference.generate(reloaded, tok, prompts, d, progress=False) == inference.generate(
            model, tok, prompts, dict(d, batch_size=5), progress=False
        )


@pytest.mark.parametrize("method", ["prompt_tuning", "prefix_tuning"])
def test_virtual_tokens_match_peft_forward(llama, method):
    """Our own placement of the virtual tokens (label scoring with a 4D mask and left padding, and
    the training loss on a right-padded batch) gives PEFT's forward numbers on each unpadded input."""
    from finetune_study import batching, loss

    folder, tok, _ = llama
    torch.manual_seed(1)
    model = adapters.trainable_model(models.load_causal_lm(folder, SPEC), FINETUNES[method], "CAUSAL_LM").eval()
    prompts, label_ids = prompts_and_labels(tok)
    scores = inference.label_logprobs(model, prompts, label_ids, batch_size=3, progress=False)
    with torch.no_grad():
        for p, row in zip(prompts, scores, strict=True):
            direct = []
            for lab in label_ids:
                logits = model(input_ids=torch.tensor([p + lab])).logits[0, -len(p + lab) :]  # drop virtual positions
                logp = torch.log_softmax(logits.float(), -1)
                direct.append(sum(float(logp[len(p) - 1 + k, t]) for k, t in enumerate(lab)))
            assert row == pytest.approx(direct, abs=1e-4)
        exs = examples(tok, 5)
        nll, rows = loss.answer_token_nll(model, batching.collate(exs, tok.pad_token_id))
        per_row = torch.zeros(len(exs)).index_add_(0, rows, nll)
        for i, e in enumerate(exs):
            out = model(input_ids=torch.tensor([e["input_ids"]]), labels=torch.tensor([e["labels"]]))
            n = sum(t != -100 for t in e["labels"][1:])
            assert float(per_row[i]) == pytest.approx(float(out.loss) * n, rel=1e-4)


def test_virtual_tokens_refuse_packed_batches(llama):
    from finetune_study import batching, loss

    folder, tok, _ = llama
    model = adapters.trainable_model(models.load_causal_lm(folder, SPEC), FINETUNES["prompt_tuning"], "CAUSAL_LM")
    with pytest.raises(ValueError, match="packed"):
        loss.answer_token_nll(model, batching.collate_packed(examples(tok, 4), tok.pad_token_id, 128))


# ---------------------------------------------------------------- encoder: lora and full


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    """A tiny BERT prepared twice: as a plain checkpoint (CLS pooler) and with a sentence-transformers
    layout (mean pooling, head.json)."""
    base = tmp_path_factory.mktemp("bert")
    plain = tiny.make_tiny_bert(base / "plain")
    st = tiny.make_tiny_bert(base / "st")
    (st / "modules.json").write_text(
        json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
    )
    (st / "1_Pooling").mkdir()
    (st / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    out = {}
    for name, src in (("cls", plain), ("mean", st)):
        out[name] = base / f"prepared_{name}"
        models.materialize(dict(ENC_SPEC, source={"path": str(src)}), False, out[name], model_kinds.get("encoder"))
    return out


ENC_LABELS = ["sadness", "joy", "anger"]
ENC_FINETUNES = {
    "lora": {"method": "lora", "lora": dict(LORA, target_modules=["query", "value"])},
    "full": {"method": "full"},
    "bottleneck": {"method": "bottleneck", "bottleneck": {"config": "pfeiffer", "reduction_factor": 4}},
}


@pytest.mark.parametrize(
    "pooling,method",
    [("cls", "lora"), ("cls", "full"), ("mean", "full"), ("cls", "bottleneck"), ("mean", "bottleneck")],
)
def test_encoder_method_trains_saves_and_reloads(bert, tmp_path, pooling, method):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    folder = bert[pooling]
    tok = models.load_tokenizer(folder, padding_side="right")
    texts = [f"{w} {'day' if i % 2 else 'night'} number {i}" for i, w in enumerate(["sad sad", "joy joy", "angry"] * 4)]
    exs = [{"input_ids": ids, "labels": k % 3} for k, ids in enumerate(heads.encode(tok, texts, 32))]
    base = models.load_classifier(folder, ENC_SPEC, ENC_LABELS, seed=0)
    base_params = n_params(base)
    model = adapters.trainable_model(base, ENC_FINETUNES[method], "SEQ_CLS")
    counts = adapters.parameter_counts(model)
    if method == "full":
        assert counts["trainable"] == counts["total"] == base_params
    elif method == "bottleneck":  # pfeiffer, width 32 // 4 = 8, after each layer's output.dense + the head
        adapters_only = 2 * (32 * 8 + 8 + 8 * 32 + 32)
        assert counts["trainable"] == adapters_only + 32 * 3 + 3
        assert counts["total"] == base_params + adapters_only  # the head is the model's own, trained in place
    else:  # LoRA on query/value (32 -> 32) in 2 layers + the classifier head (32 x 3 + 3), trained in full
        head = 32 * 3 + 3
        assert counts["trainable"] == 2 * 2 * LORA["r"] * (32 + 32) + head
        assert counts["total"] == base_params + counts["trainable"]  # PEFT keeps the original head too
    cfg = dict(TRAIN, batch_size=12, learning_rate={"full": 0.002}.get(method, 0.03))
    log = training.train(
        model, exs, exs, cfg, tmp_path / "ckpt", tok.pad_token_id, torch.device("cpu"), task_type="SEQ_CLS"
    )
    assert_loss_falls(log)

    model.eval()
    in_process = torch.tensor([lg for _, lg in inference.classify(model, tok, texts, max_length=32)])
    out = tmp_path / "adapter"
    out.mkdir()
    adapters.save_trained(model, out, method, folder)
    names = assert_safetensors_only(out)
    ids, mask = batching.right_padded(heads.encode(tok, texts, 32), tok.pad_token_id)
    if method == "full" and pooling == "cls":
        assert {"config.json", "model.safetensors"} <= set(names)
        reloaded = AutoModelForSequenceClassification.from_pretrained(out, use_safetensors=True).eval()
    elif method == "full":  # mean pooling: the encoder as a transformers checkpoint + the head's weights
        assert {"config.json", "model.safetensors", "classifier.safetensors", "head.json"} <= set(names)
        reloaded = heads.load_mean_pooling(
            out, len(ENC_LABELS), seed=99, dtype=torch.float32, trust_remote_code=False
        ).eval()
    elif method == "bottleneck":
        assert names == ["bottleneck_config.json", "bottleneck_model.safetensors"]
        reloaded = bottleneck.load(models.load_classifier(folder, ENC_SPEC, ENC_LABELS, seed=7), out).eval()
    else:
        assert {"adapter_config.json", "adapter_model.safetensors"} <= set(names)
        reloaded = PeftModel.from_pretrained(models.load_classifier(folder, ENC_SPEC, ENC_LABELS, seed=7), out).eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(input_ids=ids, attention_mask=mask).logits, in_process, atol=1e-5, rtol=0)
    # what predict.py does: the prepared folder plus the run's folder, with another head seed
    via_loader = models.load_classifier(folder, ENC_SPEC, ENC_LABELS, seed=5, adapter=out)
    got = torch.tensor(
        [lg for _, lg in inference.classify(via_loader, models.load_tokenizer(folder), texts, max_length=32)]
    )
    torch.testing.assert_close(got, in_process, atol=1e-5, rtol=0)


# ---------------------------------------------------------------- qlora: refused without CUDA, before bitsandbytes


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine: the refusal is for CPU-only machines")
def test_qlora_loading_refuses_cpu_without_importing_bitsandbytes(llama):
    from finetune_study.common import PipelineError

    folder = llama[0]
    with pytest.raises(PipelineError, match="CUDA"):
        models.load_causal_lm(folder, SPEC, quantize=adapters.NF4)
    assert "bitsandbytes" not in sys.modules


# ---------------------------------------------------------------- config: shapes, keys, parse-time checks


def test_list_of_methods_gives_one_run_per_method_and_seed_and_keeps_lora_keys():
    config = tiny.tiny_config("/models", "/work")
    from finetune_study import config as cfg

    cfg.validate(config, tiny.REPO / "schemas" / "config.schema.yaml")
    task = config["tasks"]["emotion"]
    lora_key = keys.finetune_settings(config, task, "tiny_llama", "lora-s0")
    assert lora_key["finetune"]["method"] == "lora" and "ia3" not in lora_key["finetune"]
    listed = copy.deepcopy(config)
    listed["tasks"]["emotion"]["finetune"]["tiny_llama"] = [
        task["finetune"]["tiny_llama"],
        {"method": "ia3", "training": {"seeds": [0, 1]}},
        {"method": "full"},
    ]
    cfg.validate(listed, tiny.REPO / "schemas" / "config.schema.yaml")
    lt = listed["tasks"]["emotion"]
    assert [r for m, r in runs.methods(lt) if m == "tiny_llama" and runs.method_seed(r) is not None] == [
        "lora-s0",
        "ia3-s0",
        "ia3-s1",
        "full-s0",
    ]
    assert keys.finetune_settings(listed, lt, "tiny_llama", "lora-s0") == lora_key  # adding methods changes no LoRA key
    ia3 = keys.finetune_settings(listed, lt, "tiny_llama", "ia3-s1")
    assert ia3["finetune"]["method"] == "ia3" and ia3["finetune"]["training"]["seed"] == 1
    assert "lora" not in ia3["finetune"] and "prompt" not in ia3["finetune"]  # only its own settings block
    assert "lora" not in keys.finetune_settings(listed, lt, "tiny_llama", "full-s0")["finetune"]
    assert [runs.parse_run(r) for r in ("lora-s0", "prompt_tuning-s-1", "full-s12", "zeroshot", "raw", "lorax-s0")] == [
        ("lora", 0),
        ("prompt_tuning", -1),
        ("full", 12),
        None,
        None,
        None,
    ]
    assert runs.run_method("dora") == "dora" and runs.run_method("baseline") is None


def snakemake_error(work, config, env=None):
    tiny.write_config(work, config)
    proc = tiny.snakemake(work, "-n", check=False, env=env)
    assert proc.returncode != 0
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error: ")]
    assert lines, proc.stderr[-2000:]
    return lines[0]


def test_qlora_without_cuda_is_a_parse_time_error(tmp_path):
    work = tmp_path / "work"
    config = tiny.tiny_config(tmp_path / "models", work)  # model folders need not exist for parse-time checks
    config["tasks"]["emotion"]["finetune"]["tiny_llama"]["method"] = "qlora"
    msg = snakemake_error(work, config, env={"LORA_WF_CUDA": "0"})
    assert msg.startswith(
        "Error: config.yaml: tasks.emotion.finetune.tiny_llama.method: qlora needs a CUDA GPU "
        "(bitsandbytes 4-bit); no CUDA GPU found"
    ), msg
    assert not (work / "results").exists() and not (work / "logs").exists()
    # the list form names the entry's position; another method on an encoder is refused likewise
    ft = config["tasks"]["emotion"]["finetune"]
    ft["tiny_llama"] = [dict(ft["tiny_llama"], method="lora"), {"method": "qlora"}]
    assert "tasks.emotion.finetune.tiny_llama[1].method: qlora needs a CUDA GPU" in snakemake_error(
        work, config, env={"LORA_WF_CUDA": "0"}
    )
    ft["tiny_llama"] = ft["tiny_llama"][0]
    ft["tiny_bert"]["method"] = "prompt_tuning"
    assert "tasks.emotion.finetune.tiny_bert.method: prompt_tuning is for causal LMs" in snakemake_error(work, config)
    ft["tiny_bert"]["method"] = "lora"
    ft["tiny_llama"] = [ft["tiny_llama"], {"method": "lora"}]
    assert "tasks.emotion.finetune.tiny_llama[1].method: a second 'lora' fine-tune of 'tiny_llama'" in snakemake_error(
        work, config
    )


# ---------------------------------------------------------------- the pipeline: two methods of one model

TASK_JOBS = {"compare": 1, "figures": 1, "report": 1}


@pytest.fixture(scope="module")
def finished(tiny_run, tmp_path_factory):
    return tiny.copy_run(tiny_run, tmp_path_factory.mktemp("methods"))


def with_method(config, *entries):
    def edit(c):
        ft = c["tasks"]["emotion"]["finetune"]
        ft["tiny_llama"] = [ft["tiny_llama"], *entries]

    return tiny.edited(config, edit)


def test_adding_a_dora_finetune_plans_only_its_jobs(finished):
    work, config = finished
    tiny.write_config(
        work, with_method(config, {"method": "dora", "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}})
    )
    try:
        assert tiny.planned_jobs(work) == {"finetune": 1, "predict": 1, "score": 1, **TASK_JOBS}
    finally:
        tiny.write_config(work, config)
    assert tiny.planned_jobs(work) == {}


def test_two_methods_of_one_model_give_two_rows_with_their_costs(finished):
    work, config = finished
    short = {"max_steps": 4, "batch_size": 8, "learning_rate": 0.05, "max_length": 96, "eval_every": 2}
    edited = with_method(
        config,
        {"method": "prompt_tuning", "prompt": {"num_virtual_tokens": V}, "training": short},
        {"method": "bottleneck", "bottleneck": {"config": "pfeiffer", "reduction_factor": 4}, "training": short},
    )
    tiny.write_config(work, edited)
    try:
        assert tiny.planned_jobs(work) == {"finetune": 2, "predict": 2, "score": 2, **TASK_JOBS}
        tiny.snakemake(work, "results/report.html")
        assert tiny.planned_jobs(work) == {}
        run = work / "results/emotion/tiny_llama/prompt_tuning-s0"
        assert json.loads((run / "adapter/adapter_config.json").read_text())["peft_type"] == "PROMPT_TUNING"
        saved = json.loads(
            (work / "results/emotion/tiny_llama/bottleneck-s0/adapter/bottleneck_config.json").read_text()
        )
        assert (saved["config"], saved["reduction_factor"], saved["non_linearity"]) == ("pfeiffer", 4, "relu")

        # independent counts: from the model's config.json and the prepared weights' tensor shapes
        from safetensors import safe_open

        cfg = json.loads((work / "results/models/tiny_llama/config.json").read_text())
        with safe_open(str(work / "results/models/tiny_llama/model.safetensors"), "pt") as f:
            base_params = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
        h, kv = cfg["hidden_size"], cfg["num_key_value_heads"] * cfg["hidden_size"] // cfg["num_attention_heads"]
        want = {
            "lora": 2 * (4 * (h + h) + 4 * (h + kv)),  # tiny config: r 4 on q_proj, v_proj, 2 layers
            "prompt_tuning": V * h,
            "bottleneck": 2 * (h * (h // 4) + h // 4 + (h // 4) * h + h),  # after each down_proj: h -> h/4 -> h
        }
        rows = [
            r for r in csv.DictReader(open(work / "results/metrics.csv")) if r["model"] == "tiny_llama" and r["seed"]
        ]
        assert sorted(r["method"] for r in rows) == ["bottleneck", "lora", "prompt_tuning"]
        for r in rows:
            assert int(r["trainable_params"]) == want[r["method"]]
            assert float(r["trainable_share"]) == pytest.approx(want[r["method"]] / (base_params + want[r["method"]]))
            assert float(r["finetune_time_s"]) > 0 and float(r["finetune_peak_rss_mib"]) > 0
            log = tiny.read_json(work / f"results/emotion/tiny_llama/{r['method']}-s0/train_log.json")
            assert log["method"] == r["method"] and log["parameters"]["trainable"] == want[r["method"]]
            bench = list(
                csv.DictReader(
                    open(work / f"benchmarks/finetune/emotion/tiny_llama/{r['method']}-s0.tsv"), delimiter="\t"
                )
            )[0]
            assert float(r["finetune_time_s"]) == pytest.approx(float(bench["s"]))
        assert (work / "benchmarks/predict/emotion/tiny_llama/prompt_tuning-s0.tsv").is_file()

        html = (work / "results/report.html").read_text()
        assert "LoRA: tiny_llama" in html and "prompt tuning: tiny_llama" in html
        assert "bottleneck adapters: tiny_llama" in html
        table = html[html.index("<h3>Fine-tuning</h3>") :]
        assert "trainable params" in table and "peak RSS (MiB)" in table
        assert all(f"{n:,}" in table for n in want.values())
        comp = tiny.read_json(work / "results/emotion/comparison.json")
        assert {(r["model"], r["method"]) for r in comp["rows"] if r["seeds"]} == {
            ("tiny_llama", "lora"),
            ("tiny_llama", "prompt_tuning"),
            ("tiny_llama", "bottleneck"),
            ("tiny_bert", "lora"),
        }
        assert {(t["model"], t["method"]) for t in comp["paired"]} >= {
            ("tiny_llama", "prompt_tuning-s0"),
            ("tiny_llama", "bottleneck-s0"),
        }
    finally:
        tiny.write_config(work, config)


def _prod(shape):
    n = 1
    for d in shape:
        n *= d
    return n
