"""Summarization and translation end to end: snakemake on DialogSum dialogues (three references
per test dialogue) with a tiny causal LM and a tiny T5 (zero-shot and LoRA each) and the copy and
lead baselines, and on English -> Persian pairs from aligned plain-text files (a source listed with
several translations is one item) with the tiny T5 and the copy baseline. The scores are checked
against rouge-score and sacrebleu called directly on the outputs files, the splits against the raw
files, the rerun plan after a decoding edit, and every bad input is one line at parse time."""

import random
from collections import defaultdict

import pytest
import sacrebleu
from rouge_score import rouge_scorer

import tiny
from conftest import DATA_DIR
from finetune_study import common

SUM, TRA = "dsum", "tfa"
SUM_RUNS = [
    ("tiny_llama", "zeroshot"),
    ("tiny_t5", "zeroshot"),
    ("tiny_llama", "lora-s0"),
    ("tiny_t5", "lora-s0"),
    ("copy", "baseline"),
    ("lead", "baseline"),
]
TRA_RUNS = [("tiny_t5", "zeroshot"), ("copy", "baseline")]
TRAINING = {"max_steps": 3, "batch_size": 4, "learning_rate": 0.01, "eval_every": 3, "patience": 5, "max_length": 160}


def write_aligned_pairs(folder):
    """English and Persian files from the Tatoeba pairs: 30 English sentences listed with several
    translations (all their lines) and 150 listed once, shuffled; returns {english: [persian, ...]}."""
    rows = [line.split("\t") for line in (DATA_DIR / "tatoeba_eng_fas" / "test.tsv").read_text().splitlines()]
    by_source = defaultdict(list)
    for _, _, en, fa in rows:
        by_source[en].append(fa)
    repeated = [s for s, t in by_source.items() if len(t) > 1][:30]
    single = [s for s, t in by_source.items() if len(t) == 1][:150]
    pairs = [(s, t) for s in repeated + single for t in by_source[s]]
    random.Random(0).shuffle(pairs)
    folder.mkdir(parents=True)
    (folder / "pairs.en").write_text("".join(s + "\n" for s, _ in pairs), encoding="utf-8")
    (folder / "pairs.fa").write_text("".join(t + "\n" for _, t in pairs), encoding="utf-8")
    return {s: by_source[s] for s in repeated + single}


def s2t_config(models_dir, data_dir):
    c = tiny.tiny_config(models_dir, None)
    c["data_dir"] = str(data_dir)
    c["tokenizer_study"] = None
    c["models"]["tiny_t5"] = {"type": "seq2seq", "source": {"path": str(models_dir / "t5")}}
    c["tasks"] = {
        SUM: {
            "type": "source_target",
            "field": "summarization",
            "files": {"train": "dialogsum/dialogsum.dev.jsonl", "test": "dialogsum/dialogsum.test.jsonl"},
            "source_column": "dialogue",
            "target_column": ["summary", "summary1", "summary2", "summary3"],
            "sample": {"train": 24, "validation": 6, "test": 12},
            "max_source_tokens": 96,
            # the causal LM's zero-shot row gets one training dialogue and its summary first; every
            # generated summary ends at its first line break
            "prompt": {"template": "Summarize the dialogue:\n{text}\nSummary:", "fewshot": 1},
            "decodings": {"greedy": {"max_new_tokens": 12, "batch_size": 8, "stop": ["\n"]}},
            "bootstrap": 200,
            "models": ["tiny_llama", "tiny_t5"],
            "finetune": {
                "tiny_llama": {
                    "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
                    "training": TRAINING,
                },
                "tiny_t5": {"lora": {"r": 4, "alpha": 8, "target_modules": ["q", "v"]}, "training": TRAINING},
            },
        },
        TRA: {
            "type": "source_target",
            "field": "translation",
            "target_language": "fa",
            "files": {"train": {"source": "tfa/pairs.en", "target": "tfa/pairs.fa"}},
            "test_fraction": 0.2,
            "sample": {"test": 30},
            "prompt": {"template": "Translate English to Persian: {text}"},
            "decodings": {"greedy": {"max_new_tokens": 10, "batch_size": 8}},
            "bootstrap": 200,
            "metrics": ["bleu", "chrf"],
            "models": ["tiny_t5"],
        },
    }
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("s2t")
    tiny.make_tiny_llama(base / "models" / "llama")
    tiny.make_tiny_t5(base / "models" / "t5")
    data = base / "data"
    data.mkdir()
    (data / "dialogsum").symlink_to(DATA_DIR / "dialogsum")
    translations = write_aligned_pairs(data / "tfa")
    work = base / "work"
    config = s2t_config(base / "models", data)
    tiny.write_config(work, config)
    tiny.snakemake(work, "results/report.html")
    return base, work, config, translations


