"""Inference and training on a tiny random LLaMA: batched generation equals one-at-a-time greedy,
label likelihood equals a direct full-sequence computation, checkpoints resume exactly."""

import math

import pytest
import torch

import tiny
from finetune_study import adapters, batching, checkpoints, inference, prompting, training
from finetune_study.decoding import cut_at_stop
from finetune_study.loss import causal_answer_loss, n_loss_tokens


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = tiny.make_tiny_llama(tmp_path_factory.mktemp("llama"))
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return model, tok


PROMPTS = [
    "Text: I am so happy today\nLabel:",
    "Hi",
    "Text: a much longer prompt that goes on and on for a while\nLabel:",
    "Text: meh\nLabel:",
    "One more prompt of middling length\nLabel:",
]


def test_batched_generation_equals_unbatched(llama):
    model, tok = llama
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    batched = inference.generate(model, tok, ids, {"max_new_tokens": 6, "batch_size": 4}, progress=False)
    single = [
        inference.generate(model, tok, [i], {"max_new_tokens": 6, "batch_size": 1}, progress=False)[0] for i in ids
    ]
    assert batched == single
    assert all(len(tok(o, add_special_tokens=False)["input_ids"]) >= 1 for o in batched)


def test_stop_strings_reach_generate_and_cut_the_output(llama, monkeypatch):
    """decoding.stop: transformers' stop_strings (with the tokenizer) reach model.generate, and each
    output is the unstopped greedy text up to its first stop string (the string dropped)."""
    model, tok = llama
    prompts = [tok("English: the cat\nFrench:")["input_ids"], tok("Hello there")["input_ids"]]
    greedy = {"max_new_tokens": 12, "batch_size": 2}
    free = inference.generate(model, tok, prompts, greedy, progress=False, with_ids=True)
    # a stop string from the middle of the first output, not written before it
    text, ids = free[0]
    k = next(
        k for k in range(2, len(ids)) if tok.decode(ids[k]).strip() and tok.decode(ids[k]) not in tok.decode(ids[:k])
    )
    stop = tok.decode(ids[k])
    seen = []
    original = model.generate

    def recording(*args, **kw):
        seen.append(kw)
        return original(*args, **kw)

    monkeypatch.setattr(model, "generate", recording)
    stopped = inference.generate(model, tok, prompts, dict(greedy, stop=[stop]), progress=False)
    assert seen and all(kw["stop_strings"] == [stop] and kw["tokenizer"] is tok for kw in seen)
    assert stopped[0] == text[: text.index(stop)]  # the unstopped greedy text, up to the stop string
    other = free[1][0]
    assert stopped[1] == (other[: other.index(stop)] if stop in other else other)
    assert cut_at_stop("a\nb\n\nc", ["\n\n", "b"]) == "a\n" and cut_at_stop("abc", []) == "abc"


