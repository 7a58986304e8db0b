"""The original studies as configs (configs/studies/<study>.{hub,offline}.yaml): every one parses,
validates and plans exactly the jobs its design implies, the hub versions also through the SLURM
profile; the published reference rows read the study's own numbers from its output files."""

import json
from pathlib import Path

import pytest
import yaml

import tiny
from conftest import DATA_DIR, REPO
from finetune_study import published

STUDIES = REPO / "configs" / "studies"
C = {"compare": 1, "figures": 1, "report": 1}  # a classification task's summary jobs


def classification(models, finetunes, prepared_models=None, **extra):
    """Jobs of one classification task: 3 splits and their summary, each model prepared once, one
    fine-tune per method, a prediction per zero-shot and fine-tuned run, a score per run plus the
    majority baseline's."""
    runs = models + finetunes
    return {
        "prepare_data": 3,
        "data_summary": 1,
        "prepare_model": prepared_models or models,
        "finetune": finetunes,
        "majority_baseline": 1,
        "predict": runs,
        "score": runs + 1,
        **C,
        **extra,
    }


def generation(models, finetunes, decodings):
    """decodings: the distinct generations per run (points with the same generate arguments share one)."""
    runs = models + finetunes
    return {
        "prepare_data": 3,
        "data_summary": 1,
        "prepare_model": models,
        "finetune": finetunes,
        "generate": runs * decodings,
        "score_generation": runs * decodings,
        "reference_perplexity": runs,
        "generation_figures": 1,
        "report": 1,
    }


def token_classification(models, finetunes, prepared_models):
    """Jobs of one token-classification task: entities per zero-shot and fine-tuned run, a score per
    run plus the dictionary baseline's."""
    runs = models + finetunes
    return {
        "prepare_data": 3,
        "data_summary": 1,
        "prepare_model": prepared_models,
        "finetune": finetunes,
        "dictionary_baseline": 1,
        "tag_entities": runs,
        "score_entities": runs + 1,
        "ner_figures": 1,
        "report": 1,
    }


def source_target(models, finetunes, prepared_models, decodings, baselines):
    """Jobs of one source -> target task: outputs and reference perplexity per zero-shot and
    fine-tuned run (outputs once per distinct decoding), the baselines' outputs, a score per output set."""
    runs = models + finetunes
    return {
        "prepare_data": 3,
        "data_summary": 1,
        "prepare_model": prepared_models,
        "finetune": finetunes,
        "generate_targets": runs * decodings,
        "target_perplexity": runs,
        "target_baseline": baselines,
        "score_targets": runs * decodings + baselines,
        "target_figures": 1,
        "report": 1,
    }