def outputs(work, task, model, method, decoding="greedy"):
    d = "fixed" if method == "baseline" else decoding
    return common.read_jsonl(work / f"results/{task}/{model}/{method}/targets/{d}/outputs.jsonl")


def metrics(work, task, model, method, decoding="greedy"):
    d = "fixed" if method == "baseline" else decoding
    return tiny.read_json(work / f"results/{task}/{model}/{method}/targets/{d}/metrics.json")


@pytest.mark.parametrize("model,method", SUM_RUNS)
def test_rouge_matches_rouge_score_best_reference(run, model, method):
    _, work, _, _ = run
    rows, m = outputs(work, SUM, model, method), metrics(work, SUM, model, method)
    assert m["n"] == len(rows) == 12 and all(len(r["references"]) == 3 for r in rows)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for ours, theirs in (("rouge1", "rouge1"), ("rouge2", "rouge2"), ("rouge_l", "rougeL")):
        best = [max(scorer.score(ref, r["output"])[theirs].fmeasure for ref in r["references"]) for r in rows]
        assert m["intervals"][ours]["mean"] == pytest.approx(sum(best) / len(best), abs=1e-9)
        assert m["intervals"][ours]["low"] <= m["intervals"][ours]["mean"] <= m["intervals"][ours]["high"]
    assert 0 <= m["intervals"]["bertscore_f1"]["mean"] <= 1


def test_baselines_are_the_source_and_its_lead(run):
    _, work, _, _ = run
    copy, lead = outputs(work, SUM, "copy", "baseline"), outputs(work, SUM, "lead", "baseline")
    test = common.read_jsonl(work / f"results/{SUM}/data/test.jsonl")
    assert [r["output"] for r in copy] == [r["text"].strip() for r in test]
    for r in lead:
        budget = sum(len(x.split()) for x in r["references"]) / len(r["references"])
        first_turn = r["source"].split("\n")[0]
        assert r["output"].startswith(first_turn.split("!")[0].split("?")[0].split(".")[0])
        assert len(r["output"].split()) <= max(budget, len(first_turn.split()))
    # copying a dialogue is a long, low-precision summary; the lead is shorter
    assert metrics(work, SUM, "lead", "baseline")["intervals"]["rouge1"]["mean"] > 0
    assert sum(len(r["output"].split()) for r in lead) < sum(len(r["output"].split()) for r in copy)


def test_translation_bleu_chrf_match_sacrebleu_with_every_reference(run):
    _, work, _, _ = run
    for model, method in TRA_RUNS:
        rows, m = outputs(work, TRA, model, method), metrics(work, TRA, model, method)
        hyps, refs = [r["output"] for r in rows], [r["references"] for r in rows]
        width = max(map(len, refs))
        streams = [[x[i] if i < len(x) else None for x in refs] for i in range(width)]
        bleu = sacrebleu.metrics.BLEU(tokenize="intl")
        assert m["intervals"]["bleu"]["mean"] == pytest.approx(bleu.corpus_score(hyps, streams).score, abs=1e-9)
        chrf = sacrebleu.metrics.CHRF(word_order=2)
        assert m["intervals"]["chrf"]["mean"] == pytest.approx(chrf.corpus_score(hyps, streams).score, abs=1e-9)
        assert "tok:intl" in m["signatures"]["bleu"] and "nw:2" in m["signatures"]["chrf"]
        assert set(m["intervals"]) == {"bleu", "chrf"}
    copy = outputs(work, TRA, "copy", "baseline")
    assert copy, "nothing to check"
    assert all(r["output"] == r["source"] for r in copy)


