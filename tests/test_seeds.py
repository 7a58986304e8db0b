"""Replicates: training.seeds runs one fine-tune and one prediction per seed as separate cached
jobs; adding a seed runs only that seed; the report shows mean ± sd across seeds, computed here
by another route (statistics.stdev over the per-seed metrics files)."""

import statistics

import pytest

import tiny


@pytest.fixture(scope="module")
def run(tiny_run, tmp_path_factory):
    # a copy of the session's finished run (seed 0 of each fine-tune done), with a second seed of
    # the encoder's LoRA: only seed 1's jobs run, seed 0's are the cached ones
    work, config = tiny.copy_run(tiny_run, tmp_path_factory.mktemp("seeds"))
    config["tasks"]["emotion"]["finetune"]["tiny_bert"]["training"]["seeds"] = [0, 1]
    tiny.write_config(work, config)
    proc = tiny.snakemake(work, "results/report.html")
    return work, config, proc


def test_one_finetune_and_prediction_per_seed(run):
    work, _, proc = run
    out = proc.stdout + proc.stderr
    # one job per seed: seed 1's finetune, predict and score ran, seed 0's were already there
    assert out.count("rule finetune:") == 1 and "output: results/emotion/tiny_bert/lora-s1/adapter" in out
    assert out.count("rule predict:") == 1 and out.count("rule score:") == 1
    for seed in (0, 1):
        assert (work / f"results/emotion/tiny_bert/lora-s{seed}/adapter/adapter_model.safetensors").exists()
        assert (work / f"results/emotion/tiny_bert/lora-s{seed}/predictions.jsonl").exists()
    logs = [tiny.read_json(work / f"results/emotion/tiny_bert/lora-s{s}/train_log.json") for s in (0, 1)]
    assert logs[0]["history"][0]["train_loss"] != logs[1]["history"][0]["train_loss"]  # the seed reaches the head


def test_mean_and_sd_across_seeds(run):
    work, _, _ = run
    comp = tiny.read_json(work / "results/emotion/comparison.json")
    row = next(r for r in comp["rows"] if r["model"] == "tiny_bert" and r["method"] == "lora")
    accs = [tiny.read_json(work / f"results/emotion/tiny_bert/lora-s{s}/metrics.json")["accuracy"] for s in (0, 1)]
    assert row["seeds"] == [0, 1]
    assert row["accuracy"]["mean"] == pytest.approx(statistics.fmean(accs))
    assert row["accuracy"]["sd"] == pytest.approx(statistics.stdev(accs))
    html = (work / "results/report.html").read_text().replace("\u00a0", " ")  # ± and sd stay on one line
    assert f"{statistics.fmean(accs):.3f} ± {statistics.stdev(accs):.3f}" in html and "per-seed values" in html
    bert_pairs = [p for p in comp["paired"] if p["model"] == "tiny_bert"]
    assert len(bert_pairs) == 2  # each seed against the zero-shot row


def test_adding_a_seed_runs_only_that_seed(run):
    work, config, _ = run
    tiny.write_config(
        work,
        tiny.edited(
            config, lambda c: c["tasks"]["emotion"]["finetune"]["tiny_bert"]["training"].update(seeds=[0, 1, 2])
        ),
    )
    try:
        assert tiny.planned_jobs(work) == {
            "finetune": 1,
            "predict": 1,
            "score": 1,
            "compare": 1,
            "figures": 1,
            "report": 1,
        }
    finally:
        tiny.write_config(work, config)
