"""End-to-end generation task (Alpaca records) on a tiny random LLaMA: responses per decoding
point, BLEU/ROUGE-L/BERTScore/perplexity recomputed from the outputs, human scores imported,
and the rerun plans after decoding changes."""

import json

import pytest
import sacrebleu

import tiny
from finetune_study.common import read_jsonl


def gen_config(models_dir, work, he_path):
    c = tiny.tiny_config(models_dir, work)
    c["tokenizer_study"] = None
    c["tasks"] = {
        "alpaca": {
            "type": "generation",
            "files": {"train": "alpaca/alpaca_data_1k.json"},
            "sample": {"train": 16, "validation": 4, "test": 6},
            "prompt_style": "alpaca",
            "models": ["tiny_llama"],
            "finetune": {
                "tiny_llama": {
                    "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]},
                    "training": {
                        "max_steps": 2,
                        "batch_size": 8,
                        "max_length": 128,
                        "eval_every": 1,
                        "packing": True,
                        "pack_length": 256,
                        # a token-sized step: 2 packed rows of 256 tokens, one per micro-batch
                        "tokens_per_step": 512,
                        "gradient_accumulation": 2,
                        "gradient_checkpointing": "auto",
                    },
                }
            },
            "decodings": {"greedy": {"max_new_tokens": 6, "cache": "static"}},  # the grid points use the dynamic cache
            "decoding_grid": {"base": {"max_new_tokens": 6}, "grid": {"top_k": [5], "temperature": [0, 0.7]}},
            "bootstrap": 50,
            "human_eval": {"tiny_llama/zeroshot/greedy": str(he_path)},
        }
    }
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("gen")
    tiny.make_tiny_llama(base / "models" / "llama")
    he = base / "he.json"
    he.write_text(
        json.dumps(
            [
                {
                    "index": i + 1,
                    "grammatical_correctness": g,
                    "coherence": 1,
                    "correctness_of_answer": 0.5,
                    "comment": "<i>ok</i>",
                }
                for i, g in enumerate([1, 0, 1, 0.5, 1, 1])
            ]
        )
    )
    work = base / "work"
    config = gen_config(base / "models", work, he)
    tiny.write_config(work, config)
    tiny.snakemake(work, "results/report.html")
    return work, config, he


POINTS = ["greedy", "topk5_t0", "topk5_t0.7"]


@pytest.mark.parametrize("method", ["zeroshot", "lora-s0"])
@pytest.mark.parametrize("point", POINTS)
def test_scores_recomputed_from_outputs(run, method, point):
    from rouge_score import rouge_scorer

    work, _, _ = run
    gen = read_jsonl(work / f"results/alpaca/tiny_llama/{method}/gen/{point}/generations.jsonl")
    assert len(gen) == 6 and all(r["reference"] and "output" in r for r in gen)
    m = tiny.read_json(work / f"results/alpaca/tiny_llama/{method}/gen/{point}/metrics.json")
    hyps, refs = [r["output"] for r in gen], [r["reference"] for r in gen]
    assert m["bleu"]["mean"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]
    assert m["rouge_l"]["mean"] == pytest.approx(sum(rouge) / 6)
    for key in ("bleu", "rouge_l", "bertscore_f1"):
        assert m[key]["low"] <= m[key]["mean"] <= m[key]["high"]
    assert 0 < m["bertscore_f1"]["mean"] <= 1


def test_bertscore_is_bert_score_called_directly(run):
    """The default BERTScore model (the MiniLM-L6 folder pip ships, layer 6, no idf, no rescaling)
    on the outputs and references, computed by bert_score itself: the same per-item F1 as the
    pipeline's, which is not zero (random outputs still embed close to their references)."""
    import bert_score
    from test_generation_metrics import minilm_dir

    work, _, _ = run
    for method in ("zeroshot", "lora-s0"):
        folder = work / f"results/alpaca/tiny_llama/{method}/gen/greedy"
        gen = read_jsonl(folder / "generations.jsonl")
        _, _, f1 = bert_score.score(
            [r["output"] for r in gen],
            [r["reference"] for r in gen],
            model_type=str(minilm_dir()),
            num_layers=6,
            lang=None,
            idf=False,
            rescale_with_baseline=False,
        )
        ours = tiny.read_json(folder / "metrics.json")
        assert ours["per_example"]["bertscore_f1"] == pytest.approx(f1.tolist(), abs=1e-6)
        assert ours["bertscore_f1"]["mean"] == pytest.approx(f1.mean().item(), abs=1e-6)
        assert min(f1.tolist()) > 0.01