def test_label_likelihood_matches_direct_computation(llama):
    model, tok = llama
    labels = [" joy", " melancholy", " bewilderment"]
    label_ids = [tok(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    assert len({len(t) for t in label_ids}) > 1  # labels of different token lengths
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    scores = inference.label_logprobs(model, ids, label_ids, batch_size=3, progress=False)
    for p, row in zip(ids, scores, strict=True):
        assert row == pytest.approx(_direct_label_scores(model, p, label_ids), abs=1e-4)


@torch.no_grad()
def _direct_label_scores(model, prompt, label_ids):
    """Each label's summed log-probability from one unpadded forward pass of prompt + label."""
    out = []
    for lab in label_ids:
        logp = torch.log_softmax(model(torch.tensor([prompt + lab])).logits[0].float(), -1)
        out.append(sum(float(logp[len(prompt) - 1 + k, t]) for k, t in enumerate(lab)))
    return out


def _examples(tok, n):
    out = []
    for i in range(n):
        ids, labels = prompting.encode_prompt_answer(
            tok, f"Text: example number {i} " + "x " * (i % 7) + "\nLabel:", [" joy", " anger"][i % 2], max_length=64
        )
        out.append({"input_ids": ids, "labels": labels})
    return out


CFG = {
    "seed": 3,
    "learning_rate": 0.01,
    "weight_decay": 0.0,
    "batch_size": 4,
    "epochs": 2,
    "max_steps": None,
    "warmup_ratio": 0.1,
    "eval_every": 2,
    "patience": 10,
    "checkpoint_every": 1,
    "gradient_checkpointing": False,
}


def _fresh(llama, dropout=0.1, dtype=torch.float32):
    import copy

    model, _ = llama
    return adapters.lora_model(
        copy.deepcopy(model).to(dtype),
        {"r": 4, "alpha": 8, "dropout": dropout, "target_modules": ["q_proj", "v_proj"]},
        "CAUSAL_LM",
    )


def test_resume_gives_same_adapter_as_uninterrupted(llama, tmp_path):
    import shutil

    tok = llama[1]
    train, val = _examples(tok, 16), _examples(tok, 4)
    cpu = torch.device("cpu")
    m1 = _fresh(llama)
    log1 = training.train(m1, train, val, CFG, tmp_path / "a", tok.pad_token_id, cpu, task_type="CAUSAL_LM")
    assert log1["final_step"] == 8 and math.isfinite(log1["best_val_loss"])
    ckpts = sorted((tmp_path / "a").glob("step-*"))
    assert [c.name for c in ckpts] == ["step-00000007", "step-00000008"]
    # a crash after step 7 whose step-8 checkpoint was torn mid-write (no marker, truncated file)
    shutil.copytree(ckpts[0], tmp_path / "b" / ckpts[0].name)
    torn = tmp_path / "b" / ckpts[1].name
    shutil.copytree(ckpts[1], torn)
    (torn / checkpoints.MARKER).unlink()
    (torn / "trainable.safetensors").write_bytes((torn / "trainable.safetensors").read_bytes()[:100])
    m2 = _fresh(llama)
    torch.manual_seed(12345)  # a different RNG state than the original run: the checkpoint must restore it
    log2 = training.train(m2, train, val, CFG, tmp_path / "b", tok.pad_token_id, cpu, task_type="CAUSAL_LM")
    assert log2["resumed_from"] == [7] and log2["final_step"] == 8
    assert [h["step"] for h in log2["history"]] == list(range(1, 9))
    assert [h["train_loss"] for h in log2["history"]] == pytest.approx([h["train_loss"] for h in log1["history"]])
    w1, w2 = checkpoints.trainable_state(m1), checkpoints.trainable_state(m2)
    assert w1.keys() == w2.keys()
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-5, atol=1e-6)


def test_torn_checkpoint_is_skipped(tmp_path):
    (tmp_path / "step-00000004").mkdir()
    (tmp_path / "step-00000004" / "trainable.safetensors").write_bytes(b"truncated")
    done = tmp_path / "step-00000002"
    done.mkdir()
    (done / checkpoints.MARKER).write_text("2\n")
    (tmp_path / "step-00000006.tmp").mkdir()
    assert checkpoints.latest_checkpoint(tmp_path) == done


def test_epoch_batches_cover_everything_once_and_are_deterministic():
    lengths = [5, 1, 9, 3, 7, 2, 8, 4, 6, 10]
    a = batching.epoch_batches(lengths, 3, seed=1, epoch=0)
    assert sorted(i for b in a for i in b) == list(range(10))
    assert a == batching.epoch_batches(lengths, 3, seed=1, epoch=0)
    assert a != batching.epoch_batches(lengths, 3, seed=1, epoch=1)


def test_answer_only_loss_equals_full_model_loss(llama):
    model, tok = llama
    batch = batching.collate(_examples(tok, 5), tok.pad_token_id)
    with torch.no_grad():
        want = model(**batch).loss
        got = causal_answer_loss(model, batch)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_sampling_is_seeded(llama):
    model, tok = llama
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    d = {"max_new_tokens": 8, "batch_size": 4, "do_sample": True, "temperature": 1.0, "top_k": 50, "seed": 7}
    a = inference.generate(model, tok, ids, d, progress=False)
    b = inference.generate(model, tok, ids, d, progress=False)
    c = inference.generate(model, tok, ids, dict(d, seed=8), progress=False)
    assert a == b and a != c


def _lora_copy(llama, seed=0):
    """A LoRA copy without dropout (so two layouts of one batch see the same function)."""
    torch.manual_seed(seed)
    m = _fresh(llama, dropout=0.0)
    for n, p in m.named_parameters():  # non-zero LoRA B, so the adapter changes the outputs
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.05)
    return m


