"""MLflow tracking (config tracking.mlflow; finetune_study/tracking.py, docs/mlflow.md) against a real
`mlflow server` (SQLite backend, artifacts under tmp_path, a free port on 127.0.0.1) started here.

From copies of the session's finished tiny run (conftest.tiny_run): turning tracking on plans no job;
forcing a fine-tune and the report logs runs, parameters, per-step curves and the adapter, which
read back (MlflowClient) as train_log.json, metrics.csv and the adapter files say, read here on
their own; a server killed mid-run costs one warning line and changes no result; a rerun updates
the runs instead of adding any.

mlflow is the `tracking` extra (requirements-tracking.txt), which the test environment installs:
without it these tests fail under CI (CI=true) and skip elsewhere.
"""

import csv
import hashlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

import tiny
from conftest import REPO, skip_or_fail_in_ci
from finetune_study import config as cfg
from finetune_study import fingerprints
from finetune_study.common import ConfigError

EXPERIMENT = "tiny study"
RUN = "tiny_bert/lora-s0"  # the fine-tune these tests force
TRAIN_LOG = f"results/emotion/{RUN}/train_log.json"
ADAPTER = f"results/emotion/{RUN}/adapter"
FORCE = ["-f", TRAIN_LOG, "results/report.html"]  # it, what scores it again, and the report
# columns that time the fine-tune job (Snakemake's benchmark): they change whenever it reruns
TIMING = {"finetune_time_s", "finetune_peak_rss_mib"}
WARNING = "WARNING: MLflow tracking"


