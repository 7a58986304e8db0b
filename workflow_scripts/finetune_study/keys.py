"""What each stage's output depends on: the cache key of every Snakemake rule, in one place.

A stage's key is exactly the settings its script reads that can change its output, plus a
fingerprint of the code it runs (fingerprints.py: the script and every finetune_study module it
imports). The rule files pass these keys as `params:`, so Snakemake reruns a job when, and only
when, its key changes (or its input files do). What is deliberately NOT in a key:
- cluster resources, params_b, roles, report titles and notes (they change only the report);
- batch sizes where outputs are identical across batchings (greedy decoding, likelihood and
  encoder scoring; tested), and the decoding seed where nothing is sampled;
- the KV-cache kind and compile flag (static = dynamic output, tested): how a job generates, not
  what (job_decoding gives the job every setting it runs with; its provenance records them);
- checkpoint_every and the checkpoint folder (resuming is exact);
- a distributed fine-tune's node count (placement only; its process count and strategy are in);
- a fine-tune entry's settings blocks that its method does not read (finetune_methods.METHODS:
  `lora` for lora/dora/qlora, `ia3`, `prompt` for prompt/prefix tuning, `bottleneck`, none for full);
- absolute paths of the working directory.

The keys of the stages one task type owns (its predictions, scores) live in that task type's
module (tasks/); what every task shares (data, models, fine-tunes, decoding) is here. The resume
key of a fine-tune (provenance.resume_key) is computed inside the job from the key plus the
content of its data splits and model weights.

Standard library only: it runs at Snakemake parse time.
"""

from . import attention, backends, model_kinds, precision, runs, sharding, tasks
from .decoding import task_points
from .finetune_methods import METHOD_SETTINGS, bottleneck_settings
from .hashing import canonical, short_hash  # noqa: F401 (the rule files call keys.canonical)
from .runs import entry_method, finetune_entry, parse_run_point

DATA_KEYS = [
    "type",
    "files",
    "format",
    "encoding",
    "header",
    "column_names",
    "text_column",
    "label_column",
    "labels",
    "label_map",
    "drop_rows_with_label",
    "validation_fraction",
    "test_fraction",
    "seed",
    "max_chars",
    "instruction_column",
    "input_column",
    "output_column",
    "token_column",
    "tag_column",
    "separator",
    "tag_scheme",
    "strict_iob2",
    "entity_types",
    "source_column",
    "target_column",
    "document_column",
    "split_by",
]
SAMPLING_KEYS = ("do_sample", "temperature", "top_k", "top_p")
# decoding settings that change how a job generates, never what: in no key, in its provenance. The
# backend asked for is one of them; the backend that runs enters the key when it is vLLM (job_decoding).
RUNTIME_DECODING = ("cache", "compile", "backend")


# ---------------------------------------------------------------- stage keys


def data_settings(config, task, split):
    """What one split's rows depend on: every data setting except the other splits' sample sizes."""
    settings = {k: task[k] for k in DATA_KEYS if k in task}
    settings["sample"] = (task.get("sample") or {}).get(split)
    settings["split"] = split
    settings["source"] = "hub" if config["use_hub"] else "files"
    if config["use_hub"]:
        settings["hub_id"], settings["hub_config"] = task.get("hub_id"), task.get("hub_config")
        if task.get("hub_splits"):
            settings["hub_splits"] = task["hub_splits"]
    return settings


def model_origin(config, model):
    """What a materialized model folder depends on: where the weights come from and how they load."""
    hub = config["use_hub"] or "source" not in model
    return {
        "type": model["type"],
        "trust_remote_code": model["trust_remote_code"],
        "dtype": model["dtype"],
        "origin": {"hub_id": model.get("hub_id")} if hub else {"source": model["source"]},
    }


def model_settings(model):
    """How later stages load a prepared model (never its role, resources or size)."""
    keys = ["type", "trust_remote_code", *model_kinds.get(model["type"]).STAGE_KEYS]
    # the dtype the stage computes in, 'auto' resolved for this machine (precision.resolve): a float32
    # result is never served as a bfloat16 one, nor the reverse
    return {**{k: model[k] for k in keys}, "dtype": precision.model_dtype(model)}