def test_packed_batch_gives_same_loss_and_gradients_as_padded(llama):
    tok = llama[1]
    examples = _examples(tok, 7)
    packed = batching.collate_packed(examples, tok.pad_token_id, row_length=64)
    padded = batching.collate(examples, tok.pad_token_id)
    assert packed["input_ids"].shape[0] < len(examples)  # several examples share a row
    assert "attention_mask" not in packed
    assert (packed["labels"] != -100).sum() == (padded["labels"][:, 1:] != -100).sum()
    model = _lora_copy(llama)
    model.train()
    grads = []
    losses = []
    for batch in (padded, packed):
        model.zero_grad()
        loss = causal_answer_loss(model, batch)
        loss.backward()
        losses.append(loss.detach())
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad})
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], rtol=1e-4, atol=1e-6)


def test_packed_examples_do_not_see_each_other(llama):
    """Changing one packed example's tokens changes nothing in the loss of its row neighbours."""
    model, tok = llama
    a, b = _examples(tok, 2)
    packed = batching.collate_packed([a, b], tok.pad_token_id, row_length=128)
    assert packed["input_ids"].shape[0] == 1  # both in one row
    other = dict(b, input_ids=[t if k == 0 else (t + 7) % 1000 for k, t in enumerate(b["input_ids"])])
    n_a, n_b = len(a["input_ids"]), len(b["input_ids"])
    a_first = batching.pack_rows([n_a, n_b], 128)[0][0] == 0
    span = slice(0, n_a) if a_first else slice(n_b, n_b + n_a)
    with torch.no_grad():
        h1 = model.model(
            input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False
        ).last_hidden_state
        p2 = batching.collate_packed([a, other], tok.pad_token_id, row_length=128)
        h2 = model.model(input_ids=p2["input_ids"], position_ids=p2["position_ids"], use_cache=False).last_hidden_state
    torch.testing.assert_close(h1[0, span], h2[0, span])
    assert not torch.allclose(h1, h2)
    # and a's hidden states equal those of a run alone
    with torch.no_grad():
        alone = model.model(input_ids=torch.tensor([a["input_ids"]])).last_hidden_state
    torch.testing.assert_close(h1[0, span], alone[0], rtol=1e-4, atol=1e-5)


def test_pack_rows_fill_rows_and_keep_every_example():
    lengths = [50, 10, 30, 60, 5, 45, 200]
    rows = batching.pack_rows(lengths, 64)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 64 for r in rows if len(r) > 1)
    assert [6] in rows  # longer than a row: a row of its own
    assert len(rows) == 5  # 200 | 60 | 50+10 | 45+5 | 30 (first-fit decreasing)


def test_chunked_answer_loss_equals_unchunked(llama):
    tok = llama[1]
    batch = batching.collate(_examples(tok, 6), tok.pad_token_id)
    model = _lora_copy(llama)
    out = []
    for chunk in (10_000, 3):
        model.zero_grad()
        loss = causal_answer_loss(model, batch, chunk=chunk)
        loss.backward()
        out.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    assert n_loss_tokens(batch, "CAUSAL_LM") > 3  # really more than one chunk
    torch.testing.assert_close(out[1][0], out[0][0], rtol=1e-5, atol=1e-6)
    for n in out[0][1]:
        torch.testing.assert_close(out[1][1][n], out[0][1][n], rtol=1e-4, atol=1e-7)


def test_training_with_packing_matches_padded_training(llama, tmp_path):
    tok = llama[1]
    train, val = _examples(tok, 12), _examples(tok, 4)
    cfg = dict(CFG, epochs=1, checkpoint_every=100)
    logs = []
    for packing in (False, True):
        m = _lora_copy(llama, seed=1)
        logs.append(
            training.train(
                m,
                train,
                val,
                dict(cfg, packing=packing, pack_length=128),
                tmp_path / str(packing),
                tok.pad_token_id,
                torch.device("cpu"),
                task_type="CAUSAL_LM",
            )
        )
    assert len(logs[0]["history"]) == len(logs[1]["history"]) == 3
    assert [h["train_loss"] for h in logs[1]["history"]] == pytest.approx(
        [h["train_loss"] for h in logs[0]["history"]], rel=1e-4
    )


def test_static_cache_generation_equals_dynamic(llama):
    model, tok = llama
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    dynamic = inference.generate(model, tok, ids, {"max_new_tokens": 6, "batch_size": 3}, progress=False)
    static = inference.generate(
        model, tok, ids, {"max_new_tokens": 6, "batch_size": 3, "cache": "static"}, progress=False
    )
    assert static == dynamic


