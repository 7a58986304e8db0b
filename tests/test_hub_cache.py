"""The hub path runs offline: with use_hub: true and HF_HUB_OFFLINE=1 the workflow loads every model
by its hub_id (transformers/huggingface_hub from_pretrained in models.materialize) and the dataset by
its hub_id (datasets.load_dataset in data._hub_splits) from caches laid out as the Hugging Face
libraries leave them after a download, and runs to the report. Nothing is fetched; the ids are
invented (tinyorg/...), so nothing real is implied.

The caches live under a temporary HF_HOME:
- models: <HF_HOME>/hub/models--<org>--<name>/{blobs/<etag>, snapshots/<commit>/<file> -> ../../blobs/<etag>,
  refs/main}, as huggingface_hub writes them (etag: sha256 of an LFS file, the git blob sha1 otherwise);
- the dataset: <HF_HOME>/datasets/<org>___<name>/default/0.0.0/<hash>/{<name>-<split>.arrow, dataset_info.json},
  written by datasets itself (the csv builder, on rows of ../shared/data/emotion, with a ClassLabel
  label column) and moved to where datasets looks for a hub dataset it has downloaded before.
"""

import csv
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tiny
from conftest import DATA_DIR
from finetune_study.common import read_jsonl

LLAMA_ID, BERT_ID, DATA_ID, MISSING_ID = (
    "tinyorg/tiny-llama",
    "tinyorg/tiny-bert",
    "tinyorg/tiny-emotion",
    "tinyorg/not-cached",
)
MISSING_DATA_ID = "tinyorg/no-such-dataset"
COMMIT = hashlib.sha1(b"tinyorg test snapshot").hexdigest()  # what refs/main holds: a 40-hex commit
# dair-ai/emotion's ClassLabel order; the config lists the names in another order, so a label taken by
# position instead of through the ClassLabel names would come out wrong.
CLASS_NAMES = ["sadness", "joy", "love", "anger", "fear", "surprise"]
CONFIG_LABELS = sorted(CLASS_NAMES)
N_CACHED = {"train": 60, "test": 20}
SAMPLE = {"train": 24, "validation": 6, "test": 12}
RUNS = [("tiny_llama", "zeroshot"), ("tiny_bert", "zeroshot"), ("tiny_bert", "lora-s0"), ("majority", "baseline")]


def offline_env(hf_home):
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _git_blob_sha1(data):
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def cache_model(hub_dir, repo_id, folder):
    """Lay `folder` out as huggingface_hub's cache of repo_id at COMMIT; returns the snapshot folder."""
    repo = Path(hub_dir) / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    for f in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = f.read_bytes()
        etag = hashlib.sha256(data).hexdigest() if f.suffix == ".safetensors" else _git_blob_sha1(data)
        blob = repo / "blobs" / etag
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)  # huggingface_hub writes the hash with no newline
    return snapshot


def emotion_rows(name, n):
    """The first n (text, label name) rows of a shared emotion file (text;label_name, header)."""
    lines = (DATA_DIR / "emotion" / name).read_text(encoding="utf-8").splitlines()[1 : n + 1]
    return [tuple(line.rsplit(";", 1)) for line in lines]


