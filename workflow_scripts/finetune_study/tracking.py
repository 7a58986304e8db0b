"""Optional MLflow tracking (config `tracking: {mlflow: {uri, experiment}}`; docs/mlflow.md).

Two hooks call it once their outputs are written: the finetune job (finetune.py: the stage key,
method, dtype and seed as parameters, the training curve per step, the adapter as an artifact) and
the report job (build_report.py: every row of results/metrics.csv, its metrics with their interval
bounds, tagged task, model, role, method, grid point, seed and decoding). Runs nest under one parent
run per task. A run is found again by its `study.id` tag: the short hash of a fine-tune's stage key
(its settings and code), of a row's naming columns, or of a task's name; so a rerun updates its
run instead of adding one, while a fine-tune with other settings or code is a run of its own.

Logging reads only outputs already written and the config (never a rule's params), and it is off
the code fingerprints (fingerprints.OUTSIDE_KEYS): it changes no result and no stage key. A server
that is down or refuses a write costs one warning line in the job's log: requests are not retried
and time out quickly (MLFLOW_HTTP_REQUEST_* below, unless set in the environment). mlflow is
imported only when tracking is on; this module itself is standard library (the config check runs
at parse time).
"""

import contextlib
import importlib.util
import json
import logging
import math
import numbers
import os
import time
from pathlib import Path

from .hashing import short_hash

DEFAULT_EXPERIMENT = "finetune-study"
URI_ENV = "MLFLOW_TRACKING_URI"
# a dead or hanging server costs seconds, not minutes (mlflow's defaults: 7 retries, 120 s)
HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
}
TAG = "study."  # prefix of this workflow's tags
# results/metrics.csv columns that name a row: tags (and parameters, except dtype) of its run
ROW_NAMES = ("task", "model", "role", "method", "grid_point", "seed", "decoding")
CURVES = (("history", ("train_loss", "lr", "epoch")), ("evals", ("val_loss", "val_perplexity")))
SUMMARY = ("best_val_loss", "train_tokens_per_second", "train_seconds", "real_tokens", "computed_tokens")


def settings(config):
    """{"uri", "experiment"} when tracking is on, else None (tracking.mlflow absent or null)."""
    ml = (config.get("tracking") or {}).get("mlflow")
    if ml is None:
        return None
    return {"uri": ml.get("uri") or os.environ.get(URI_ENV), "experiment": ml.get("experiment", DEFAULT_EXPERIMENT)}


def without_tracking(config):
    """The config less `tracking`, for what must not change with it (the report's params and page)."""
    return {k: v for k, v in config.items() if k != "tracking"}


def config_problem(config):
    """Why tracking cannot be on as configured (a sentence), or None; checked at parse time."""
    s = settings(config)
    if s is None:
        return None
    if not s["uri"]:
        return f"no tracking server; set tracking.mlflow.uri (e.g. http://127.0.0.1:5000) or {URI_ENV}"
    if importlib.util.find_spec("mlflow") is None:
        return "mlflow is not installed; pip install -e '.[tracking]' (or -r requirements-tracking.txt), or remove it"
    return None


@contextlib.contextmanager
def _guard(s, what):
    """Run a logging step; any failure is one warning line, never an error of the job."""
    for name in ("mlflow", "urllib3", "alembic"):  # their own retry/warning lines would add more
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        yield
    except Exception as e:  # noqa: BLE001 (no failure of the tracker may fail the job)
        first = (str(e).strip().splitlines() or [""])[0][:300]
        print(
            f"WARNING: MLflow tracking at {s['uri']} failed while logging {what} "
            f"({type(e).__name__}: {first}); results are unaffected, nothing more is logged by this job",
            flush=True,
        )


def _client(s):
    for k, v in HTTP_ENV.items():
        os.environ.setdefault(k, v)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=s["uri"])
    exp = client.get_experiment_by_name(s["experiment"])
    if exp is None:
        try:
            return client, client.create_experiment(s["experiment"])
        except Exception:  # another job created it meanwhile
            exp = client.get_experiment_by_name(s["experiment"])
            if exp is None:
                raise
    return client, exp.experiment_id


def _runs(client, exp_id, kind, ident=None):
    """{study.id: oldest live run} of one kind (task, finetune, row) in the experiment (of one id)."""
    out, token = {}, None
    query = f"tags.`{TAG}kind` = '{kind}'" + (f" and tags.`{TAG}id` = '{ident}'" if ident else "")
    while True:
        page = client.search_runs([exp_id], query, order_by=["attributes.start_time DESC"], page_token=token)
        for r in page:  # newest first: the oldest of duplicates wins
            out[r.data.tags.get(f"{TAG}id")] = r
        token = page.token
        if not token:
            return out


def _run(client, exp_id, kind, ident, name, tags, found=None):
    """The run whose study.id tag is `ident`, created if there is none. Two jobs creating the same
    task or fine-tune run at once (found not given): both keep the oldest, the other is deleted."""
    recheck = found is None
    found = _runs(client, exp_id, kind, ident) if found is None else found
    if ident in found:
        run_id = found[ident].info.run_id
        client.set_tag(run_id, "mlflow.runName", name)
        return run_id
    tags = {**tags, f"{TAG}kind": kind, f"{TAG}id": ident}
    mine = client.create_run(exp_id, tags=tags, run_name=name).info.run_id
    oldest = _runs(client, exp_id, kind, ident).get(ident) if recheck else None
    if oldest is not None and oldest.info.run_id != mine:
        client.delete_run(mine)
        return oldest.info.run_id
    return mine


