"""Which copy of finetune_study a workflow runs: always the one beside its own Snakefile.

The package is installed editable (`pip install -e .`) from one checkout, but a researcher who
keeps one environment may clone the workflow again (one folder per study). Python would then
import the installed checkout's package, in the parse (whose code fingerprints decide what
reruns) and in every job, and an edit in the second checkout would rerun nothing. So the parse
puts the workflow's own workflow_scripts/ first on sys.path and on PYTHONPATH, which every job
(local, SLURM, torchrun workers) inherits, and checks that the package it imported is that one.

Standard library only: it runs at Snakemake parse time, before the package itself is imported.
"""

import os
import sys
from pathlib import Path

PACKAGE = "finetune_study"


def use_own_package(basedir, environ=os.environ, path=sys.path):
    """Put <basedir>/workflow_scripts first on `path` (this process) and on PYTHONPATH in `environ`
    (the jobs it starts); an entry already there moves to the front. Returns the folder."""
    scripts = str(Path(basedir).resolve() / "workflow_scripts")
    path[:] = [scripts] + [p for p in path if p != scripts]
    rest = [p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != scripts]
    environ["PYTHONPATH"] = os.pathsep.join([scripts, *rest])
    return scripts


def foreign_package(basedir, package_file):
    """None when `package_file` (finetune_study/__init__.py as imported) lies in this workflow's
    workflow_scripts/, else the one line that names both locations and the fix."""
    own = (Path(basedir).resolve() / "workflow_scripts" / PACKAGE).resolve()
    found = Path(package_file).resolve().parent
    if found == own:
        return None
    return (
        f"this workflow's package is {own}, but {PACKAGE} was already imported from {found} "
        f"before the workflow was parsed; run snakemake in a new process (not from a Python "
        f"session that imported {PACKAGE})"
    )