TOKENIZERS = {"task_text": 1, "tokenizer_stats": 1, "chat_templates": 1}
EXPECTED = {
    # distilbert: untrained head + LoRA
    "agnews_distilbert.hub": classification(1, 1),
    "agnews_distilbert.offline": classification(1, 1),
    # distilbert: untrained head + full + LoRA
    "imdb_distilbert.hub": classification(1, 2),
    "imdb_distilbert.offline": classification(1, 2),
    # GPT-2: zero-shot + LoRA, full, prompt tuning, prefix tuning, IA3, bottleneck adapters
    "imdb_gpt2.hub": classification(1, 6),
    "imdb_gpt2.offline": classification(1, 6),
    # LLaMA-3-8B base and instruct zero-shot, instruct raw prompt, instruct LoRA; tokenizer study
    "emotion_llama3.hub": dict(classification(3, 1, prepared_models=2), **TOKENIZERS),
    # config.yaml's study: Gemma base, SmolLM2 instruct, MiniLM zero-shot, SmolLM2 raw prompt; LoRA of
    # SmolLM2 (1 seed) and MiniLM (3 seeds)
    "emotion_llama3.offline": dict(classification(4, 4, prepared_models=3), **TOKENIZERS),
    # three 7B-class models, each with LoRA; 1 named decoding (5 beams) + 3 x 2 x 3 grid points, of
    # which the 6 at temperature 0 are 2 beam searches (top_k does nothing there), nb5 the named one:
    # published_beam5 + nb2_t0 + 12 sampled points
    "alpaca_7b.hub": generation(3, 3, 1 + 1 + 12),
    # Gemma base and SmolLM2 zero-shot, SmolLM2 LoRA; 1 named decoding (greedy) + 2 x 2 x 2 grid
    # points, of which nb1_t0 are greedy and nb2_t0 one beam search: greedy + nb2_t0 + 4 sampled
    "alpaca_7b.offline": generation(2, 1, 1 + 1 + 4),
    # BERT-base-cased, RoBERTa-base (untrained head, LoRA x 3 seeds each), Llama-3.2-1B-Instruct (zero-shot, LoRA)
    "wnut17_ner.hub": token_classification(3, 7, 3),
    # MiniLM (untrained head, LoRA x 3 seeds), SmolLM2 (chat, raw prompt, LoRA)
    "wnut17_ner.offline": token_classification(3, 4, 2),
    # FLAN-T5-base (zero-shot, LoRA x 3 seeds), BART-large-xsum, Llama-3.2-1B-Instruct (zero-shot, LoRA);
    # greedy, and a num_beams grid [1, 4] whose nb1 is greedy: 2 generations per run; copy and lead
    "dialogsum_summarization.hub": source_target(3, 4, 3, 2, 2),
    # SmolLM2 (zero-shot, LoRA), Gemma-3-270M zero-shot; greedy; copy and lead
    "dialogsum_summarization.offline": source_target(2, 1, 2, 1, 2),
    # OPUS-MT (zero-shot, LoRA x 3 seeds), NLLB-600M, Llama-3.2-1B-Instruct (zero-shot, LoRA); copy
    "tatoeba_translation.hub": source_target(3, 4, 3, 1, 1),
    # Gemma-3-270M (zero-shot, LoRA), SmolLM2 zero-shot; copy
    "tatoeba_translation.offline": source_target(2, 1, 2, 1, 1),
}


def test_every_study_has_a_hub_and_an_offline_config():
    assert sorted(p.name for p in STUDIES.glob("*.yaml")) == sorted(f"{k}.yaml" for k in EXPECTED)


# the hub studies are planned here without their models in the Hugging Face cache, as on a login
# node whose jobs download them elsewhere (preflight: LORA_WF_HUB_CHECK=0)
NO_HUB_CHECK = {"LORA_WF_HUB_CHECK": "0"}


def plan(tmp_path, study, *extra):
    return tiny.planned_jobs(
        tmp_path,
        "results/report.html",
        "--configfile",
        str(REPO / "config.yaml"),
        str(STUDIES / f"{study}.yaml"),
        "--config",
        f"data_dir={DATA_DIR}",
        *extra,
        env=NO_HUB_CHECK,
    )


def test_hub_study_without_its_models_cached_fails_at_parse_time(tmp_path):
    proc = tiny.snakemake(
        tmp_path,
        "-n",
        "results/report.html",
        "--configfile",
        str(REPO / "config.yaml"),
        str(STUDIES / "imdb_gpt2.hub.yaml"),
        "--config",
        f"data_dir={DATA_DIR}",
        env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
        check=False,
    )
    line = next(x for x in (proc.stdout + proc.stderr).splitlines() if x.startswith("Error: "))
    assert line.startswith(
        f"Error: {STUDIES / 'imdb_gpt2.hub.yaml'}: models.gpt2: model hub_id "
        f"'openai-community/gpt2': not in the Hugging Face cache"
    ), line


@pytest.mark.parametrize("study", sorted(EXPECTED))
def test_study_plans_exactly_its_jobs(tmp_path, study):
    assert plan(tmp_path, study) == {k: v for k, v in EXPECTED[study].items() if v}


