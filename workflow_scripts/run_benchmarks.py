"""Snakemake script: lm-evaluation-harness's scores of one run (a causal LM zero-shot, or with a
fine-tune's adapter) on the standard sets of its task's `benchmarks` block (rule benchmark,
rules/benchmarks.smk). Writes lm-eval's acc and acc_norm with its standard errors per set
(results.json, with the run's provenance) and every item's scores (samples.jsonl), which
general_ability.py pairs with the base model's on the same items.
"""

import json
import tempfile
from importlib.metadata import version

from finetune_study import benchmarks, common, lm_eval_tasks, model_kinds, models, provenance

s = json.loads(snakemake.params.settings)
adapter = snakemake.input.get("adapter")
files = dict(zip(sorted(s["sets"]), snakemake.input.data))  # benchmarks.job_inputs: in name order
# in the key only where scores depend on the batching (keys.batch_invariant), else read from the
# config itself: changing it reruns nothing
task = snakemake.config["tasks"][snakemake.wildcards.task]
batch_size = s.get("batch_size") or benchmarks.settings(snakemake.config, task)["batch_size"]

with common.log_to(common.snakemake_log(snakemake)):
    common.use_cpu_threads(snakemake.config, snakemake.threads)
    common.seed_everything(0)
    model = model_kinds.get("causal_lm").load(snakemake.input.model, s["model"], adapter=adapter)
    # right padding: lm-eval pads a batch on the right and reads each row's own positions
    tok = models.load_tokenizer(snakemake.input.model, s["model"]["trust_remote_code"], padding_side="right")
    lm = lm_eval_tasks.harness_model(model, tok, batch_size)
    with tempfile.TemporaryDirectory(prefix="lm_eval_tasks.") as folder:
        scores, samples = lm_eval_tasks.evaluate(lm, files, s["limit"], folder)
    for name, sc in scores.items():
        print(f"{name}: n={sc['n']} acc={sc['acc']} acc_norm={sc['acc_norm']}")
    record = {
        "sets": scores,
        "limit": s["limit"],
        "num_fewshot": s["num_fewshot"],
        "lm_eval_version": version("lm-eval"),
        "provenance": provenance.provenance(
            snakemake.params.code,
            data=files,
            model_dir=snakemake.input.model,
            adapter=adapter,
            dtype=s["model"]["dtype"],
            device=models.device_name(),
        ),
    }
    common.write_jsonl(snakemake.output.samples, samples)
    common.write_json(snakemake.output.results, record)
