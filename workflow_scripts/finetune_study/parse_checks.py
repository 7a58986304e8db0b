"""Every check the workflow runs when Snakemake parses it, before any job, as one call.

rules/common.smk calls `check` with what Snakemake merged; the tests call it in-process (no
Snakemake, no model loaded, standard library plus PyYAML and jsonschema). In order: the config
against schemas/config.schema.yaml (defaults filled in place) and its cross-checks (config.py), the
memory each model's jobs ask for, the models' files without their weights (preflight.py), the
forgetting check's prerequisites (benchmarks.py), each selected task's local data files (data.py;
what the task type derives from them joins the task's settings), and the report's run listing.
A problem the user can fix is raised as ConfigError or PipelineError whose message is one line
naming the config file and key, or the data file (and line), and the fix: a line break or other
control character that a value brings into it (a data_dir with a carriage return) is shown escaped.
"""

import os
import unicodedata
from pathlib import Path

from . import benchmarks, preflight, weight_digests
from . import config as cfg
from . import data as data_lib
from .report_listing import report_listing

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


def check(
    config, sources, schema_path=SCHEMA, default_files=None, default_resources=None, results="results", argv=None
):
    """Run the parse-time checks on `config` (Snakemake's merged config, completed in place).
    sources: the config sources in merge order (config.merge_order); default_files: the default
    study's files (sources.default_study_files); default_resources: Snakemake's default-resources;
    results: the results folder the model checks read; argv: Snakemake's command line (sys.argv),
    whose force options name the prepared model folders this invocation rebuilds, which are not
    checked against their digests (weight_digests.py)."""
    try:
        return _check(config, sources, schema_path, default_files, default_resources, results, argv)
    except (cfg.ConfigError, data_lib.PipelineError) as e:
        raise type(e)(one_line(str(e))) from None


def one_line(text):
    """text with its control characters and line or paragraph separators escaped ('\\r', '\\x00')."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c for c in text)


def check_data_dir(config, sources):
    """data_dir is a folder wherever local data is read (use_hub: false and a task selected): else
    one line naming the config file and the key, before any data file is looked for in it (a
    missing, mistyped or overlong path would otherwise surface as each data file missing, or as
    an OSError)."""
    if config["use_hub"] or not cfg.selected_tasks(config) or os.path.isdir(config["data_dir"]):
        return
    where, default = cfg.source_of(("data_dir",), sources), ""
    if where == "the merged config":  # no source sets it: the schema's default, named in the file
        # with the last word (the last --configfile, else config.yaml), where a data_dir would go
        where = next((str(f) for f in reversed(list(sources)) if not isinstance(f, tuple)), where)
        default = " (the default: no config file sets data_dir)"
    raise cfg.ConfigError(
        f"{where}: data_dir: {config['data_dir']!r}{default} is not a folder "
        "(a relative path is read from the working directory); point it at the folder that holds the "
        "tasks' files: entries (the default study's is ../shared/data)"
    )


def _check(config, sources, schema_path, default_files, default_resources, results, argv):
    cfg.validate(config, schema_path, files=sources, default_files=default_files)
    cfg.check_resources(config, default_resources or {}, sources)
    forced = weight_digests.forced_models(preflight.used_models(config), weight_digests.command_line(argv))
    preflight.check(config, sources, results, forced=forced)
    check_data_dir(config, sources)
    benchmarks.check(config, cfg.selected_tasks(config), lambda *keys: cfg.source_of(keys, sources))
    for name, task in cfg.selected_tasks(config).items():
        if not config["use_hub"]:
            task.update(data_lib.check_task_files(name, task, config["data_dir"]))
    # every task type's report entry builds (e.g. a hub NER task must list its entity types)
    report_listing(config, cfg.selected_tasks(config))
    return config
