"""Fault tests: a fine-tune killed with SIGKILL mid-run resumes from its last complete checkpoint
when snakemake is rerun, and ends with the same adapter and the same whole-run token counters as an
uninterrupted run; inference chunks already on disk are not recomputed; a finished fine-tune removes
the checkpoints of its superseded resume keys and nothing outside its run folder."""

import json

import pytest
import torch
from safetensors.torch import load_file

import kills
import tiny
from finetune_study import inference

ADAPTER = "results/emotion/tiny_llama/lora-s0/adapter"
RUN_CKPTS = "checkpoints/emotion/tiny_llama/lora-s0"  # checkpoint_dir/<run>: one folder per resume key
FINETUNE_LOG = "logs/finetune/emotion/tiny_llama/lora-s0.log"


def plant(folder):
    """A fake checkpoint folder, with a file in it."""
    (folder / "step-00000003").mkdir(parents=True)
    (folder / "step-00000003" / "COMPLETE").write_text("3\n")
    return folder


def key_folders(work):
    """The resume-key folders of the lora-s0 run (names of provenance.resume_key: 12 hex digits)."""
    return sorted(p.name for p in (work / RUN_CKPTS).iterdir() if len(p.name) == 12)


def removed_lines(work):
    return [line for line in (work / FINETUNE_LOG).read_text().splitlines() if line.startswith("removed checkpoints")]


def kill_at_checkpoint(step):
    """A kills.run trigger: kill at once when checkpoint `step` is marked complete."""
    marker = f"step-{step:08d}/COMPLETE"
    return lambda path, is_dir: 0 if path.endswith(marker) else None


def complete_steps(checkpoint_names):
    return [int(name.rpartition("-")[2]) for name in checkpoint_names]


def resume_config(models_dir, work):
    c = tiny.tiny_config(models_dir, work)
    task = c["tasks"]["emotion"]
    task["models"], task["raw_prompt_models"] = ["tiny_llama"], []
    task["finetune"] = {"tiny_llama": task["finetune"]["tiny_llama"]}
    task["finetune"]["tiny_llama"]["training"].update(epochs=2, checkpoint_every=1, eval_every=3)
    return c


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("resume")
    tiny.make_tiny_llama(base / "models" / "llama")
    killed, clean = base / "killed", base / "clean"
    for work in (killed, clean):
        tiny.write_config(work, resume_config(base / "models", work))
    # SIGKILL from outside, the moment step 5's checkpoint is complete (its COMPLETE marker appears)
    rc, fired, _ = kills.run(killed, base / "killed.log", ADAPTER, kill_at_checkpoint(5))
    state = {
        "first_rc": rc,
        "fired": fired,
        "adapter_after_kill": (killed / ADAPTER).exists(),
        "checkpoints_after_kill": sorted(p.parent.name for p in (killed / "checkpoints").rglob("COMPLETE")),
        "counters_after_kill": [json.loads(p.read_text()) for p in (killed / "checkpoints").rglob("counters.json")],
    }
    tiny.snakemake(killed, ADAPTER)
    tiny.snakemake(clean, ADAPTER)
    return killed, clean, state


def test_kill_leaves_checkpoints_not_outputs(runs):
    _, _, state = runs
    assert state["first_rc"] != 0 and state["fired"].endswith("step-00000005/COMPLETE")
    assert not state["adapter_after_kill"]
    # the last two complete checkpoints are kept: 4 and 5 (or 3, 4 and 5 when the kill lands
    # before the oldest is pruned; 5 and 6 when step 6 finished its checkpoint first: the kill
    # comes from outside, milliseconds after the marker)
    last = complete_steps(state["checkpoints_after_kill"])
    assert last in ([4, 5], [3, 4, 5], [5, 6], [4, 5, 6]), state["checkpoints_after_kill"]
    # each checkpoint carries the run's counters so far, as plain JSON numbers
    # (an oldest checkpoint the kill caught mid-pruning may have lost its counters already)
    assert len(state["counters_after_kill"]) >= 2 and all(c["real_tokens"] > 0 for c in state["counters_after_kill"])