def test_greedy_and_temperature_zero_agree_sampling_differs(run):
    work, _, _ = run
    out = {
        p: [r["output"] for r in read_jsonl(work / f"results/alpaca/tiny_llama/zeroshot/gen/{p}/generations.jsonl")]
        for p in POINTS
    }
    assert len(out["greedy"]) == 6 and any(out["greedy"])
    assert out["greedy"] == out["topk5_t0"]  # also: static cache == dynamic cache
    # sampling at temperature 0.7 (seeded) draws other tokens than the argmax on most prompts
    assert sum(g != s for g, s in zip(out["greedy"], out["topk5_t0.7"], strict=True)) >= 3


def test_fine_tune_packed_its_batches(run):
    work, _, _ = run
    log = tiny.read_json(work / "results/alpaca/tiny_llama/lora-s0/train_log.json")
    assert log["packing"] is True and log["final_step"] == 2
    assert 0 <= log["padding_fraction"] < 0.5


def test_token_sized_steps_reach_the_fine_tune_through_the_rules(run):
    """tokens_per_step set in the config: every optimizer step of the Snakemake fine-tune computed
    exactly 2 rows x 256 tokens; gradient_checkpointing: auto was decided (off: no CUDA here) and
    recorded with its reason."""
    work, _, _ = run
    log = tiny.read_json(work / "results/alpaca/tiny_llama/lora-s0/train_log.json")
    steps = [h for h in log["history"] if "tokens" in h]
    assert [h["tokens"] for h in steps] == [512, 512]
    checkpointing = log["provenance"]["training_options"]["gradient_checkpointing"]
    assert checkpointing["setting"] == "auto" and checkpointing["enabled"] is False
    assert "cpu" in checkpointing["reason"]


def test_human_scores_imported(run):
    work, _, _ = run
    m = tiny.read_json(work / "results/alpaca/tiny_llama/zeroshot/gen/greedy/metrics.json")
    human = m["human"]
    assert human["average_grammatical_correctness"] == pytest.approx(4.5 / 6)
    assert human["average_correctness_of_answer"] == pytest.approx(0.5)
    assert human["human_evaluation_average"] == pytest.approx((4.5 / 6 + 1 + 0.5) / 3)
    template = tiny.read_json(work / "results/alpaca/tiny_llama/lora-s0/gen/greedy/human_eval_template.json")
    assert len(template) == 6 or len(template.get("items", [])) == 6


def test_perplexity_and_report(run):
    work, _, _ = run
    z = tiny.read_json(work / "results/alpaca/tiny_llama/zeroshot/perplexity.json")
    lora = tiny.read_json(work / "results/alpaca/tiny_llama/lora-s0/perplexity.json")
    assert z["corpus"] > 1 and lora["corpus"] > 1 and z["corpus"] != lora["corpus"]
    html = (work / "results/report.html").read_text()
    assert "alpaca (generation)" in html and "topk5_t0.7" in html and "BERTScore F1" in html
    assert html.count("data:image/png;base64,") == 3


def test_decoding_change_reruns_only_that_point(run):
    work, config, _ = run
    assert tiny.planned_jobs(work) == {}
    tiny.write_config(
        work, tiny.edited(config, lambda c: c["tasks"]["alpaca"]["decodings"]["greedy"].update(max_new_tokens=7))
    )
    try:
        assert tiny.planned_jobs(work) == {"generate": 2, "score_generation": 2, "generation_figures": 1, "report": 1}
    finally:
        tiny.write_config(work, config)


def test_added_grid_point_runs_just_that_point(run, tmp_path):
    # on a copy of the finished run, so the module's run needs no rebuild afterwards
    work, config = tiny.copy_run((None, run[0], run[1]), tmp_path)
    tiny.write_config(
        work, tiny.edited(config, lambda c: c["tasks"]["alpaca"]["decoding_grid"]["grid"].update(top_k=[5, 9]))
    )
    # topk9_t0.7 for both runs; topk9_t0 is greedy like topk5_t0 (top_k does nothing without
    # sampling), so it shares topk5_t0's generation and needs no job
    assert tiny.planned_jobs(work) == {"generate": 2, "score_generation": 2, "generation_figures": 1, "report": 1}
    tiny.snakemake(work, "results/report.html")
    html = (work / "results/report.html").read_text()
    assert "topk9_t0 (= topk5_t0)" in html and "topk9_t0.7" in html
    assert not (work / "results/alpaca/tiny_llama/zeroshot/gen/topk9_t0").exists()
    import csv

    rows = {(r["method"], r["decoding"]): r for r in csv.DictReader(open(work / "results/metrics.csv"))}
    for method in ("zeroshot", "lora"):  # every point the user asked for is a row; shared ones agree
        assert rows[(method, "topk9_t0")]["bleu"] == rows[(method, "topk5_t0")]["bleu"]
        assert (method, "topk9_t0.7") in rows


