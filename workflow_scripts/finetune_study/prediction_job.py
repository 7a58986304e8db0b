"""The two ends of a model job on the test split (predict.py, tag_entities.py, generate.py,
generate_targets.py): the decoding settings it generates with (job_decoding), and the resumable
end: run its predict function over the rows in chunks saved under checkpoint_dir/<stage>/<run>/<key>
(inference.run_chunked; the key hashes the settings, the code and the weights, so another run's
chunks are never reused), write the predictions and the provenance, and delete the chunks."""

import shutil
from pathlib import Path

from . import common, hashing, inference, keys, models, provenance

# what the provenance records of how the outputs were generated (settings that are in no key)
GENERATED_WITH = ("batch_size", "cache", "compile")


def job_decoding(snakemake, settings):
    """Every decoding setting this job generates with (keys.job_decoding's runtime: the settings its
    key holds plus the cache kind, compile flag and batch size that are in no key), from the config
    point its rule built the key from. Prints them in one line for the job's log."""
    w = snakemake.wildcards
    point = keys.decoding_point(snakemake.config["tasks"][w.task], w.get("decoding"))
    runtime = keys.job_decoding(snakemake.config, w.model, w.method, point)["runtime"]
    differ = sorted(k for k, v in settings["decoding"].items() if runtime.get(k) != v)
    if differ:  # a bug, never a user's: outputs generated under settings their key does not name
        raise RuntimeError(f"decoding settings {differ}: the job's key and keys.job_decoding's runtime disagree")
    print("decoding: " + ", ".join(f"{k}={runtime.get(k)}" for k in GENERATED_WITH))
    return runtime


def generated_with(decoding):
    """The provenance entry of a decoding: its settings that are in no key (GENERATED_WITH)."""
    return {k: decoding.get(k) for k in GENERATED_WITH}


def write_predictions(snakemake, rows, predict_fn, settings, stage, output="predictions", decoding=None):
    """The predictions of every row (also written to snakemake.output[output]), resuming from the
    chunks a killed job with the same key left. decoding: the settings it generated with
    (job_decoding), recorded in its provenance."""
    adapter = snakemake.input.get("adapter")
    run = Path(snakemake.output[output]).parent.relative_to("results")
    key = hashing.short_hash(
        [settings, snakemake.params.code, provenance.weights_fingerprint(snakemake.input.model, adapter)]
    )
    chunk_dir = Path(snakemake.config["checkpoint_dir"]) / stage / run / key
    preds = inference.run_chunked(rows, predict_fn, chunk_dir, snakemake.params.chunk_size)
    common.write_jsonl(snakemake.output[output], preds)
    common.write_json(
        snakemake.output.provenance, test_split_provenance(snakemake, adapter, settings["model"]["dtype"], decoding)
    )
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return preds


def test_split_provenance(snakemake, adapter, dtype, decoding=None):
    """The provenance of a model job on the test split (predictions here, generate.py's responses):
    code, test data, weights, dtype and the device it computed on; for a job that generated, how
    (generated_with: the settings that change no output, so changing them reruns nothing and this
    says which ones produced the file)."""
    out = provenance.provenance(
        snakemake.params.code,
        {"test": snakemake.input.test},
        snakemake.input.model,
        adapter,
        dtype,
        models.device_name(),
    )
    if decoding is not None:
        out["generated_with"] = generated_with(decoding)
    return out
