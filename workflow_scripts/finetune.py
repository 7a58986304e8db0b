"""Snakemake script: one fine-tune (LoRA, DoRA, IA3, prompt or prefix tuning, full, QLoRA) of one
model on one task; writes what it trained (a PEFT adapter, or the whole model for `full`) and a
training log with the trainable and total parameter counts.

Run by rule finetune (rules/finetune.smk), once per model x method x seed; the method comes from
the run's name (<method>-s<seed>, or <method>-<grid point>-s<seed>) and the settings key. Checkpoints go under checkpoint_dir
(outside the declared outputs) in a folder named by provenance.resume_key: the settings, the code, the
content of the train/validation splits and the base weights. So a killed or resubmitted job resumes,
and a run with any other input starts afresh. After success the run folder's other resume keys
(superseded inputs) are deleted, and so are its own checkpoints unless keep_checkpoints is set.
Causal LMs learn prompt -> label with the loss on the answer tokens only; encoders train the
method's parameters plus their classification head.

With `tracking.mlflow` in the config, the run is logged to MLflow afterwards (finetune_study/tracking.py).

The job itself is finetune_study/finetune_job.py: run in this process for one process, or through
torchrun in `distributed.processes` processes (finetune_worker.py; sharding.py, distributed.py).
"""

from finetune_study import common, finetune_job, sharding, tracking

# the task-type part finetune_job runs (tasks/<type>_training.py), in this stage's code fingerprint
TASK_PART = "training"

job = finetune_job.describe(snakemake)
with common.log_to(common.snakemake_log(snakemake)):
    if sharding.is_distributed(job["distributed"]):
        finetune_job.launch(job)
    else:
        finetune_job.run(job)
    # MLflow, when the config turns it on (tracking.py): from this process once the outputs are
    # written, also after a multi-process run; a tracker that fails is one warning line here
    w, p = snakemake.wildcards, snakemake.params
    tracking.log_finetune(snakemake.config, w.task, w.model, w.method, p.settings, p.code, **job["outputs"])