def test_label_likelihood_with_lora_and_many_labels_picks_direct_argmax(llama):
    """Through an unmerged adapter and with 1..3-token labels sharing first tokens, the one-pass
    scores give the same argmax as scoring each prompt + label on its own."""
    model = _lora_copy(llama).eval()
    tok = llama[1]
    labels = [" joy", " joyful", " anger", " angry mood", " sad", " sadness", " love", " fear of it"]
    label_ids = [tok(lab, add_special_tokens=False)["input_ids"] for lab in labels]
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    scores = inference.label_logprobs(model, ids, label_ids, batch_size=2, progress=False)
    for p, row in zip(ids, scores, strict=True):
        direct = _direct_label_scores(model, p, label_ids)
        assert row == pytest.approx(direct, abs=1e-4)
        assert max(range(len(row)), key=row.__getitem__) == max(range(len(direct)), key=direct.__getitem__)


def test_auto_dtype_on_cpu_follows_native_bf16(monkeypatch):
    from finetune_study import models, precision

    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: False)
    assert models.resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: True)
    assert models.resolve_dtype("auto", "cpu") == torch.bfloat16
    assert models.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert models.resolve_dtype("float32", "cpu") == torch.float32


def test_bfloat16_base_trains_fp32_lora_and_scores_like_fp32(llama, tmp_path):
    """What dtype: auto gives on a GPU, run on CPU: bf16 frozen weights, fp32 LoRA weights and loss;
    packed training runs and lowers nothing to NaN; bf16 label scores stay near the fp32 ones."""
    tok = llama[1]
    model = _fresh(llama, dropout=0.0, dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    log = training.train(
        model,
        _examples(tok, 8),
        _examples(tok, 4),
        dict(CFG, epochs=1, packing=True),
        tmp_path,
        tok.pad_token_id,
        torch.device("cpu"),
        task_type="CAUSAL_LM",
    )
    assert log["final_step"] == 2 and all(math.isfinite(h["train_loss"]) for h in log["history"])
    label_ids = [tok(lab, add_special_tokens=False)["input_ids"] for lab in [" joy", " melancholy", " anger"]]
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    half = inference.label_logprobs(model.eval(), ids, label_ids, batch_size=3, progress=False)
    full = inference.label_logprobs(model.to(torch.float32), ids, label_ids, batch_size=3, progress=False)
    for a, b in zip(half, full, strict=True):
        assert a == pytest.approx(b, abs=0.02)  # bf16 rounding only: the fp32 copy holds the same values


def test_eval_sample_is_a_fixed_seeded_subset_in_order():
    examples = [{"input_ids": [i]} for i in range(50)]
    a = training.eval_subsample(examples, 10, seed=3)
    assert a == training.eval_subsample(examples, 10, seed=3)  # the same subset at every evaluation
    ids = [e["input_ids"][0] for e in a]
    assert len(set(ids)) == 10 and ids == sorted(ids)
    assert a != training.eval_subsample(examples, 10, seed=4)


def test_the_loss_is_chosen_by_task_type_not_by_label_shape():
    """Per-token labels (NER's, TOKEN_CLS) are 2-D like a causal LM's; the loss comes from the task
    type that finetune.py names, and a batch whose labels do not fit it is an error."""
    from finetune_study import loss

    per_token = {"input_ids": torch.ones(2, 5, dtype=torch.long), "labels": torch.zeros(2, 5, dtype=torch.long)}
    per_example = {"input_ids": torch.ones(2, 5, dtype=torch.long), "labels": torch.zeros(2, dtype=torch.long)}
    with pytest.raises(ValueError, match="SEQ_CLS loss reads 1-D labels, got shape"):
        loss.batch_loss(None, per_token, "SEQ_CLS")
    with pytest.raises(ValueError, match="CAUSAL_LM loss reads 2-D labels, got shape"):
        loss.n_loss_tokens(per_example, "CAUSAL_LM")
    with pytest.raises(ValueError, match="TOKEN_CLS loss reads 2-D labels, got shape"):
        loss.batch_loss(None, per_example, "TOKEN_CLS")
    with pytest.raises(ValueError, match="no training loss for task type 'QUESTION_ANS'"):
        loss.batch_loss(None, per_token, "QUESTION_ANS")
    # hand-counted: answer tokens after the first position, or one target per example
    per_token["labels"][0, :3] = -100
    assert loss.n_loss_tokens(per_token, "CAUSAL_LM") == 2 + 4
    assert loss.n_loss_tokens(per_example, "SEQ_CLS") == 2
    assert loss.n_loss_tokens(per_token, "TOKEN_CLS") == 2 + 5  # every tagged sub-word, the first one included