def _finish(client, run_id):
    """Mark a run FINISHED (mlflow's client prints two 'View run' lines per run there: dropped)."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        client.set_terminated(run_id, "FINISHED")


def _parent(client, exp_id, task):
    """The task's parent run (one per task: the study of that task)."""
    run_id = _run(client, exp_id, "task", short_hash({"task": task}), task, {f"{TAG}task": task})
    _finish(client, run_id)
    return run_id


def stage_key(settings_json, code):
    """A fine-tune's stage key, hashed: its settings (rule finetune's params.settings) and code."""
    return short_hash({"settings": json.loads(settings_json), "code": code})


def _flat(obj, prefix=""):
    if isinstance(obj, dict):
        return {k: v for key, sub in obj.items() for k, v in _flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: obj if isinstance(obj, str) else json.dumps(obj)}


def _log(client, run_id, metrics=(), params=None, tags=None):
    from mlflow.entities import Param, RunTag

    metrics = list(metrics)
    params = [Param(k, str(v)[:6000]) for k, v in (params or {}).items()]
    tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for i in range(0, max(len(metrics), len(params), len(tags), 1), 100):  # the REST API's batch limits
        client.log_batch(run_id, metrics[i : i + 100], params[i : i + 100], tags[i : i + 100])


def log_finetune(config, task, model, run, settings_json, code, adapter, train_log):
    """One fine-tune (rule finetune), after its adapter and train_log.json are written."""
    s = settings(config)
    if s is None:
        return
    with _guard(s, f"fine-tune {task}/{model}/{run}"):
        from mlflow.entities import Metric

        client, exp_id = _client(s)
        parent = _parent(client, exp_id, task)
        key = stage_key(settings_json, code)
        log = json.loads(Path(train_log).read_text(encoding="utf-8"))
        ft = json.loads(settings_json)["finetune"]
        tags = {
            f"{TAG}task": task,
            f"{TAG}model": model,
            f"{TAG}run": run,
            f"{TAG}stage": f"{task}/{model}/{run}",
            "mlflow.parentRunId": parent,
        }
        run_id = _run(client, exp_id, "finetune", key, f"{model} {run}", tags)
        # parameters never change in MLflow: these are all part of the stage key
        params = {
            "stage_key": key,
            "method": ft["method"],
            "seed": ft["training"]["seed"],
            "dtype": json.loads(settings_json)["model"]["dtype"],
            **_flat({k: v for k, v in ft.items() if k != "method"}),
        }
        tags |= {f"{TAG}{k}_dtype": v for k, v in log.get("dtype", {}).items()}  # as it ran
        # curve points carry the run's start time: a rerun's identical points are not stored twice
        start = client.get_run(run_id).info.start_time
        metrics = [
            Metric(name, float(p[name]), start, int(p["step"]))
            for part, names in CURVES
            for p in log.get(part, [])
            for name in names
            if p.get(name) is not None
        ]
        now, last = int(time.time() * 1000), int(log.get("final_step") or 0)
        counts = log.get("parameters", {})
        summary = {k: log.get(k) for k in SUMMARY} | {
            "trainable_params": counts.get("trainable"),
            "total_params": counts.get("total"),
            "trainable_share": counts.get("trainable_share"),
        }
        metrics += [Metric(k, float(v), now, last) for k, v in summary.items() if _number(v)]
        _log(client, run_id, metrics, params, tags)
        client.log_text(run_id, json.dumps(json.loads(settings_json), indent=2, sort_keys=True), "stage_key.json")
        client.log_artifact(run_id, str(train_log))
        client.log_artifacts(run_id, str(adapter), "adapter")
        _finish(client, run_id)
        print(f"MLflow: fine-tune logged to run {run_id} (experiment {s['experiment']}, stage key {key})")


def _number(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and type(v).__name__ != "bool_" and math.isfinite(v)


def row_id(row):
    """A metrics.csv row's identity: its naming columns (task, model, role, method, grid point,
    seed, decoding point; a general-ability row's benchmark too), hashed."""
    names = {k: row.get(k) for k in ROW_NAMES}
    if row.get("benchmark"):  # only there: every other row keeps the identity it had
        names["benchmark"] = row["benchmark"]
    return short_hash(names)


def row_name(row):
    point = f" {row['grid_point']}" if row.get("grid_point") else ""
    seed = f" s{row['seed']}" if row.get("seed") is not None else ""
    decoding = f" [{row['decoding']}]" if row.get("decoding") else ""
    benchmark = f" <{row['benchmark']}>" if row.get("benchmark") else ""
    return f"{row['model']} {row['method']}{point}{seed}{decoding}{benchmark}"


def log_rows(config, rows, columns):
    """Every row of results/metrics.csv (the report job), each a child run of its task's run."""
    s = settings(config)
    if s is None or not rows:
        return
    with _guard(s, f"{len(rows)} results/metrics.csv rows"):
        from mlflow.entities import Metric

        client, exp_id = _client(s)
        parents = {t: _parent(client, exp_id, t) for t in dict.fromkeys(r["task"] for r in rows)}
        found = _runs(client, exp_id, "row")
        now = int(time.time() * 1000)
        for row in rows:
            names = {k: "" if row.get(k) is None else str(row[k]) for k in ROW_NAMES}
            tags = {f"{TAG}{k}": v for k, v in names.items()} | {
                f"{TAG}dtype": row.get("dtype") or "",
                "mlflow.parentRunId": parents[row["task"]],
            }
            run_id = _run(client, exp_id, "row", row_id(row), row_name(row), tags, found)
            metrics = [Metric(c, float(row[c]), now, 0) for c in columns if c not in ROW_NAMES and _number(row.get(c))]
            _log(client, run_id, metrics, {k: v or "-" for k, v in names.items()}, tags)
            _finish(client, run_id)
        print(f"MLflow: {len(rows)} rows logged (experiment {s['experiment']})")
