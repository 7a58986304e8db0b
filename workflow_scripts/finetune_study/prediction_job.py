"""The resumable end of a model job that predicts on the test split (predict.py, tag_entities.py):
run its predict function over the rows in chunks saved under checkpoint_dir/<stage>/<run>/<key>
(inference.run_chunked; the key hashes the settings, the code and the weights, so another run's
chunks are never reused), write the predictions and the provenance, and delete the chunks."""

import shutil
from pathlib import Path

from . import common, hashing, inference, models, provenance


def write_predictions(snakemake, rows, predict_fn, settings, stage, output="predictions"):
    """The predictions of every row (also written to snakemake.output[output]), resuming from the
    chunks a killed job with the same key left."""
    adapter = snakemake.input.get("adapter")
    run = Path(snakemake.output[output]).parent.relative_to("results")
    key = hashing.short_hash(
        [settings, snakemake.params.code, provenance.weights_fingerprint(snakemake.input.model, adapter)]
    )
    chunk_dir = Path(snakemake.config["checkpoint_dir"]) / stage / run / key
    preds = inference.run_chunked(rows, predict_fn, chunk_dir, snakemake.params.chunk_size)
    common.write_jsonl(snakemake.output[output], preds)
    common.write_json(
        snakemake.output.provenance, test_split_provenance(snakemake, adapter, settings["model"]["dtype"])
    )
    shutil.rmtree(chunk_dir, ignore_errors=True)
    return preds


def test_split_provenance(snakemake, adapter, dtype):
    """The provenance of a model job on the test split (predictions here, generate.py's responses):
    code, test data, weights, dtype and the device it computed on."""
    return provenance.provenance(
        snakemake.params.code,
        {"test": snakemake.input.test},
        snakemake.input.model,
        adapter,
        dtype,
        models.device_name(),
    )
