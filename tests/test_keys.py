"""Unit tests of finetune_study/keys.py, the one place that decides what each stage's cache key is.
Expectations are written by hand (which script imports what; which setting can change which
output); tests/test_rerun_contract.py checks the same decisions end to end through snakemake."""

import copy
from pathlib import Path

import yaml

from conftest import REPO
from finetune_study import config as cfg
from finetune_study import fingerprints, keys, paths, runs, tasks
from finetune_study.tasks import classification

SCRIPTS = sorted(p.name for p in (REPO / "workflow_scripts").glob("*.py"))


def importers(module):
    """The scripts whose code fingerprint holds finetune_study/<module> (for any task type they run)."""
    return {
        s
        for s in SCRIPTS
        if any(
            f.parent.name == "finetune_study" and f.name == module for f in fingerprints.code_files(s, tasks.TASK_TYPES)
        )
    }


def test_code_fingerprints_follow_the_import_graph():
    assert importers("classification_metrics.py") == {"score.py"}
    assert importers("training.py") == {"finetune.py", "finetune_worker.py"}  # via finetune_job
    # stats holds the bootstrap primitives that generation_metrics (scoring and perplexity) and comparison use
    assert importers("stats.py") == {
        "score.py",
        "compare.py",
        "score_generation.py",
        "reference_perplexity.py",
        "build_report.py",
        "make_figures.py",
        "grid_sweep.py",
        "compare_general_ability.py",  # the paired bootstrap of fine-tuned minus base
        "score_entities.py",  # ner_metrics: entity bootstrap intervals
        "score_targets.py",  # source_target_metrics: multi-reference intervals
        "target_perplexity.py",  # generation_metrics.perplexity
    }
    assert "stats.py" not in {f.name for f in fingerprints.code_files("target_baseline.py")}  # no model, no numpy
    assert importers("data.py") == {"prepare_data.py", "data_summary.py"}
    assert "loss.py" in {
        f.name for f in fingerprints.code_files("reference_perplexity.py")
    }  # transitively, via generation_metrics
    assert fingerprints.code_fingerprint("score.py") != fingerprints.code_fingerprint("compare.py")


def loaded_config():
    c = yaml.safe_load((REPO / "config.yaml").read_text())
    return cfg.validate(c, REPO / "schemas" / "config.schema.yaml")


def test_decoding_key_keeps_only_what_changes_generated_text():
    greedy = {
        "max_new_tokens": 8,
        "do_sample": False,
        "temperature": 0.7,
        "top_k": 5,
        "top_p": 0.9,
        "num_beams": 1,
        "batch_size": 16,
        "seed": 3,
        "cache": "static",
        "compile": True,
        "repetition_penalty": 1.0,
    }
    # greedy: no sampling settings, seed or batch size; do_sample: false and num_beams: 1 are the
    # defaults that generate always gets (decoding.to_generate_kwargs), so they are left out
    assert keys.decoding_key(greedy) == {"max_new_tokens": 8, "repetition_penalty": 1.0}
    sampled = dict(greedy, do_sample=True)
    assert keys.decoding_key(sampled) == {
        k: v for k, v in sampled.items() if k not in ("cache", "compile", "num_beams")
    }
    beams = dict(greedy, num_beams=4)
    assert keys.decoding_key(beams)["batch_size"] == 16 and "seed" not in keys.decoding_key(beams)


def test_equivalent_decoding_points_share_one_generation():
    """The Alpaca miniature's sweep: at temperature 0 top_k does nothing, so topk30_nb1_t0 and
    topk50_nb1_t0 are greedy, and topk30_nb2_t0 / topk50_nb2_t0 are one beam search (hand-worked)."""
    from finetune_study import decoding

    points = {"greedy": {"max_new_tokens": 48}}
    points.update(
        decoding.expand_grid(
            {"top_k": [30, 50], "num_beams": [1, 2], "temperature": [0, 0.7]}, {"max_new_tokens": 48, "seed": 0}
        )
    )
    shared = keys.shared_decodings(points)
    assert shared == {
        "greedy": "greedy",
        "topk30_nb1_t0": "greedy",
        "topk30_nb1_t0.7": "topk30_nb1_t0.7",
        "topk30_nb2_t0": "topk30_nb2_t0",
        "topk30_nb2_t0.7": "topk30_nb2_t0.7",
        "topk50_nb1_t0": "greedy",
        "topk50_nb1_t0.7": "topk50_nb1_t0.7",
        "topk50_nb2_t0": "topk30_nb2_t0",
        "topk50_nb2_t0.7": "topk50_nb2_t0.7",
    }
    # a point with its own human evaluation keeps its own scores
    own = keys.shared_decodings(points, human_eval={"m/zeroshot/topk50_nb1_t0": "he.json"})
    assert own["topk50_nb1_t0"] == "topk50_nb1_t0" and own["topk30_nb1_t0"] == "greedy"
    # what generate receives is the same for points that share
    kw = {n: decoding.to_generate_kwargs(p) for n, p in points.items()}
    assert kw["topk30_nb1_t0"] == kw["greedy"] == kw["topk50_nb1_t0"]
    assert kw["topk30_nb2_t0"] == kw["topk50_nb2_t0"] != kw["greedy"]


def test_a_split_key_ignores_the_other_splits_sample_sizes():
    c = loaded_config()
    task = c["tasks"]["emotion"]
    other = copy.deepcopy(task)
    other["sample"]["train"] = 17
    assert keys.data_settings(c, task, "test") == keys.data_settings(c, other, "test")
    assert keys.data_settings(c, task, "validation") == keys.data_settings(c, other, "validation")
    assert keys.data_settings(c, task, "train") != keys.data_settings(c, other, "train")