def test_resumed_run_continues_and_matches_uninterrupted(runs):
    killed, clean, state = runs
    log_k = tiny.read_json(killed / "results/emotion/tiny_llama/lora-s0/train_log.json")
    log_c = tiny.read_json(clean / "results/emotion/tiny_llama/lora-s0/train_log.json")
    # resumed from the newest complete checkpoint the kill left
    assert log_k["resumed_from"] == complete_steps(state["checkpoints_after_kill"])[-1:]
    assert log_c["resumed_from"] == []
    assert [h["step"] for h in log_k["history"]] == list(range(1, 9))  # no restart in the loss curve
    assert [h["train_loss"] for h in log_k["history"]] == pytest.approx(
        [h["train_loss"] for h in log_c["history"]], rel=1e-5
    )
    assert [e["step"] for e in log_k["evals"]] == [e["step"] for e in log_c["evals"]]
    # the counters cover the whole run, the steps before the kill included, not only those after it
    assert log_k["real_tokens"] > 0 and log_k["computed_tokens"] >= log_k["real_tokens"]
    for k in ("real_tokens", "computed_tokens", "padding_fraction"):
        assert log_k[k] == log_c[k], k
    assert log_k["train_seconds"] > 0 and log_k["train_tokens_per_second"] > 0
    a = load_file(killed / ADAPTER / "adapter_model.safetensors")
    b = load_file(clean / ADAPTER / "adapter_model.safetensors")
    assert a.keys() == b.keys() and a
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_finished_inference_chunks_are_skipped(tmp_path):
    rows = [{"id": i} for i in range(10)]
    calls = []

    def predict(part):
        calls.append([r["id"] for r in part])
        return [{"id": r["id"], "pred": r["id"] * 2} for r in part]

    (tmp_path / "chunk-00000.jsonl").write_text("".join(json.dumps({"id": i, "pred": i * 2}) + "\n" for i in range(4)))
    (tmp_path / "chunk-00001.jsonl").write_text('{"id": 4, "pred": 8}\n')  # torn: too few rows, recomputed
    out = inference.run_chunked(rows, predict, tmp_path, chunk_size=4)
    assert calls == [[4, 5, 6, 7], [8, 9]]
    assert [r["pred"] for r in out] == [i * 2 for i in range(10)]


def test_changed_data_never_resumes_an_old_checkpoint(tmp_path):
    """The trap of issue #11: change sample.train after a finished fine-tune whose checkpoints were
    kept. The new run must start at step 0 and produce a new adapter, not resume the old run's
    complete final checkpoint. Once the new run succeeds, the old key's checkpoints (and any other
    superseded key's) are removed even with keep_checkpoints, the new run's own are kept, and the
    other runs' checkpoint folders are untouched."""
    tiny.make_tiny_llama(tmp_path / "models" / "llama")
    work = tmp_path / "work"
    config = resume_config(tmp_path / "models", work)
    config["keep_checkpoints"] = True
    tiny.write_config(work, config)
    tiny.snakemake(work, ADAPTER)
    old = load_file(work / ADAPTER / "adapter_model.safetensors")
    kept = sorted(p.parent.parent.name for p in (work / "checkpoints").rglob("COMPLETE"))
    assert len(set(kept)) == 1  # one resume key, its final checkpoint kept
    old_key = kept[0]
    fake = plant(work / RUN_CKPTS / "0123456789ab")  # a superseded key of this run
    others = [plant(work / "checkpoints/emotion/tiny_llama" / run / "0123456789ab") for run in ("lora-s1", "dora-s0")]
    others.append(plant(work / "checkpoints/predict/emotion/tiny_llama/lora-s0/0123456789ab"))  # predict's chunks
    others.append(plant(work / RUN_CKPTS / "notes"))  # not named like a resume key

    config["tasks"]["emotion"]["sample"]["train"] = 24
    tiny.write_config(work, config)
    tiny.snakemake(work, ADAPTER)
    log = tiny.read_json(work / "results/emotion/tiny_llama/lora-s0/train_log.json")
    assert log["resumed_from"] == []
    assert log["history"][0]["step"] == 1 and log["final_step"] == 6  # 24 rows / batch 8 x 2 epochs, from step 0
    new = load_file(work / ADAPTER / "adapter_model.safetensors")
    assert any(not torch.equal(old[k], new[k]) for k in old)
    new_key = [k for k in key_folders(work) if k != "0123456789ab"]
    assert key_folders(work) == new_key and len(new_key) == 1 and new_key[0] != old_key  # only the new run's own
    assert list((work / RUN_CKPTS / new_key[0]).glob("step-*/COMPLETE"))  # kept: keep_checkpoints
    assert not fake.exists()
    assert others, "nothing to check"
    assert all((o / "step-00000003" / "COMPLETE").is_file() for o in others)
    assert sorted(removed_lines(work)) == [
        f"removed checkpoints {RUN_CKPTS}/{k} (superseded resume key)" for k in sorted(["0123456789ab", old_key])
    ]


def test_checkpoints_are_deleted_after_success_unless_kept(tmp_path):
    tiny.make_tiny_llama(tmp_path / "models" / "llama")
    work = tmp_path / "work"
    tiny.write_config(work, resume_config(tmp_path / "models", work))
    fake = plant(work / RUN_CKPTS / "0123456789ab")  # left by superseded settings: never resumed
    other = plant(work / "checkpoints/emotion/tiny_llama/lora-s1/0123456789ab")  # another seed's
    tiny.snakemake(work, ADAPTER)
    assert (work / ADAPTER).is_dir() and not list((work / RUN_CKPTS).rglob("COMPLETE"))
    assert key_folders(work) == [] and not fake.exists()
    assert (other / "step-00000003" / "COMPLETE").is_file()
    lines = removed_lines(work)
    assert len(lines) == 2 and f"removed checkpoints {RUN_CKPTS}/0123456789ab (superseded resume key)" in lines
