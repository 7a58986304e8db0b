"""Any config the parse accepts plans, and any it refuses stops in one line naming the file and key
(or the data file and line): property-based fuzzing of the real studies (config_fuzz.py).

Each example is config.yaml, alone or under one offline study, mutated (values of other types,
empty and huge values, numeric strings YAML reads as text, unknown names, keys dropped, misspelled
or added) with its data files mutated (non-UTF-8 bytes, a column renamed, a label only in one
split, emptied, truncated, ...). The parse-time checks (parse_checks.check) run in-process on every
example: accepted, or the workflow's own error with one line that starts with the config file and
a key, or with a data file. Any other exception (KeyError, TypeError, ...) fails the test. A sample
of the examples then runs through the real `snakemake -n`: an accepted one plans (exit 0), a refused
one exits non-zero with exactly that line, no traceback and no job.

CI: FUZZ_EXAMPLES (default 1000) examples from a fixed seed (derandomize), FUZZ_DRY_RUNS (default
50, half accepted, half refused) of them through Snakemake. By hand, a longer run:
FUZZ_EXAMPLES=20000 FUZZ_DRY_RUNS=200 python -m pytest -n 0 -s tests/test_config_fuzz.py; it prints
its counts.
"""

import collections
import copy
import os
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import config_fuzz
import fuzz_data
import tiny
from finetune_study.parse_checks import one_line

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
DRY_RUNS = int(os.environ.get("FUZZ_DRY_RUNS", "50"))
STRIDE = max(1, EXAMPLES // (4 * DRY_RUNS))  # the sample spreads over the run's first half or so
BASES = config_fuzz.bases()
TOP_KEYS = set(config_fuzz.read_schema()["properties"]) | {"(top level)"}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return config_fuzz.small_data_dir(tmp_path_factory.mktemp("fuzz_data"))


@pytest.fixture(scope="module")
def full_configs(small_data):
    """Each base as the parse completes it (defaults filled in): the keys a mutation may set."""
    return [config_fuzz.validated(default, study, small_data) for _, default, study in BASES]


def assert_one_clean_line(msg, files, config):
    """The error is one line that starts with a config file and a key, or with a data file (and line):
    a path that holds one of the tasks' files: entries."""
    assert msg and "\n" not in msg and "\r" not in msg and "Traceback" not in msg, msg
    head, _, rest = msg.partition(": ")
    if head in {str(f) for f in files} | {"--config"}:
        key = re.match(r"\(top level\)|[A-Za-z_][\w-]*", rest)
        assert key and key.group() in TOP_KEYS, f"no key after the file name: {msg}"
    else:
        tasks = config.get("tasks") if isinstance(config.get("tasks"), dict) else {}
        entries = [t.get("files") for t in tasks.values() if isinstance(t, dict) and isinstance(t.get("files"), dict)]
        names = [str(v) for e in entries for r in e.values() for v in (r.values() if isinstance(r, dict) else [r])]
        assert any(n and one_line(n) in head for n in names), f"names neither a config file nor a data file: {msg}"


def test_every_base_is_accepted_unmutated(small_data, tmp_path):
    """The fuzz starts from configs that pass: each base with its data cut to a few dozen rows."""
    work = config_fuzz.Workspace(tmp_path, small_data)
    for name, default, study in BASES:
        files = work.write(default, study)
        assert config_fuzz.parse_verdict(tmp_path, files)[0] is None, name


def test_fuzzed_configs_plan_or_stop_in_one_line(small_data, full_configs, tmp_path):
    counts, sample, pool = collections.Counter(), [], config_fuzz.plausible_values(full_configs)
    work = config_fuzz.Workspace(tmp_path / "work", small_data)

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def fuzz(data):
        i = data.draw(st.integers(0, len(BASES) - 1), label="base")
        _, default, study = BASES[i]
        docs = [copy.deepcopy(default), copy.deepcopy(study)]
        edits = data.draw(
            st.lists(config_fuzz.config_mutation(docs, full_configs[i], pool), max_size=3), label="config"
        )
        data_edits = data.draw(st.lists(fuzz_data.data_mutation(), max_size=2), label="data")
        for edit in edits:
            config_fuzz.apply_config_mutation(docs, edit)
        files = work.write(docs[0], docs[1], data_edits)
        msg, config = config_fuzz.parse_verdict(work.folder, files)
        if msg is not None:
            assert_one_clean_line(msg, files, config)
        kind = "accepted" if msg is None else "refused"
        counts[kind] += 1
        if sum(k == kind for *_, k, _ in sample) < DRY_RUNS // 2 and work.count % STRIDE == 0:
            folder = work.keep(tmp_path / f"example{work.count}")
            sample.append(
                (folder, [folder / f.name for f in files], kind, msg and msg.replace(str(work.folder), str(folder)))
            )

    start = time.monotonic()
    fuzz()
    middle = time.monotonic()
    assert counts["accepted"] >= EXAMPLES // 20 and counts["refused"] >= EXAMPLES // 4, counts
    for folder, files, _, msg in sample:
        assert_dry_run_agrees(folder, files, msg)
    print(
        f"config fuzz: {work.count} examples in {middle - start:.1f} s, {dict(counts)}; "
        f"{len(sample)} ({sum(m is None for *_, m in sample)} accepted) through snakemake -n in "
        f"{time.monotonic() - middle:.1f} s"
    )


def assert_dry_run_agrees(folder, files, msg):
    """`snakemake -n` in the example's folder: a plan where the parse accepted (msg None), else exit
    non-zero with exactly the parse's line, nothing else, and no job (no DAG, no results/)."""
    proc = tiny.snakemake(folder, "-n", "results/report.html", "--configfile", *map(str, files), check=False)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out, out[-3000:]
    if msg is None:
        assert proc.returncode == 0 and "This was a dry-run" in out, out[-3000:]
    else:
        assert proc.returncode != 0 and [x for x in out.splitlines() if x.startswith("Error")] == [f"Error: {msg}"], out
        assert "Building DAG of jobs" not in out and not (folder / "results").exists(), out[-3000:]