def _need_mlflow():
    if importlib.util.find_spec("mlflow") is None:
        why = "mlflow is not installed (pip install -r requirements-tracking.txt)"
        skip_or_fail_in_ci(why)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(uri):
    try:
        with urllib.request.urlopen(f"{uri}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


class Server:
    """A real `mlflow server` (SQLite backend, artifacts on disk) on a free local port; stop() kills it,
    start() brings it back on the same database and port."""

    def __init__(self, root):
        self.root, self.uri, self.proc = root, f"http://127.0.0.1:{_free_port()}", None

    def start(self):
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{self.root}/mlflow.db"]
        cmd += ["--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1"]
        cmd += ["--port", self.uri.rsplit(":", 1)[1], "--workers", "1"]
        with open(self.root / "server.log", "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def wait(self):
        deadline = time.monotonic() + 180
        while not _up(self.uri):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(self.root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own process group (start_new_session)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server(tmp_path_factory, request):
    """A fresh tracking server; the session's tiny run is built (or awaited) while it starts."""
    _need_mlflow()
    srv = Server(tmp_path_factory.mktemp("mlflow")).start()
    try:
        request.getfixturevalue("tiny_run")
        srv.wait()
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tracked(tiny_run, server, tmp_path_factory):
    """A copy of the tiny run with tracking on, after one forced fine-tune and report (FORCE)."""
    work = _tracked_copy(tiny_run, tmp_path_factory.mktemp("tracked"), server.uri)
    tiny.snakemake(work, *FORCE)
    return work


def _tracked_copy(tiny_run, dest, uri):
    work, config = tiny.copy_run(tiny_run, dest)
    config["tracking"] = {"mlflow": {"uri": uri, "experiment": EXPERIMENT}}
    tiny.write_config(work, config)
    return work


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(client, kind):
    exp = client.get_experiment_by_name(EXPERIMENT)
    return client.search_runs([exp.experiment_id], f"tags.`study.kind` = '{kind}'", max_results=1000)


def _metrics_csv(work):
    with open(work / "results/metrics.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _warnings(work):
    """{job log: its lines that are tracking warnings} of every job log."""
    return {p: [x for x in p.read_text().splitlines() if WARNING in x] for p in (work / "logs").rglob("*.log")}


def _adapter(folder):
    """{file: content} of an adapter folder: the weights' sha256; adapter_config.json parsed, its
    target_modules sorted (PEFT writes a set there, in an order that varies between processes)."""
    out = {}
    for f in Path(folder).iterdir():
        if f.name.startswith("."):  # Snakemake's .snakemake_timestamp of a directory output
            continue
        if f.name == "adapter_config.json":
            c = json.loads(f.read_text())
            out[f.name] = {**c, "target_modules": sorted(c["target_modules"])}
        else:
            out[f.name] = _sha(f)
    return out


def _ids(client):
    return {kind: sorted(r.info.run_id for r in _runs(client, kind)) for kind in ("task", "finetune", "row")}


def test_tracking_is_in_no_stage_key(tiny_run, tmp_path):
    """Turning tracking on plans no job on a finished run (it is in no params), the tracking module
    is in no script's code fingerprint, and tracking without a server is one line naming the key."""
    work, _ = tiny.copy_run(tiny_run, tmp_path)
    untracked = tiny.planned_jobs(work)
    work = _tracked_copy(tiny_run, tmp_path / "tracked", "http://127.0.0.1:9")
    assert tiny.planned_jobs(work) == untracked == {}
    for script in ("finetune.py", "build_report.py"):
        files = {f.name for f in fingerprints.code_files(script, ("classification",))}
        assert "common.py" in files and "tracking.py" not in files, script
    config = yaml.safe_load((work / "config.yaml").read_text())
    del config["tracking"]["mlflow"]["uri"]
    env_uri = os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        with pytest.raises(ConfigError, match=r"tracking\.mlflow: no tracking server; set tracking\.mlflow\.uri"):
            cfg.validate(config, REPO / "schemas" / "config.schema.yaml")
    finally:
        if env_uri is not None:
            os.environ["MLFLOW_TRACKING_URI"] = env_uri


def test_runs_read_back_as_train_log_metrics_csv_and_the_adapter_say(tracked, server, tmp_path):
    work, client = tracked, _client(server.uri)
    assert not any(_warnings(work).values()), _warnings(work)
    (parent,) = _runs(client, "task")
    assert parent.info.run_name == "emotion" and parent.data.tags["study.task"] == "emotion"

    (run,) = _runs(client, "finetune")  # only the forced fine-tune ran with tracking on
    log = json.loads((work / TRAIN_LOG).read_text())
    assert f"{run.data.tags['study.model']}/{run.data.tags['study.run']}" == RUN
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
    p = run.data.params
    # the tiny config's tiny_bert fine-tune (tiny.tiny_config): lora r 4, learning rate 0.01, seed 0
    assert (p["method"], p["seed"], p["training.learning_rate"], p["lora.r"]) == ("lora", "0", "0.01", "4")
    assert p["dtype"] == log["dtype"]["compute"]
    # the stage key: rule finetune's settings (logged as stage_key.json) with its code fingerprint
    # (train_log.json provenance), hashed here by hand
    settings = json.loads(Path(client.download_artifacts(run.info.run_id, "stage_key.json", str(tmp_path))).read_text())
    assert settings["finetune"]["training"]["learning_rate"] == 0.01 and settings["finetune"]["lora"]["r"] == 4
    key = json.dumps({"settings": settings, "code": log["provenance"]["code"]}, sort_keys=True, separators=(",", ":"))
    assert p["stage_key"] == run.data.tags["study.id"] == hashlib.sha256(key.encode()).hexdigest()[:12]
    for metric, part in (("train_loss", "history"), ("lr", "history"), ("val_loss", "evals")):
        got = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, metric))
        assert got == [(e["step"], e[metric]) for e in log[part]] and len(got) > 1, metric
    assert run.data.metrics["train_tokens_per_second"] == log["train_tokens_per_second"]
    assert run.data.metrics["trainable_params"] == log["parameters"]["trainable"]
    assert run.data.metrics["best_val_loss"] == log["best_val_loss"]
    assert _adapter(client.download_artifacts(run.info.run_id, "adapter", str(tmp_path))) == _adapter(work / ADAPTER)

    table = _metrics_csv(work)
    rows = _runs(client, "row")
    assert len(rows) == len(table) > 4
    names = ("task", "model", "role", "method", "grid_point", "seed", "decoding")
    by_names = {tuple(r.data.tags[f"study.{k}"] for k in names): r for r in rows}
    for line in table:
        row = by_names[tuple(line[k] for k in names)]
        assert row.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert {k: row.data.params[k] for k in names} == {k: line[k] or "-" for k in names}
        # every numeric column is a metric; the text ones (dtype, baseline_compared, baseline_metric) are not
        numeric = {k: v for k, v in line.items() if k not in names and v and _is_number(v)}
        assert row.data.metrics == {k: float(v) for k, v in numeric.items()}
        assert not set(row.data.metrics) & {"dtype", "baseline_compared", "baseline_metric"}
    lora = by_names[("emotion", "tiny_bert", "encoder", "lora", "", "0", "")].data.metrics
    assert lora["accuracy_low"] <= lora["accuracy"] <= lora["accuracy_high"]
    assert 0 <= lora["p_vs_baseline"] <= 1  # the paired test against the majority baseline, a metric too


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_a_server_killed_mid_run_costs_one_warning_line_and_a_rerun_updates_its_runs(tiny_run, tracked, server):
    """The fine-tune and the report are forced again; the server is killed as soon as the fine-tune
    has logged. The run finishes; the report warns once; the results are those of the run without
    tracking (the adapter and metrics.csv, but for the job timings). Back up, the server holds the
    same runs as before (the fine-tune updated, not added), and a forced report updates its rows."""
    _, original, _ = tiny_run
    work, client = tracked, _client(server.uri)
    before = _ids(client)
    finetune_log = work / f"logs/finetune/emotion/{RUN}.log"
    finetune_log.unlink()  # the first run's, which says it logged
    args, env = tiny.snakemake_call(work, *FORCE)
    out = work.parent / "snakemake.out"
    with open(out, "w") as f:
        run = subprocess.Popen([sys.executable, "-m", "snakemake", *args], env=env, stdout=f, stderr=f)
    deadline = time.monotonic() + 600
    while not (finetune_log.is_file() and "MLflow: fine-tune logged" in finetune_log.read_text()):
        assert run.poll() is None and time.monotonic() < deadline, out.read_text()[-3000:]
        time.sleep(0.05)
    server.stop()
    assert run.wait(timeout=600) == 0, out.read_text()[-3000:]
    warned = {p.relative_to(work).as_posix(): lines for p, lines in _warnings(work).items() if lines}
    assert list(warned) == ["logs/report.log"] and len(warned["logs/report.log"]) == 1, warned
    assert "results are unaffected" in warned["logs/report.log"][0]

    def untimed(rows):
        return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]

    assert untimed(_metrics_csv(work)) == untimed(_metrics_csv(original))
    assert _adapter(work / ADAPTER) == _adapter(original / ADAPTER)

    server.start().wait()
    assert _ids(client) == before
    (ft,) = _runs(client, "finetune")
    log = json.loads((work / TRAIN_LOG).read_text())
    assert sorted(m.step for m in client.get_metric_history(ft.info.run_id, "train_loss")) == [
        e["step"] for e in log["history"]
    ]  # the second run's identical curve is not stored twice
    speeds = client.get_metric_history(ft.info.run_id, "train_tokens_per_second")
    assert len(speeds) == 2 and ft.data.metrics["train_tokens_per_second"] == log["train_tokens_per_second"]

    tiny.snakemake(work, "-f", "results/report.html")
    assert not _warnings(work)[work / "logs/report.log"]
    assert _ids(client) == before
    # the rows now hold this report's metrics.csv: the fine-tune's new job time among them
    names = ("task", "model", "role", "method", "grid_point", "seed", "decoding")
    lines = {tuple(r[k] for k in names): r for r in _metrics_csv(work)}
    for row in _runs(client, "row"):
        line = lines[tuple(row.data.tags[f"study.{k}"] for k in names)]
        assert row.data.metrics.get("finetune_time_s") == (
            float(line["finetune_time_s"]) if line["finetune_time_s"] else None
        )
