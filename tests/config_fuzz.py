"""What the config fuzz (test_config_fuzz.py) draws and how it judges one example.

A base is a real study: config.yaml alone, or config.yaml with one offline study of
configs/studies/ as a --configfile overlay, its data files cut to a few dozen rows spread over each
file (small_data_dir). An example is a base with a few mutations (hypothesis strategies below):
a value set to another type, an empty or huge value, a numeric string YAML 1.1 reads as text, an
unknown model name; a key dropped, misspelled or added; or a data file of a selected task mutated
(fuzz_data.py). Workspace.write writes it as Snakemake would
read it: config.yaml in a working folder, the overlay next to it, the data under it.
parse_verdict runs the parse-time checks in-process as rules/common.smk does.
"""

import contextlib
import copy
import json
import os
import shutil
from pathlib import Path

import yaml
from hypothesis import strategies as st
from snakemake.utils import update_config

import fuzz_data
from conftest import DATA_DIR, REPO
from finetune_study import config as cfg
from finetune_study import data as data_lib
from finetune_study import parse_checks

SCHEMA = REPO / "schemas" / "config.schema.yaml"
STUDIES = sorted((REPO / "configs" / "studies").glob("*.offline.yaml"))
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# ---------------------------------------------------------------- the bases


def bases():
    """[(name, config.yaml content, overlay content or None)], data_dir still the shared data."""
    default = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    out = [("config.yaml", default, None)]
    for study in STUDIES:
        out.append((study.name, default, yaml.safe_load(study.read_text(encoding="utf-8"))))
    return out


def merged(*docs):
    out = {}
    for d in docs:
        if d is not None:
            update_config(out, copy.deepcopy(d))
    return out


def small_data_dir(folder):
    """A copy of the shared data whose task files (those of every base) are cut to a few dozen rows;
    everything else (published results, benchmark sets, tokenizers) is a link to the shared copy."""
    folder = Path(folder)
    cut = {}
    for _, default, study in bases():
        for task in cfg.selected_tasks(validated(default, study)).values():
            for rel in task["files"].values():
                for path in data_lib.split_paths(rel, DATA_DIR):
                    cut[path.relative_to(DATA_DIR)] = task.get("header", True)
    for entry in DATA_DIR.iterdir():
        if not any(p.parts[0] == entry.name for p in cut):
            (folder / entry.name).symlink_to(entry)
            continue
        for f in entry.rglob("*"):
            rel = f.relative_to(DATA_DIR)
            (folder / rel.parent).mkdir(parents=True, exist_ok=True)
            if rel in cut:
                fuzz_data.cut(f, folder / rel, cut[rel])
            elif f.is_file():
                (folder / rel).symlink_to(f)
    return folder


def validated(default, study, data_dir=DATA_DIR):
    """A base as the schema completes it (defaults filled in)."""
    return cfg.validate(merged(default, study, {"data_dir": str(data_dir)}), SCHEMA)


def read_schema():
    return cfg.read_yaml(SCHEMA)


def paths_of(node, prefix=(), depth=7):
    """Every key path in a config document (dicts and list items), parents before children."""
    out = []
    if depth == 0:
        return out
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for k, v in items:
        out.append(prefix + (k,))
        out += paths_of(v, prefix + (k,), depth - 1)
    return out


# ---------------------------------------------------------------- the strategies

NUMERIC_TEXT = ["1e-3", "5e-5", "1_000", ".5e2", "1e3", "-2e-1", "0x10", "1,5", "3.0", "nan", "1e999"]
UNKNOWN_NAMES = ["gpt5", "", "Tiny", "smollm2_135m", "minilm-l6", "wnut17 ", "emotion2"]