def test_roles_resources_and_sizes_are_in_no_model_key():
    c = loaded_config()
    model = c["models"]["smollm2_135m_instruct"]
    changed = dict(model, role="base", params_b=7.0, resources={"mem_mb": 64000, "gpus": 0, "cpus_per_task": 8})
    assert keys.model_origin(c, model) == keys.model_origin(c, changed)
    assert keys.model_settings(model) == keys.model_settings(changed)
    # a GPU request changes a model key only through the dtype it resolves to (precision.resolve)
    gpu = dict(model, resources={"mem_mb": 8000, "gpus": 1})
    assert keys.model_origin(c, model) == keys.model_origin(c, gpu)
    assert {k: v for k, v in keys.model_settings(gpu).items() if k != "dtype"} == {
        k: v for k, v in keys.model_settings(model).items() if k != "dtype"
    }
    assert keys.model_settings(gpu)["dtype"] == "bfloat16"
    assert keys.model_origin(c, model)["origin"] == {"source": model["source"]}
    assert keys.model_origin(dict(c, use_hub=True), model)["origin"] == {"hub_id": model["hub_id"]}


def test_inference_keys():
    c = loaded_config()
    task = c["tasks"]["emotion"]
    enc = classification.inference_settings(c, task, "minilm_l6", "zeroshot")
    assert "decoding" not in enc and enc["max_length"] == 128 and enc["head_seed"] == 0  # the fine-tune's first seed
    lik = classification.inference_settings(c, task, "smollm2_135m_instruct", "zeroshot")
    assert lik["scoring"] == "likelihood" and "decoding" not in lik and lik["likelihood_normalization"] == "mean"
    raw = classification.inference_settings(c, task, "smollm2_135m_instruct", "raw")
    assert raw["chat_template"] is False and lik["chat_template"] is True


def test_finetune_key_per_seed_without_checkpoint_settings():
    c = loaded_config()
    task = c["tasks"]["emotion"]
    finetuned = [m for m, meth in runs.methods(task) if m == "minilm_l6" and meth != "zeroshot"]
    assert len(finetuned) == 3  # seeds 0, 1, 2
    s0 = keys.finetune_settings(c, task, "minilm_l6", "lora-s0")
    s1 = keys.finetune_settings(c, task, "minilm_l6", "lora-s1")
    assert s0 != s1 and s0["finetune"]["training"]["seed"] == 0 and s1["finetune"]["training"]["seed"] == 1
    for s in (s0, s1):
        assert "checkpoint_every" not in s["finetune"]["training"] and "seeds" not in s["finetune"]["training"]


def test_relative_paths_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.relative(tmp_path / "resources" / "a.txt") == str(Path("resources") / "a.txt")
    assert paths.relative("/elsewhere/b.txt") == "/elsewhere/b.txt"
    assert paths.relative("../shared/data") == "../shared/data"


# finetune.py with every task type's parts, as its rule computes it: the task modules go through the cache too
FINGERPRINTS_OF = (
    "import json, sys; from finetune_study import fingerprints as f, tasks; "
    "print(json.dumps({s: f.code_fingerprint(s, tasks.TASK_TYPES if s == 'finetune.py' else ()) for s in sys.argv[1:]}))"
)


def _fingerprints_in_a_fresh_process(scripts_dir, cache_home):
    """{script: code_fingerprint} of every script in scripts_dir, computed by a new Python process
    that imports finetune_study from scripts_dir and keeps its cache under cache_home."""
    import json
    import os
    import subprocess
    import sys

    names = sorted(p.name for p in Path(scripts_dir).glob("*.py"))
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home), PYTHONPATH=str(scripts_dir))
    proc = subprocess.run([sys.executable, "-c", FINGERPRINTS_OF, *names], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_parse_time_cache_never_changes_a_fingerprint(tmp_path):
    """The fingerprints a fresh process computes are the same with no cache, a warm one, a corrupt
    one and one that cannot be written; an edited module is a new entry (the fingerprint changes),
    and undoing the edit gives the first fingerprint back."""
    import shutil

    scripts = tmp_path / "workflow_scripts"
    shutil.copytree(REPO / "workflow_scripts", scripts, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    cache = tmp_path / "cache"
    cold = _fingerprints_in_a_fresh_process(scripts, cache)
    cache_file = cache / "finetune_study"
    assert [p.name for p in cache_file.iterdir()][0].startswith("code_facts-")
    assert _fingerprints_in_a_fresh_process(scripts, cache) == cold  # warm
    next(cache_file.iterdir()).write_text("{not json")
    assert _fingerprints_in_a_fresh_process(scripts, cache) == cold  # corrupt: ignored
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert _fingerprints_in_a_fresh_process(scripts, blocker) == cold  # cannot be written: ignored
    assert len(cold) == len(SCRIPTS) and len(set(cold.values())) == len(cold)

    module = scripts / "finetune_study" / "classification_metrics.py"
    original = module.read_text()
    module.write_text(original + "\nCACHE_TEST_CHANGE = 1\n")
    edited = _fingerprints_in_a_fresh_process(scripts, cache)
    assert {s for s in cold if edited[s] != cold[s]} == {"score.py"}  # its one importer (see above)
    module.write_text(original)
    assert _fingerprints_in_a_fresh_process(scripts, cache) == cold