def test_splits_are_by_source_with_all_references(run):
    _, work, _, translations = run
    splits = {s: common.read_jsonl(work / f"results/{TRA}/data/{s}.jsonl") for s in ("train", "validation", "test")}
    seen = [r["text"] for rows in splits.values() for r in rows]
    assert len(seen) == len(set(seen))  # a source is in one split only
    for rows in splits.values():
        for r in rows:
            assert sorted(r["references"]) == sorted(set(translations[r["text"]]))
    assert any(len(r["references"]) > 1 for r in splits["test"])
    train = {r["text"] for r in common.read_jsonl(work / f"results/{SUM}/data/train.jsonl")}
    assert not train & {r["text"] for r in common.read_jsonl(work / f"results/{SUM}/data/test.jsonl")}


def test_fine_tunes_train_on_targets_and_are_compared_with_zero_shot(run):
    _, work, _, _ = run
    for model in ("tiny_llama", "tiny_t5"):
        log = tiny.read_json(work / f"results/{SUM}/{model}/lora-s0/train_log.json")
        assert log["history"] and log["best_val_loss"] > 0
        vs = metrics(work, SUM, model, "lora-s0")["vs_zeroshot"]
        ft, zs = metrics(work, SUM, model, "lora-s0"), metrics(work, SUM, model, "zeroshot")
        diff = ft["intervals"]["rouge_l"]["mean"] - zs["intervals"]["rouge_l"]["mean"]
        assert vs["rouge_l"]["diff"] == pytest.approx(diff, abs=1e-9) and 0 <= vs["rouge_l"]["p"] <= 1
        ppl = tiny.read_json(work / f"results/{SUM}/{model}/lora-s0/targets/perplexity.json")
        assert ppl["pairs"] == 36 and ppl["corpus"] > 1


def test_every_run_is_compared_with_each_baseline_and_the_table_with_the_strongest(run):
    _, work, _, _ = run
    table = (work / "results/metrics.csv").read_text().splitlines()
    header = table[0].split(",")
    csv_rows = {(r["task"], r["model"], r["method"]): r for r in (dict(zip(header, x.split(","))) for x in table[1:])}
    for task, runs_, head, names in ((SUM, SUM_RUNS, "rouge_l", ("copy", "lead")), (TRA, TRA_RUNS, "chrf", ("copy",))):
        base = {b: metrics(work, task, b, "baseline")["intervals"] for b in names}
        strongest = max(names, key=lambda b: base[b][head]["mean"])
        for model, method in runs_:
            m = metrics(work, task, model, method)
            if method == "baseline":
                assert "vs_baselines" not in m
                continue
            assert set(m["vs_baselines"]) == set(names)
            for b in names:
                for k, t in m["vs_baselines"][b].items():  # ROUGE, BLEU, chrF++: run minus baseline, same sources
                    assert t["diff"] == pytest.approx(m["intervals"][k]["mean"] - base[b][k]["mean"], abs=1e-9)
                    assert t["low"] <= t["diff"] <= t["high"] and 0 <= t["p"] <= 1
            r = csv_rows[(task, model, method.split("-")[0])]
            assert (r["baseline_compared"], r["baseline_metric"]) == (strongest, head)
            assert float(r["diff_vs_baseline"]) == pytest.approx(m["vs_baselines"][strongest][head]["diff"])
    for model in ("tiny_llama", "tiny_t5"):
        for method in ("zeroshot", "lora-s0"):
            assert not any("\n" in r["output"] for r in outputs(work, SUM, model, method))  # decoding.stop