# Run with HF_HOME at the temporary home: datasets' csv builder writes the arrow cache, which is then
# moved to where a download of DATA_ID would have left it and loaded back by its hub id, offline.
_BUILD_DATASET = textwrap.dedent("""
    import json, shutil, sys
    from pathlib import Path
    import datasets
    from datasets import ClassLabel, Features, Value

    csvs, names, repo_id = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
    assert datasets.config.HF_HUB_OFFLINE
    cache = Path(datasets.config.HF_DATASETS_CACHE)
    datasets.load_dataset("csv", data_files=csvs,
                          features=Features({"text": Value("string"), "label": ClassLabel(names=names)}))
    (built,) = [p for p in cache.glob("csv/default-*/0.0.0/*") if p.is_dir()]
    org, name = repo_id.split("/")
    dest = cache / f"{org}___{name}" / "default" / "0.0.0" / built.name
    dest.mkdir(parents=True)
    for f in built.iterdir():
        shutil.copy2(f, dest / (f.name.replace("csv-", f"{name}-", 1) if f.suffix == ".arrow" else f.name))
    info = json.loads((dest / "dataset_info.json").read_text())
    info["dataset_name"] = name
    for split in info["splits"].values():
        split["dataset_name"] = name
    (dest / "dataset_info.json").write_text(json.dumps(info))
    shutil.rmtree(cache / "csv")
    ds = datasets.load_dataset(repo_id)
    print(json.dumps({s: {"rows": [[r["text"], r["label"]] for r in ds[s]],
                          "names": ds[s].features["label"].names} for s in ds}))
""")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """HF_HOME with LLAMA_ID, BERT_ID and DATA_ID cached; returns (hf_home, snapshots, cached rows)."""
    base = tmp_path_factory.mktemp("hub_cache")
    hf_home = base / "hf_home"
    bert = tiny.make_tiny_bert(base / "built" / "bert")
    # a sentence-transformers layout, so the head choice is read from the cache too (mean pooling)
    (bert / "modules.json").write_text(
        json.dumps(
            [
                {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            ]
        )
    )
    (bert / "1_Pooling").mkdir()
    (bert / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    )
    snapshots = {
        LLAMA_ID: cache_model(hf_home / "hub", LLAMA_ID, tiny.make_tiny_llama(base / "built" / "llama")),
        BERT_ID: cache_model(hf_home / "hub", BERT_ID, bert),
    }

    rows = {split: emotion_rows(f"{split}.txt", n) for split, n in N_CACHED.items()}
    csvs = {}
    for split, split_rows in rows.items():
        csvs[split] = str(base / f"{split}.csv")
        with open(csvs[split], "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows([text, CLASS_NAMES.index(label)] for text, label in split_rows)
    proc = subprocess.run(
        [sys.executable, "-c", _BUILD_DATASET, json.dumps(csvs), json.dumps(CLASS_NAMES), DATA_ID],
        capture_output=True,
        text=True,
        env=dict(os.environ, **offline_env(hf_home)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    # the cache holds exactly the rows written, labels as ClassLabel integers, and no validation split
    assert set(loaded) == {"train", "test"}
    for split, split_rows in rows.items():
        assert loaded[split]["names"] == CLASS_NAMES
        assert [tuple(r) for r in loaded[split]["rows"]] == [(t, CLASS_NAMES.index(label)) for t, label in split_rows]
    return hf_home, snapshots, rows


def hub_config(models, dataset=DATA_ID, finetune=None):
    """use_hub: true, every model and the dataset by hub_id only (no source:, no files:)."""
    return {
        "data_dir": str(DATA_DIR),
        "use_hub": True,
        "tokenizer_study": None,
        "models": models,
        "tasks": {
            "emotion": {
                "type": "classification",
                "hub_id": dataset,
                "label_column": "label",
                "labels": CONFIG_LABELS,
                "sample": SAMPLE,
                "validation_fraction": 0.2,
                "scoring": "likelihood",
                "bootstrap": 50,
                "prompt": {"template": "Emotion of: {text}\nAnswer:"},
                "decoding": {"batch_size": 8},
                "models": list(models),
                "finetune": finetune or {},
            }
        },
    }


@pytest.fixture(scope="module")
def run(hub, tmp_path_factory):
    hf_home, snapshots, rows = hub
    work = tmp_path_factory.mktemp("hub_run")
    models = {
        "tiny_llama": {"type": "causal_lm", "role": "instruct", "hub_id": LLAMA_ID, "chat_template": True},
        "tiny_bert": {"type": "encoder", "role": "encoder", "hub_id": BERT_ID},
    }
    finetune = {
        "tiny_bert": {
            "lora": {"r": 4, "alpha": 8, "target_modules": ["query", "value"]},
            "training": {"max_steps": 2, "batch_size": 8, "learning_rate": 0.01, "eval_every": 2, "max_length": 64},
        }
    }
    tiny.write_config(work, hub_config(models, finetune=finetune))
    proc = tiny.snakemake(work, "results/report.html", env=offline_env(hf_home))
    return work, proc


def test_models_come_from_the_cached_snapshots(hub, run):
    from safetensors.torch import load_file

    _, snapshots, _ = hub
    work, _ = run
    for model, hub_id in (("tiny_llama", LLAMA_ID), ("tiny_bert", BERT_ID)):
        prepared = load_file(work / "results/models" / model / "model.safetensors")
        cached = load_file(snapshots[hub_id] / "model.safetensors")
        assert set(prepared) == set(cached), model
        for name, tensor in cached.items():
            assert prepared[name].dtype == tensor.dtype and prepared[name].equal(tensor), (model, name)
        assert f"loading {hub_id}" in (work / "logs/prepare_model" / f"{model}.log").read_text()
    head = tiny.read_json(work / "results/models/tiny_bert/head.json")
    assert head["pooling"] == "mean" and head["source"].startswith(f"hub {BERT_ID}: sentence-transformers"), head


def test_data_rows_come_from_the_cached_dataset(hub, run):
    _, _, cached = hub
    work, _ = run
    prepared = {s: read_jsonl(work / f"results/emotion/data/{s}.jsonl") for s in ("train", "validation", "test")}
    for split, n in SAMPLE.items():
        assert len(prepared[split]) == n, split
        assert prepared[split], "nothing to check"
        assert all(r["label"] in CLASS_NAMES for r in prepared[split]), split  # names, not ClassLabel integers
    # each row is one the cache holds, with the name its source file gives: test from the test split,
    # train and the carved validation split (the cache has none) from train, disjoint
    as_pairs = {s: {(r["text"], r["label"]) for r in rows} for s, rows in prepared.items()}
    assert as_pairs["test"] <= set(cached["test"])
    assert as_pairs["train"] <= set(cached["train"]) and as_pairs["validation"] <= set(cached["train"])
    assert not {t for t, _ in as_pairs["train"]} & {t for t, _ in as_pairs["validation"]}
    summary = tiny.read_json(work / "results/emotion/data/summary.json")
    assert {s: v["rows"] for s, v in summary["splits"].items()} == SAMPLE


def test_every_run_scored_and_reported(run):
    work, _ = run
    for model, method in RUNS:
        m = tiny.read_json(work / f"results/emotion/{model}/{method}/metrics.json")
        assert (
            0 <= m["accuracy"] <= 1
            and len(read_jsonl(work / f"results/emotion/{model}/{method}/predictions.jsonl")) == SAMPLE["test"]
        )
    assert (work / "results/emotion/tiny_bert/lora-s0/adapter/adapter_config.json").is_file()
    html = (work / "results/report.html").read_text(encoding="utf-8")
    assert "tiny_llama" in html and "tiny_bert" in html


def error_line(output, needle):
    """The one line of a failed run's output that names `needle` (the exception raised in the job)."""
    lines = [line for line in output.splitlines() if needle in line and "Error" in line]
    assert lines, output[-4000:]
    return lines[-1]


def test_ids_not_in_the_cache_fail_naming_the_id(hub, tmp_path):
    """A model id the cache lacks stops the workflow at parse time (offline: nothing is tried on the
    network), before any job; a dataset id it lacks stops its job at once. Each with one line
    naming the id, and no output left behind."""
    hf_home, _, _ = hub
    tiny.write_config(tmp_path, hub_config({"ghost": {"type": "causal_lm", "hub_id": MISSING_ID}}))
    proc = tiny.snakemake(tmp_path, "results/models/ghost", env=offline_env(hf_home), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    model_error = error_line(out, MISSING_ID)
    assert model_error.startswith(
        f"Error: config.yaml: models.ghost: model hub_id '{MISSING_ID}': not in the "
        f"Hugging Face cache ({hf_home / 'hub'})"
    ), model_error
    assert "run once with network access" in model_error and "use_hub: false" in model_error
    assert not (tmp_path / "results").exists()
    cached_model = {"tiny_llama": {"type": "causal_lm", "hub_id": LLAMA_ID, "chat_template": True}}
    tiny.write_config(tmp_path, hub_config(cached_model, dataset=MISSING_DATA_ID))
    proc = tiny.snakemake(tmp_path, "results/emotion/data/test.jsonl", env=offline_env(hf_home), check=False)
    assert proc.returncode != 0
    assert f"'{MISSING_DATA_ID}'" in error_line(proc.stdout + proc.stderr, MISSING_DATA_ID)
    assert not (tmp_path / "results/emotion/data/test.jsonl").exists()
