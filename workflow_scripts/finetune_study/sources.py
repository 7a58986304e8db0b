"""Where each config value came from: the config sources in Snakemake's merge order, and the
one whose value of a key was used, so every error names the file that set the bad value; and
which study the report's title and notes belong to (own_study_text). Standard library plus PyYAML."""

import copy
import functools
import os
from pathlib import Path

import yaml


def key_path(parts):
    """tasks.emotion.finetune.m[1].method: dotted keys, list positions in brackets."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def merge_order(configfiles, cli_configfiles=(), cli_config=None, replace_workflow_config=False):
    """The config sources in Snakemake's merge order, lowest priority first, for source_of.

    `workflow.configfiles` lists the command line's --configfile files first and then those the
    Snakefile's `configfile:` adds, but the command line wins: Snakemake re-applies its files (and
    --config) over each `configfile:` (or, with --replace-workflow-config, drops that file). So the
    order is the Snakefile's files, the command line's in their order, then --config as
    ("--config", values)."""
    cli = [str(f) for f in cli_configfiles or []]
    declared = [] if replace_workflow_config else [str(f) for f in list(configfiles)[len(cli) :]]
    return declared + cli + ([("--config", cli_config)] if cli_config else [])


def _lookup(node, parts):
    for p in parts:
        if isinstance(node, list) and isinstance(p, int) and 0 <= p < len(node):
            node = node[p]
        elif isinstance(node, dict) and p in node:
            node = node[p]
        else:
            return False
    return True


def read_yaml(path):
    """A YAML file's content (PyYAML's safe loader, libyaml's where installed), parsed once per version
    of the file (its size and modification time): every error message, and the schema, would
    otherwise parse the same files again. Not to be modified by the caller."""
    st = os.stat(path)
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _parsed(path, mtime_ns, size):
    return yaml.load(Path(path).read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def source_of(parts, files):
    """The config source whose value of the key at `parts` Snakemake used: the last one in merge
    order (merge_order) that sets it. A key no source sets took the schema's default: then the last
    source that sets the block holding it (tasks.<task>.finetune.<model>, ...; never a top-level key
    alone: a file that sets `tasks:` says nothing of a task it does not name); 'the merged config'
    when none does."""
    parts = list(parts)
    for depth in range(len(parts), min(len(parts), 2) - 1, -1):
        for f in reversed(list(files or [])):
            if isinstance(f, tuple):
                name, node = f
            else:
                name = str(f)
                try:
                    node = read_yaml(f)
                except (OSError, UnicodeDecodeError, yaml.YAMLError):
                    continue
            if _lookup(node, parts[:depth]):
                return name
    return "the merged config"


# ---------------------------------------------------------------- whose study the report describes

STUDY_TEXT_KEYS = ("report_title", "notes")


def default_study_files(configfiles, cli_configfiles=(), workflow_dir=None):
    """The files that hold the default study: the Snakefile's own `configfile:` files (as
    merge_order finds them) and the workflow's config.yaml, however the command line names it."""
    declared = [str(f) for f in list(configfiles)[len(list(cli_configfiles or [])) :]]
    return declared + ([str(Path(workflow_dir) / "config.yaml")] if workflow_dir else [])


def _same_file(a, b):
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def own_study_text(config, files, default_files, defaults):
    """report_title and notes say what is true of one study: those of the default study's files
    (default_study_files) are its own. When the sources (merge_order) include another config file
    (a `--configfile` study), a title or notes that came from a default file are replaced by the
    schema's default (`defaults`: key -> value), so an overlay's report shows only what the
    overlay (or --config) says. Returns the keys replaced, in place in config."""

    def is_default(f):
        return not isinstance(f, tuple) and any(_same_file(f, d) for d in default_files)

    if not any(not isinstance(f, tuple) and not is_default(f) for f in files or []):
        return []
    replaced = []
    for key in STUDY_TEXT_KEYS:
        if is_default(source_of([key], files)):
            config[key] = copy.deepcopy(defaults[key])
            replaced.append(key)
    return replaced


def finetune_items(task_name, task):
    """(model, entry, key path parts) of every fine-tune of a task (keys.finetune_entries, with where
    each entry sits in the config: tasks.<t>.finetune.<m> or tasks.<t>.finetune.<m>[i])."""
    out = []
    for m, value in task["finetune"].items():
        if isinstance(value, list):
            out += [(m, ft, ["tasks", task_name, "finetune", m, i]) for i, ft in enumerate(value)]
        else:
            out.append((m, value, ["tasks", task_name, "finetune", m]))
    return out