def plausible_values(configs):
    """Values that are valid somewhere: every enum value and default of the schema, every scalar
    and every block (fine-tune entries, decodings, model sources, ...) of the completed bases; by
    type, so that a key gets a value of its own type that may be wrong for it (a method another
    model does not take, another task's model, a setting of another fine-tune method)."""
    pool = {}

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("enum"), list):
                for v in node["enum"]:
                    pool.setdefault(type(v), []).append(v)
            for v in node.values():
                walk(v)
            if 0 < len(node) <= 12:
                pool.setdefault(dict, []).append(node)
        elif isinstance(node, list):
            for v in node:
                walk(v)
            pool.setdefault(list, []).append(node)
        else:
            pool.setdefault(type(node), []).append(node)

    walk(read_schema())
    for c in configs:
        walk(c)
    return {t: sorted({json.dumps(v, sort_keys=True) for v in vs}) for t, vs in pool.items()}


def other_value(old, pool=None):
    """Values a user might write instead of `old`: of another type, empty, huge, a near miss, or a
    value of its own type from somewhere else (pool: plausible_values, as JSON)."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**20), 10**20),
        st.sampled_from([0, -1, 1, 2, 10**9, 10**18]),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.5, 1.5, 1e-12, 1e300]),
        st.text(max_size=12),
        st.sampled_from(NUMERIC_TEXT + UNKNOWN_NAMES + ["x" * 20000, "{text}", "{labels}", "auto", "null"]),
    )
    near = []
    if isinstance(old, bool):
        near.append(st.just(not old))
    elif isinstance(old, int | float):
        near.append(st.sampled_from([old + 1, old - 1, -old, old * 1000, str(old), old / 3]))
    elif isinstance(old, str):
        near.append(st.sampled_from([old + "x", old.upper(), old[:-1], [old], " " + old]))
    elif isinstance(old, list):
        near.append(st.sampled_from([[], old[:1], old + old, old[::-1], old + ["gpt5"], [None]]))
    elif isinstance(old, dict):
        near.append(st.sampled_from([{}, dict(list(old.items())[:1]), {"zz": 1}, list(old)]))
    if pool and pool.get(type(old)):
        near += [st.sampled_from(pool[type(old)]).map(json.loads)] * 2
    return st.one_of(
        *near, scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=6), scalars, max_size=2)
    )


def _typo(key):
    return st.sampled_from([key + "s", key[:-1] or "x", key.replace("_", ""), key.upper(), "_" + key])


@st.composite
def config_mutation(draw, docs, full, pool=None):
    """(op, which document, path, value): set a value (in a document, or in the last one over the
    merged config's keys, defaults included: `full`), delete, misspell or add a key."""
    op = draw(st.sampled_from(["set", "set", "set", "delete", "rename", "add"]))
    present = [i for i, d in enumerate(docs) if d is not None]
    which = draw(st.sampled_from(present))
    own = paths_of(docs[which])
    if op == "set":
        path = draw(st.sampled_from(paths_of(full) if which == present[-1] else own))
        old = _get(docs[which], path)
        return op, which, path, draw(other_value(_get(full, path) if old is None else old, pool))
    if op == "add":
        path = draw(st.sampled_from([()] + [p for p in own if isinstance(_get(docs[which], p), dict)]))
        key = draw(st.one_of(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10), _typo("labels")))
        return op, which, path, (key, draw(other_value(None)))
    path = draw(st.sampled_from([p for p in own if isinstance(p[-1], str)]))
    return op, which, path, draw(_typo(path[-1])) if op == "rename" else None


def _get(doc, path):
    node = doc
    for p in path:
        try:
            node = node[p]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def apply_config_mutation(docs, mutation):
    op, which, path, value = mutation
    doc = docs[which]
    parent = doc
    for p in path[:-1] if op != "add" else path:
        if isinstance(parent, dict):
            parent = parent.setdefault(p, {}) if op == "set" else parent.get(p)
        elif isinstance(parent, list) and isinstance(p, int) and p < len(parent):
            parent = parent[p]
        else:
            return  # a list or a scalar where the path goes on: nothing to do
        if parent is None or not isinstance(parent, dict | list):
            return
    key = path[-1] if path else None
    if op == "add" and isinstance(parent, dict):
        parent[value[0]] = value[1]
    elif op == "set" and (isinstance(parent, dict) or (isinstance(key, int) and key < len(parent))):
        parent[key] = value
    elif op == "delete" and isinstance(parent, dict):
        parent.pop(key, None)
    elif op == "rename" and isinstance(parent, dict) and key in parent:
        parent[value] = parent.pop(key)


