"""Where every result lives: the one place the layout of results/ (and benchmarks/) is written.

The rules use these patterns as their outputs (Snakemake fills the {wildcards}); the input
functions, the report and the results table format them. Standard library only.
"""

import os
from pathlib import Path

MODEL_DIR = "results/models/{model}"
SPLIT = "results/{task}/data/{split}.jsonl"
SPLIT_INFO = "results/{task}/data/{split}.info.json"
SUMMARY = "results/{task}/data/summary.json"
RUN_DIR = "results/{task}/{model}/{method}"
ADAPTER = RUN_DIR + "/adapter"
TRAIN_LOG = RUN_DIR + "/train_log.json"
PREDICTIONS = RUN_DIR + "/predictions.jsonl"
PROVENANCE = RUN_DIR + "/provenance.json"
METRICS = RUN_DIR + "/metrics.json"
PERPLEXITY = RUN_DIR + "/perplexity.json"
GEN_DIR = RUN_DIR + "/gen/{decoding}"
GENERATIONS = GEN_DIR + "/generations.jsonl"
GEN_METRICS = GEN_DIR + "/metrics.json"
GEN_PROVENANCE = GEN_DIR + "/provenance.json"
HUMAN_EVAL_TEMPLATE = GEN_DIR + "/human_eval_template.json"
NER_DIR = RUN_DIR + "/ner"  # token classification: a run's entities, their provenance and scores
NER_PREDICTIONS = NER_DIR + "/predictions.jsonl"
NER_PROVENANCE = NER_DIR + "/provenance.json"
NER_METRICS = NER_DIR + "/metrics.json"
TARGET_DIR = RUN_DIR + "/targets/{decoding}"  # source -> target: a run's outputs at one decoding point
TARGET_OUTPUTS = TARGET_DIR + "/outputs.jsonl"
TARGET_PROVENANCE = TARGET_DIR + "/provenance.json"
TARGET_METRICS = TARGET_DIR + "/metrics.json"
TARGET_PERPLEXITY = RUN_DIR + "/targets/perplexity.json"
COMPARISON = "results/{task}/comparison.json"
TRAINING_GRID = "results/{task}/training_grid.json"
FIGURE = "results/{task}/figures/{figure}.png"
FINETUNE_BENCHMARK = "benchmarks/finetune/{task}/{model}/{method}.tsv"
REPORT = "results/report.html"
METRICS_TABLE = "results/metrics.csv"


def relative(path) -> str:
    """A path under the working directory as a relative path, so moving the folder changes no key."""
    p = Path(path)
    if p.is_absolute():
        try:
            return os.path.relpath(p, Path.cwd()) if p.resolve().is_relative_to(Path.cwd().resolve()) else str(p)
        except ValueError:
            return str(p)
    return str(p)


class DeclaredInputs:
    """A job's inputs (snakemake.input) as the only files it may read: reading a path the rule did
    not declare is an error, so no result is read without being a dependency of the job."""

    def __init__(self, files):
        self.files = {os.path.normpath(str(f)) for f in files}

    def path(self, path):
        p = os.path.normpath(str(path))
        if p not in self.files:
            raise KeyError(f"{path} is not an input of this job; add it to the rule's input function")
        return path

    def json(self, path):
        from .common import read_json

        return read_json(self.path(path))

    def jsonl(self, path):
        from .common import read_jsonl

        return read_jsonl(self.path(path))