def test_report_and_table(run):
    _, work, _, _ = run
    html = (work / "results/report.html").read_text()
    assert "Task: dsum (summarization)" in html and "Task: tfa (translation)" in html
    assert "tok:intl" in html and "copy the source" in html and "lead sentences" in html
    table = (work / "results/metrics.csv").read_text().splitlines()
    header = table[0].split(",")
    rows = [dict(zip(header, line.split(","))) for line in table[1:] if line.startswith(("dsum", "tfa"))]
    assert len(rows) == len(SUM_RUNS) + len(TRA_RUNS)
    lead = next(r for r in rows if r["model"] == "lead")
    assert float(lead["rouge1"]) == pytest.approx(metrics(work, SUM, "lead", "baseline")["intervals"]["rouge1"]["mean"])


def test_decoding_edit_reruns_generation_and_scores_only(run, tmp_path):
    work, config = tiny.copy_run(run[:3], tmp_path)
    config = tiny.edited(config, lambda c: c["tasks"][SUM]["decodings"]["greedy"].update(max_new_tokens=8))
    tiny.write_config(work, config)
    assert tiny.planned_jobs(work, "results/report.html") == {
        "generate_targets": 4,
        "score_targets": 4,
        "target_figures": 1,
        "report": 1,
    }


def error_of(work, config):
    tiny.write_config(work, config)
    proc = tiny.snakemake(work, "-n", check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error: ")]
    assert proc.returncode != 0 and lines, proc.stderr[-2000:]
    return lines[0]


def test_bad_input_is_one_line_before_any_model_loads(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "dialogsum").symlink_to(DATA_DIR / "dialogsum")
    write_aligned_pairs(data / "tfa")
    config = s2t_config(tmp_path / "models", data)
    work = tmp_path / "work"

    def bad(fn):
        return error_of(work, tiny.edited(config, fn))

    msg = bad(lambda c: c["tasks"][SUM].update(source_column="dialog"))
    assert "dialogsum.dev.jsonl" in msg and "no column 'dialog'" in msg and "source_column" in msg
    msg = bad(lambda c: c["tasks"][SUM].update(target_column=["summ"]))
    assert "none of the target column(s) summ" in msg and "set target_column" in msg
    msg = bad(lambda c: c["tasks"][SUM]["prompt"].update(template="Summarize:"))
    assert "tasks.dsum.prompt.template: must contain {text}" in msg
    msg = bad(lambda c: c["tasks"][TRA].update(metrics=["bleu", "rouge_l"]))
    assert "tasks.tfa.metrics: 'rouge_l' is not a translation metric" in msg
    lines = (data / "tfa" / "pairs.fa").read_text(encoding="utf-8").splitlines()
    (data / "tfa" / "pairs.fa").write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    msg = bad(lambda c: None)
    assert f"pairs.fa: {len(lines) - 1} lines, but" in msg and f"has {len(lines)}" in msg
    lines[4] = " "
    (data / "tfa" / "pairs.fa").write_text("\n".join(lines) + "\n", encoding="utf-8")
    msg = bad(lambda c: None)
    assert "pairs.en + " in msg and ":5 has an empty target (target)" in msg
    assert not (work / "results").exists()


def test_snakemake_report(run, tmp_path):
    """`snakemake --report` of the finished summarization and translation run: each task's scores
    and training curves, the caption naming the task's field."""
    from test_snakemake_report import check_report

    _, work, _, _ = run
    results, categories = check_report(work, tmp_path)
    for task, field in ((SUM, "summarization"), (TRA, "translation")):
        assert categories[task]["evaluation"] == [f"results/{task}/figures/target_scores.png"]
        assert f"({field})" in results[f"results/{task}/figures/target_scores.png"]["caption"]