# ---------------------------------------------------------------- one example


class Workspace:
    """One working folder that every example reuses (a folder per example costs more than the parse):
    config.yaml, study.yaml when there is an overlay, and data/, a copy of small_data (its files
    cut copies, the rest links to the shared data). An unmutated data_dir becomes "data" (relative:
    Snakemake runs in the folder). Each example restores the data files the one before mutated."""

    def __init__(self, folder, small_data):
        self.folder, self.small_data = Path(folder), Path(small_data)
        self.data = self.folder / "data"
        shutil.copytree(self.small_data, self.data, symlinks=True)
        self.touched, self.count = set(), 0

    def write(self, default, study, data_mutations=()):
        """Write one example; returns its --configfile files, in order."""
        for rel in self.touched:
            shutil.copyfile(self.small_data / rel, self.data / rel)
        self.touched = set()
        self.count += 1
        if isinstance(default, dict) and default.get("data_dir") == "../shared/data":
            default = dict(default, data_dir="data")
        files = [self.folder / "config.yaml"] + ([self.folder / "study.yaml"] if study is not None else [])
        (self.folder / "study.yaml").unlink(missing_ok=True)
        for path, doc in zip(files, [default, study]):
            path.write_text(yaml.dump(doc, Dumper=DUMPER, sort_keys=False, allow_unicode=True), encoding="utf-8")
            os.utime(path, ns=(self.count, self.count))  # a new version for sources.read_yaml's cache
        targets = _data_files(files, self.data) if data_mutations else []
        for m in data_mutations if targets else ():
            path = targets[m[1] % len(targets)]
            self.touched.add(path.relative_to(self.data))
            if path.is_file():  # not removed by the mutation before
                fuzz_data.mutate_data_file(path, m)
        return files

    def keep(self, dest):
        """A copy of the example just written, for a later `snakemake -n` in it."""
        shutil.copytree(self.folder, dest, symlinks=True)
        return dest


def _data_files(files, data):
    """The data files of the selected tasks that are files of data's own (cut copies, never a link
    into the shared data), as far as the (mutated) config says."""
    try:
        c = merged(*[load(f) for f in files])
        selected = cfg.selected_tasks(c) if isinstance(c.get("tasks"), dict) else {}
        rels = [r for t in selected.values() if isinstance(t, dict) for r in (t.get("files") or {}).values()]
        paths = {p for r in rels if isinstance(r, str | dict) for p in data_lib.split_paths(r, data)}
        return sorted(
            p for p in paths if p.is_file() and not p.is_symlink() and p.resolve().is_relative_to(data.resolve())
        )
    except Exception:  # a mutated config whose files cannot be listed: no data mutation
        return []


def load(path):
    """A config file as Snakemake reads it (YAML 1.1, PyYAML's safe loader; libyaml's, for speed)."""
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=LOADER)


def parse_verdict(folder, files):
    """What the parse says of the example, run in-process as rules/common.smk runs it for
    `snakemake --directory folder --configfile *files` (in folder, where a relative data_dir
    points): (None, config) when accepted, else (the error's message, config). Any exception other
    than the workflow's own errors propagates (the fuzz counts it as a failure)."""
    config = merged(*[load(f) for f in files])
    declared = [str(Path(folder) / "config.yaml")]
    sources = cfg.merge_order([*map(str, files), *declared], list(map(str, files)))
    default_files = cfg.default_study_files([*map(str, files), *declared], list(map(str, files)), str(REPO))
    with contextlib.chdir(folder):
        try:
            parse_checks.check(config, sources, SCHEMA, default_files=default_files)
        except (cfg.ConfigError, data_lib.PipelineError) as e:
            return str(e), config
    return None, config
