"""The two ends of a model job on the test split (predict.py, tag_entities.py, generate.py,
generate_targets.py): the decoding settings it generates with (job_decoding), and the resumable
end: run its predict function over the rows in chunks saved under checkpoint_dir/<stage>/<run>/<key>
(inference.run_chunked; the key hashes the settings, the code and the weights, so another run's
chunks are never reused), write the predictions and the provenance, and delete the chunks."""

import shutil
from pathlib import Path

from . import backends, common, hashing, inference, keys, models, provenance
from .common import PipelineError

# what the provenance records of how the outputs were generated (settings that are in no key)
GENERATED_WITH = ("backend", "batch_size", "cache", "compile")


def job_decoding(snakemake, settings):
    """Every decoding setting this job generates with (keys.job_decoding's runtime: the settings its
    key holds plus the cache kind, compile flag and batch size that are in no key, and the backend),
    from the config point its rule built the key from. Prints them in one line for the job's log,
    with why the backend is not vLLM where vLLM was asked for."""
    w = snakemake.wildcards
    task = snakemake.config["tasks"][w.task]
    point = keys.decoding_point(task, w.get("decoding"))
    runtime = keys.job_decoding(snakemake.config, task, w.model, w.method, point)["runtime"]
    if settings["decoding"].get("backend", "transformers") == "transformers":
        runtime.update(backend="transformers", tensor_parallel=1)  # the key's backend, which always runs
    elif runtime["backend"] != "vllm":  # the key was built where vLLM could run, the job runs where it cannot
        raise PipelineError(
            f"this job's key says backend vllm, but vLLM cannot run here ({runtime['backend_note']}); "
            f"{backends.INSTALL}, or set decoding.backend: transformers"
        )
    differ = sorted(k for k, v in settings["decoding"].items() if runtime.get(k) != v)
    if differ:  # a bug, never a user's: outputs generated under settings their key does not name
        raise RuntimeError(f"decoding settings {differ}: the job's key and keys.job_decoding's runtime disagree")
    asked = point.get("backend", "auto")
    fallback = runtime["backend_note"] if runtime["backend"] == "transformers" and asked != "transformers" else None
    print(
        "decoding: "
        + ", ".join(f"{k}={runtime.get(k)}" for k in GENERATED_WITH + ("tensor_parallel",))
        + (f"; not vLLM: {fallback}" if fallback else "")
    )
    return runtime


def generated_with(decoding):
    """The provenance entry of a decoding: its settings that are in no key (GENERATED_WITH), and the
    tensor-parallel size of a vLLM job."""
    out = {k: decoding.get(k) for k in GENERATED_WITH}
    if decoding.get("backend") == "vllm":
        out["tensor_parallel"] = decoding.get("tensor_parallel", 1)
    return out


def generator(snakemake, settings, tokenizer, decoding, load):
    """generate(prompt_token_ids, with_ids=False) -> texts (with their new ids) through the job's
    backend: vLLM (vllm_backend, the base with the job's adapter as a LoRARequest) or transformers
    (inference.generate on load(), the job's model)."""
    if decoding["backend"] == "vllm":
        from . import vllm_backend

        engine = vllm_backend.Generator(
            snakemake.input.model, snakemake.input.get("adapter"), settings["model"], decoding
        )
        return lambda ids, with_ids=False: engine.generate(tokenizer, ids, decoding, with_ids=with_ids)
    model = load()
    return lambda ids, with_ids=False: inference.generate(model, tokenizer, ids, decoding, with_ids=with_ids)


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