def test_bad_records_and_decodings_fail_before_models_load(run, tmp_path):
    work, config, _ = run
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps([{"instruction": "say hi", "input": "", "output": "hi"}, {"instruction": "", "output": "x"}])
    )

    def use_bad(c):
        c["data_dir"] = str(tmp_path)
        c["tasks"]["alpaca"]["files"] = {"train": "bad.json"}

    for edit, message in [
        (use_bad, "record 2 has no instruction"),
        (lambda c: c["tasks"]["alpaca"]["decodings"]["greedy"].update(temperature=-1), "temperature"),
        (lambda c: c["tasks"]["alpaca"]["decoding_grid"]["grid"].update(num_beams=[0]), "num_beams"),
        (
            lambda c: c["tasks"]["alpaca"]["decodings"]["greedy"].update(do_sample=True, temperature=0),
            "do_sample with temperature 0",
        ),
    ]:
        tiny.write_config(work, tiny.edited(config, edit))
        try:
            proc = tiny.snakemake(work, "-n", check=False)
            assert proc.returncode != 0 and message in proc.stdout + proc.stderr
            if edit is use_bad:
                assert "bad.json" in proc.stdout + proc.stderr
        finally:
            tiny.write_config(work, config)


def gridded(config):
    """The config with a two-point learning-rate grid on the task's fine-tune."""
    return tiny.edited(
        config,
        lambda c: c["tasks"]["alpaca"]["finetune"]["tiny_llama"].update(
            grid={"training.learning_rate": [0.01, 0.00001]}
        ),
    )


def test_training_grid_on_a_generation_task(run):
    """A grid on a generation task: each point its own fine-tune with its generations, scores and
    perplexity; the best point is the one with the lowest validation loss in its own training log,
    and its test metrics are those of the first named decoding."""
    work, config, _ = run
    points = ["lr0.01", "lr1em05"]
    tiny.write_config(work, gridded(config))
    try:
        # the grid's points replace lora-s0: 2 fine-tunes, each with 3 decodings and a perplexity
        assert tiny.planned_jobs(work) == {
            "finetune": 2,
            "generate": 6,
            "score_generation": 6,
            "reference_perplexity": 2,
            "training_grid": 1,
            "generation_figures": 1,
            "report": 1,
        }
        tiny.snakemake(work, "results/report.html")
        base = work / "results/alpaca/tiny_llama"
        logs = {p: tiny.read_json(base / f"lora-{p}-s0/train_log.json") for p in points}
        grids = tiny.read_json(work / "results/alpaca/training_grid.json")["grids"]
        assert [(g["model"], g["method"], [p["name"] for p in g["points"]]) for g in grids] == [
            ("tiny_llama", "lora", points)
        ]
        g = grids[0]
        assert g["best"] == min(points, key=lambda p: logs[p]["best_val_loss"])
        assert g["test_split"] == "decoding greedy"
        for p in g["points"]:
            assert p["val_loss"]["mean"] == logs[p["name"]]["best_val_loss"]
            greedy = tiny.read_json(base / f"lora-{p['name']}-s0/gen/greedy/metrics.json")
            assert p["test"]["bleu"] == greedy["bleu"] and p["test"]["rouge_l"] == greedy["rouge_l"]
        html = (work / "results/report.html").read_text()
        assert "Training grid" in html and f"★ {g['best']}" in html
        assert (work / "results/alpaca/figures/training_grid.png").stat().st_size > 10_000
    finally:
        tiny.write_config(work, config)


def test_snakemake_report_of_the_gridded_task(run, tmp_path):
    """`snakemake --report` of the gridded run (finished by the test above; built here when run
    alone): the generation figures and the grid's figure and table, under the task's stages."""
    from test_snakemake_report import check_report

    work, config, _ = run
    tiny.write_config(work, gridded(config))
    try:
        tiny.snakemake(work, "results/report.html")
        results, categories = check_report(work, tmp_path)
        assert set(categories["alpaca"]) == {"evaluation", "fine-tuning", "training grid"}
        assert "results/alpaca/training_grid.json" in categories["alpaca"]["training grid"]
        assert "decoding parameter" in results["results/alpaca/figures/sweep.png"]["caption"]
    finally:
        tiny.write_config(work, config)
