"""Where each config value came from: the config sources in Snakemake's merge order, and the
one whose value of a key was used, so every error names the file that set the bad value.
Standard library plus PyYAML."""

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


def source_of(parts, files):
    """The config source whose value of the key at `parts` Snakemake used: the last one in merge
    order (merge_order) that sets it; 'the merged config' when none does."""
    for f in reversed(list(files or [])):
        if isinstance(f, tuple):
            name, node = f
        else:
            name = str(f)
            try:
                node = yaml.safe_load(Path(f).read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError):
                continue
        if _lookup(node, parts):
            return name
    return "the merged config"
