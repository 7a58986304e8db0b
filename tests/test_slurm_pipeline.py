"""The tiny pipeline through the real local SLURM cluster with profiles/slurm, to a finished report:
model, data, inference and fine-tune jobs are submitted with sbatch; metrics, figures and the
report run on the submitting host (localrules). Skipped, with the reason, where no cluster starts."""
import re

import pytest

import tiny
from conftest import REPO
from test_slurm_smoke import slurm_cluster  # noqa: F401  (fixture)


@pytest.mark.slurm
def test_pipeline_runs_on_slurm(slurm_cluster, tmp_path):  # noqa: F811
    tiny.make_tiny_llama(tmp_path / "models" / "llama")
    work = tmp_path / "work"
    c = tiny.tiny_config(tmp_path / "models", work)
    task = c["tasks"]["emotion"]
    task["models"], task["raw_prompt_models"] = ["tiny_llama"], []
    task["finetune"] = {"tiny_llama": task["finetune"]["tiny_llama"]}
    c["models"]["tiny_llama"]["resources"] = {"mem_mb": 2000, "runtime": 10}
    tiny.write_config(work, c)
    proc = tiny.snakemake(work, "--workflow-profile", str(REPO / "profiles/slurm"), "--jobs", "2",
                          "--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "2",
                          "--latency-wait", "10", "results/report.html", env={"LORA_SLURM_PARTITION": "cpu"})
    out = proc.stdout + proc.stderr
    cluster_rules = re.findall(r"^rule (\w+):", out, re.M)
    assert sorted(cluster_rules) == ["finetune", "predict", "predict", "prepare_data", "prepare_model"], out[-4000:]
    assert len(re.findall(r"submitted with SLURM jobid \d+", out)) == 5
    assert (work / "results/report.html").exists()
    for meth in ("zeroshot", "lora"):
        m = tiny.read_json(work / f"results/emotion/tiny_llama/{meth}/metrics.json")
        assert m["n"] == 16
    assert "localrule report" in out and "localrule score" in out
