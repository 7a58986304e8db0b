"""The decoding settings that change no output (the KV-cache kind, the compile flag, the batch size
where outputs are batch-invariant) reach model.generate in every script that generates, from the
same function that builds their stage keys (keys.job_decoding), and the provenance says which ones
produced a file. The four scripts run in-process on a tiny LLaMA with a spy on transformers'
GenerationMixin.generate; what the kwargs must hold is written out here, not taken from the code."""

import copy
import json
import runpy

import pytest

import tiny
from conftest import DATA_DIR, REPO
from finetune_study import common, keys, paths
from finetune_study import config as cfg
from finetune_study.tasks import classification, generation, source_target, token_classification

FAST = {"max_new_tokens": 3, "batch_size": 2, "cache": "static", "compile": True}
TYPES = ["person", "location"]


def _config(models_dir):
    files = {"train": "unused.tsv"}  # the scripts read the test rows written below, never these
    c = {
        "data_dir": str(DATA_DIR),
        "checkpoint_dir": "checkpoints",
        "models": {
            "tiny_llama": {"type": "causal_lm", "source": {"path": str(models_dir / "llama")}, "dtype": "float32"}
        },
        "tasks": {
            "cls": {
                "type": "classification",
                "files": files,
                "labels": ["yes", "no"],
                "scoring": "generate",
                "decoding": FAST,
                "models": ["tiny_llama"],
            },
            "gen": {"type": "generation", "files": files, "decodings": {"fast": FAST}, "models": ["tiny_llama"]},
            "ner": {
                "type": "token_classification",
                "files": files,
                "entity_types": TYPES,
                "decoding": FAST,
                "models": ["tiny_llama"],
            },
            "s2t": {
                "type": "source_target",
                "field": "summarization",
                "files": files,
                "prompt": {"template": "Summarize: {text}\nSummary:"},
                "decodings": {"fast": FAST},
                "models": ["tiny_llama"],
            },
        },
    }
    return cfg.validate(c, REPO / "schemas" / "config.schema.yaml")


ROWS = {
    "cls": [{"id": i, "text": t, "label": "yes"} for i, t in enumerate(["good day", "a long and winding road"])],
    "gen": [{"id": i, "instruction": t, "input": "", "output": "ok"} for i, t in enumerate(["Say hi.", "Count."])],
    "ner": [{"id": 0, "tokens": ["Ann", "is", "in", "Paris"], "tags": ["B-person", "O", "O", "B-location"]}],
    "s2t": [{"id": i, "text": t, "references": ["short"]} for i, t in enumerate(["A: hi\nB: hello", "A: bye"])],
}
# script, the key its rule builds, its outputs, its decoding wildcard
SCRIPTS = {
    "cls": ("predict.py", lambda c, t: classification.inference_settings(c, t, "tiny_llama", "zeroshot")),
    "gen": ("generate.py", lambda c, t: generation.generation_settings(c, t, "tiny_llama", FAST, "zeroshot")),
    "ner": ("tag_entities.py", lambda c, t: token_classification.tag_settings(c, t, "tiny_llama", "zeroshot")),
    "s2t": ("generate_targets.py", lambda c, t: source_target.target_settings(c, t, "tiny_llama", "zeroshot", "fast")),
}
RUN = {"model": "tiny_llama", "method": "zeroshot", "decoding": "fast"}
OUTPUTS = {  # the rules' outputs (rules/*.smk)
    "cls": {"predictions": paths.PREDICTIONS, "provenance": paths.PROVENANCE},
    "gen": {
        "generations": paths.GENERATIONS,
        "human_eval_template": paths.HUMAN_EVAL_TEMPLATE,
        "provenance": paths.GEN_PROVENANCE,
    },
    "ner": {"predictions": paths.NER_PREDICTIONS, "provenance": paths.NER_PROVENANCE},
    "s2t": {"outputs": paths.TARGET_OUTPUTS, "provenance": paths.TARGET_PROVENANCE},
}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    models_dir = tmp_path_factory.mktemp("models")
    tiny.make_tiny_llama(models_dir / "llama")
    return models_dir


def test_cache_and_compile_stay_out_of_every_key(llama):
    """Editing them reruns nothing: no stage key holds them (the rerun contract's row shows the plan)."""
    c = _config(llama)
    edited = copy.deepcopy(c)
    for t in edited["tasks"].values():
        for point in [t.get("decoding")] + list(t.get("decodings", {}).values()):
            if point:
                point.update(cache="dynamic", compile=False, batch_size=5)
    for name, (_, settings) in SCRIPTS.items():
        key = settings(c, c["tasks"][name])
        assert key == settings(edited, edited["tasks"][name]), name
        assert not {"cache", "compile"} & set(key["decoding"]), name
        job = keys.job_decoding(
            c,
            c["tasks"][name],
            "tiny_llama",
            "zeroshot",
            keys.decoding_point(c["tasks"][name], "fast" if name in ("gen", "s2t") else None),
        )
        assert job["key"] == key["decoding"] and job["runtime"]["cache"] == "static", name
    # nor the decoding points the generation figures draw
    assert generation.figure_decodings(c["tasks"]["gen"]) == generation.figure_decodings(edited["tasks"]["gen"])


@pytest.mark.parametrize("name", list(SCRIPTS))
def test_every_generating_script_passes_cache_and_compile_to_generate(name, llama, tmp_path, monkeypatch):
    from transformers.generation.utils import GenerationMixin

    c = _config(llama)
    task = c["tasks"][name]
    script, settings = SCRIPTS[name]
    seen = []
    real = GenerationMixin.generate

    def spy(self, *args, **kw):
        seen.append(kw)
        return real(self, *args, **kw)

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    monkeypatch.chdir(tmp_path)  # the scripts write under results/ and checkpoints/
    common.write_jsonl(tmp_path / "test.jsonl", ROWS[name])
    outputs = {k: v.format(task=name, **RUN) for k, v in OUTPUTS[name].items()}
    wildcards = {"task": name, "model": "tiny_llama", "method": "zeroshot"}
    if name in ("gen", "s2t"):
        wildcards["decoding"] = "fast"
    job = tiny.ScriptJob(
        params=tiny.ScriptJob(
            settings=json.dumps(settings(c, task)), code="test", chunk_size=64, peft_task_type="CAUSAL_LM"
        ),
        log=[],
        wildcards=tiny.ScriptJob(**wildcards),
        threads=1,
        config=c,
        input=tiny.ScriptJob(model=str(llama / "llama"), test=str(tmp_path / "test.jsonl")),
        output=tiny.ScriptJob(**outputs),
    )
    runpy.run_path(str(REPO / "workflow_scripts" / script), init_globals={"snakemake": job})
    # every batch (two rows at batch_size 2: one) got the static cache and was allowed to compile
    assert len(seen) == 1
    assert seen[0]["cache_implementation"] == "static" and seen[0]["disable_compile"] is False
    assert seen[0]["max_new_tokens"] == 3 and seen[0]["do_sample"] is False
    prov = json.loads((tmp_path / outputs["provenance"]).read_text())
    assert prov["generated_with"] == {"backend": "transformers", "batch_size": 2, "cache": "static", "compile": True}