def _training_key(training, seed):
    t = {k: v for k, v in training.items() if k not in ("seeds", "checkpoint_every", "attention_dtype")}
    t["seed"] = seed
    if not t.get("packing"):
        t.pop("pack_length", None)
    if t.get("eval_sample") is None:
        t.pop("eval_sample", None)
    if t.get("gradient_accumulation", 1) == 1:  # the default adds nothing: plain runs keep their keys
        t.pop("gradient_accumulation", None)
    # nor do these defaults; set, each is in the key (a token-sized step trains on other batches,
    # fused kernels and compiled code round differently). gradient_checkpointing is in as written:
    # true, false or auto, never what auto decided on the machine (checkpointing changes no result)
    for k, default in (("tokens_per_step", None), ("kernels", "none"), ("compile", False)):
        if t.get(k, default) == default:
            t.pop(k, None)
    return t


def method_settings(ft):
    """The method of a fine-tune entry and the one settings block it reads (lora for lora/dora/qlora,
    ia3, prompt for prompt/prefix tuning, bottleneck, none for full): a change to another block reruns
    nothing."""
    method = entry_method(ft)
    block = METHOD_SETTINGS[method]
    if block == "bottleneck":  # aliases and the config's default non-linearity resolved: one adapter, one key
        return {"method": method, block: bottleneck_settings(ft[block])}
    return {"method": method, **({block: ft[block]} if block else {})}


def finetune_settings(config, task, model_name, run):
    """Key of one fine-tuned run (run: '<method>-s<seed>'): the model, the method and its settings,
    the training settings with this seed, and what the examples are built from."""
    method, point, seed = parse_run_point(run)
    model = config["models"][model_name]
    ft = finetune_entry(task, model_name, method, point)
    settings = {
        "task_type": task["type"],
        "peft_task_type": tasks.peft_task_type(task["type"], model["type"]),
        "model": model_settings(model),
        "finetune": {**method_settings(ft), "training": _training_key(ft["training"], seed)},
    }
    if method == "full":  # float32 master weights under dtype auto (precision.master_dtype)
        settings["finetune"]["master_dtype"] = precision.master_dtype(model, method)
    attention_dtype = attention.resolve(ft["training"].get("attention_dtype", "auto"), model)
    if attention_dtype != settings["model"]["dtype"]:  # float32 attention in a bf16 fine-tune (attention.py)
        settings["finetune"]["attention_dtype"] = attention_dtype
    dist = sharding.key(sharding.settings(model, ft))
    if dist:  # processes and strategy; one process adds nothing
        settings["distributed"] = dist
    settings.update(tasks.spec(task["type"]).finetune_settings(task, model))  # how its examples are built
    return settings


def resume_settings(settings):
    """The settings a fine-tune's checkpoints are keyed on (provenance.resume_key): its stage key
    with the process count and gradient accumulation replaced by what a checkpoint's use depends on,
    the examples per optimizer step (sharding.resume_key): a distributed run resumes on another
    process count with the same examples per step."""
    training = dict(settings["finetune"]["training"])
    dist = settings.get("distributed")
    out = {k: v for k, v in settings.items() if k != "distributed"}
    if dist:
        full = {**sharding.ONE_PROCESS, **dist}
        out["distributed"] = sharding.resume_key(full, training)
        training.pop("gradient_accumulation", None)
    out["finetune"] = {**settings["finetune"], "training": training}
    return out


def batch_invariant(dtype):
    """Whether a row's output is the same in every batch (greedy and beam decoding, likelihood and
    encoder scoring): in float32, yes (tested). In bfloat16 and float16 the padding of a batch
    changes the kernels' rounding (label log-probabilities move by about 3e-4 nats), which can
    flip a near tie, so there the batch size is part of those stages' keys."""
    return dtype == "float32"


def prompt_key(prompt):
    """A prompt block as the stage keys hold it: without `fewshot`, which only the rows that are not
    fine-tuned read (fewshot_settings), so fine-tunes and fine-tuned rows keep their keys."""
    return {k: v for k, v in prompt.items() if k != "fewshot"}


def fewshot_problem(task):
    """Why a task's prompt.fewshot cannot be drawn (more examples than sample.train keeps), or None."""
    k = (task.get("prompt") or {}).get("fewshot", 0)
    n = (task.get("sample") or {}).get("train")
    if k and n and k > n:
        return f"{k} examples asked for, but sample.train keeps {n} training rows; lower fewshot or raise sample.train"
    return None