@pytest.mark.parametrize("study", sorted(s for s in EXPECTED if s.endswith(".hub")))
def test_hub_study_plans_through_the_slurm_profile(tmp_path, study):
    # the profile turns on the cluster checks: a partition, GPU requests for GPU-sized models, memory
    assert plan(tmp_path, study, "--workflow-profile", str(REPO / "profiles" / "slurm")) == {
        k: v for k, v in EXPECTED[study].items() if v
    }


def study_config(study):
    return yaml.safe_load((STUDIES / f"{study}.yaml").read_text())


@pytest.mark.parametrize("study", ["agnews_distilbert.hub", "agnews_distilbert.offline"])
def test_agnews_published_rows_are_the_studys_own_numbers(study):
    rows = [published.load(p, DATA_DIR) for p in study_config(study)["tasks"]["agnews"]["published"]]
    assert [r["metrics"] for r in rows] == [
        {"accuracy": 0.25, "weighted_f1": 0.1},
        {"accuracy": 0.9181578947368421, "weighted_f1": 0.9181153449606783},
    ]
    assert [r["n"] for r in rows] == [7600, 7600]


@pytest.mark.parametrize("study", ["alpaca_7b.hub", "alpaca_7b.offline"])
def test_alpaca_published_rows_are_the_studys_table(study):
    rows = [published.load(p, DATA_DIR) for p in study_config(study)["tasks"]["alpaca"]["published"]]
    # the study's README table (top_k 50, 5 beams, temperature 1); BLEU x 100 to sacrebleu's scale
    readme = {
        "LLaMA-2": (0.137808, 0.38557, 0.897052, 10.0402, 0.919753),
        "Mistral": (0.110753, 0.304393, 0.855278, 8.10991, 0.845679),
        "Phi-2": (0.469636, 0.604907, 0.931351, 19.0088, 0.895062),
    }
    for row, (name, (bleu, rouge, bert, ppl, human)) in zip(rows, readme.items(), strict=True):
        assert row["run"].startswith(name)
        m = row["metrics"]
        assert m["bleu"] == pytest.approx(100 * bleu, abs=1e-4) and m["rouge_l"] == pytest.approx(rouge, abs=1e-5)
        assert m["bertscore_f1"] == pytest.approx(bert, abs=1e-5) and m["perplexity"] == pytest.approx(ppl, abs=1e-3)
        assert m["human_score"] == pytest.approx(human, abs=1e-5)


def test_published_errors_name_the_file_and_key(tmp_path):
    good = tmp_path / "m.json"
    good.write_text(json.dumps({"acc": 0.5, "name": "x"}))
    with pytest.raises(published.PublishedError, match=r"files: .*missing\.json not found"):
        published.load({"run": "r", "files": ["missing.json"], "metrics": {"accuracy": "acc"}}, tmp_path)
    with pytest.raises(published.PublishedError, match=r"metrics.accuracy: key 'accuracy' is in none of"):
        published.load({"run": "r", "files": ["m.json"], "metrics": {"accuracy": "accuracy"}}, tmp_path)
    with pytest.raises(published.PublishedError, match=r"metrics.accuracy: .*m\.json: 'name': 'x' is not a number"):
        published.load({"run": "r", "files": ["m.json"], "metrics": {"accuracy": "name"}}, tmp_path)
    assert published.load({"run": "r", "values": {"bleu": 0.25}, "scale": {"bleu": 100}}, tmp_path)["metrics"] == {
        "bleu": 25.0
    }


def test_a_bad_published_entry_is_one_line_at_parse_time(tmp_path):
    work = tmp_path / "work"
    config = tiny.tiny_config(tmp_path / "models", work)
    config["tasks"]["emotion"]["published"] = [
        {"run": "paper", "files": ["original_work/nope.json"], "metrics": {"accuracy": "accuracy"}}
    ]
    tiny.write_config(work, config)
    proc = tiny.snakemake(work, "-n", "results/report.html", check=False)
    assert proc.returncode != 0
    assert (
        f"Error: config.yaml: tasks.emotion.published[0].files: {Path(DATA_DIR) / 'original_work/nope.json'} not found"
    ) in proc.stdout + proc.stderr