def fewshot_settings(task, method):
    """{"fewshot": {"k", "seed"}} for a row that is not fine-tuned (zero-shot, raw prompt) when the
    task's prompt.fewshot is above 0: k train examples drawn with the task's seed; else {}, so
    fewshot 0 leaves every key as it was. A fine-tuned row is asked as it was trained."""
    k = (task.get("prompt") or {}).get("fewshot", 0)
    if not k or runs.method_seed(method) is not None or method == "baseline":
        return {}
    return {"fewshot": {"k": k, "seed": task["seed"]}}


def decoding_key(decoding):
    """The decoding settings that can change generated text, in one canonical form: the arguments
    model.generate gets (decoding.to_generate_kwargs), its defaults left out. Greedy and beam search
    drop the sampling settings and the seed; `do_sample: false` and `num_beams: 1` are the defaults
    (always passed to generate), so a grid point `topk30_nb1_t0` and a plain `greedy` are one key.
    Batch size only matters where outputs depend on batching (sampling is seeded per batch; beam
    search is kept to be safe). Stop strings (`stop`) are in the key; none (absent or []) adds
    nothing."""
    d = {k: v for k, v in decoding.items() if k not in RUNTIME_DECODING}
    if not d.get("stop"):  # no stop strings: the key of a decoding written before `stop` existed
        d.pop("stop", None)
    sampled = bool(d.get("do_sample"))
    if not sampled:
        for k in SAMPLING_KEYS + ("seed",):
            d.pop(k, None)
    if d.get("num_beams", 1) == 1:
        d.pop("num_beams", None)
        if not sampled:
            d.pop("batch_size", None)
    return d


def decoding_point(task, name=None):
    """A task's decoding settings for one job: point `name` of its `decodings`/`decoding_grid`
    (generation, source -> target), or its one `decoding` (name None: classification, NER)."""
    return task["decoding"] if name is None else task_points(task)[name]


def job_decoding(config, task, model_name, method, point, batch_in_key=True):
    """The decoding of one generating job, as {"key": ..., "runtime": ...}, from one place: `key` is
    what its stage key holds (decoding_key, plus the batch size where outputs depend on batching and
    batch_in_key: a classification key holds its batch size beside the decoding instead); `runtime`
    is every setting the job generates with: the point's own, the cache kind, compile flag and
    batch size that are in no key included. The rules take the key, the scripts the runtime
    (prediction_job.job_decoding), so a setting cannot reach one and miss the other.

    The backend (backends.select) is resolved here: vLLM's greedy outputs can differ from
    transformers' (other kernels), so a job that runs on vLLM holds `backend: vllm` in its key, and
    its tensor-parallel size above 1 (another split of the sums); vLLM schedules its own batches,
    so there the batch size is in no key. A transformers job's key holds no backend: the keys of
    runs made before backends existed stand."""
    backend, why = backends.select(config, task, model_name, method, point)
    key = decoding_key(point)
    tp = backends.tensor_parallel(config, model_name) if backend == "vllm" else 1
    if backend == "vllm":
        key["backend"] = "vllm"
        if tp > 1:
            key["tensor_parallel"] = tp
    elif batch_in_key and not batch_invariant(precision.model_dtype(config["models"][model_name])):
        key["batch_size"] = point.get("batch_size")
    runtime = dict(point, backend=backend, tensor_parallel=tp, backend_note=why)
    return {"key": key, "runtime": runtime}


def shared_decodings(decodings, human_eval=None):
    """{decoding name: the name whose generation it shares}: points with the same decoding_key (the
    same generate arguments) share the first one's generation and scores, in config order. Points
    named by a human evaluation ({"model/method/decoding": file}) are scored on their own."""
    keep = {k.rpartition("/")[2] for k in (human_eval or {})}
    first, out = {}, {}
    for name, params in decodings.items():
        # the batch size too: under bf16 it is in the generation key (batch_invariant)
        # and the backend asked for: two points that ask for different backends keep their own jobs
        k = canonical([decoding_key(params), params.get("batch_size"), params.get("backend", "auto")])
        out[name] = name if name in keep else first.setdefault(k, name)
    return out
