"""Code fingerprints: the part of every stage key that says which code the stage runs.

A script's fingerprint hashes the script and every finetune_study module it imports, directly or
transitively (imports inside functions count too), by syntax tree: comments and formatting do not
count, real changes do; modules in OUTSIDE_KEYS (they write nothing) do not count. A script that
dispatches on the task type (tasks.part) names the parts it uses in a module-level
`TASK_PART = "data"` (or a tuple; "spec" is tasks/<type>.py itself); the rule passes the task types,
and those task types' part modules join the fingerprint. So an edit to one task type's code reruns
only that task type's stages.

The package's files are read where Python imports the package from (what the jobs run), the
scripts from the workflow's own workflow_scripts/. Names in the hash are relative
("finetune_study/keys.py", "workflow_scripts/score.py"), so moving a checkout changes no key.

Parsing every module for every rule is most of a Snakemake parse, so what the hash needs of a
source text (its digest and the names it imports) is kept in a small JSON cache,
~/.cache/finetune_study/code_facts-<python>.json (XDG_CACHE_HOME is honoured), keyed by the
file's name and the sha256 of its whole text: an edited file is a new key, never a stale hit.
Which imported names are modules is decided afresh every time, from the files on disk. A cache
that cannot be read or written is ignored.

Standard library only: it runs at Snakemake parse time.
"""

import ast
import functools
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name
SCRIPTS = PACKAGE_DIR.parent  # the scripts beside the package, when it is used from a checkout
TASKS_PACKAGE = f"{PACKAGE}.tasks"
CACHE_ENTRIES = 4000  # source texts remembered; the least recently used go first
# modules that write no output and so change no result: their edits rerun nothing (tracking.py
# logs finished outputs to MLflow); neither they nor what only they import join a fingerprint
OUTSIDE_KEYS = frozenset({f"{PACKAGE}.tracking"})


@functools.lru_cache(maxsize=None)
def _module_file(dotted):
    """The file of a finetune_study module or package ('finetune_study.tasks' -> tasks/__init__.py),
    None for anything outside the package or not a module (looked up once per process)."""
    parts = dotted.split(".")
    if parts[0] != PACKAGE:
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for path in ((base.with_suffix(".py"),) if len(parts) > 1 else ()) + (base / "__init__.py",):
        if path.is_file():
            return path
    return None


def _dotted(path):
    """'finetune_study.tasks.classification' of a file inside the package (a package's __init__: the package)."""
    rel = Path(path).resolve().relative_to(PACKAGE_DIR).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _in_package(path):
    return Path(path).resolve().is_relative_to(PACKAGE_DIR)


@functools.lru_cache(maxsize=None)
def _tree(text):
    """The syntax tree of a source text, parsed once per process (Snakemake fingerprints every
    rule's script at parse time, and the scripts share most of their modules). Read only."""
    return ast.parse(text)


def _imported(path):
    """Dotted names of the finetune_study modules a file imports (absolute or relative)."""
    out = set()
    for name in _facts(path)["names"]:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            if _module_file(".".join(parts[:i])):
                out.add(".".join(parts[:i]))
    return out


def _imported_names(path, text):
    """Every dotted name a source text imports, or imports from (`from pkg import x` gives pkg and
    pkg.x), relative imports resolved against the file's place in the package."""
    here = _dotted(path) if _in_package(path) else None
    package = None
    if here is not None:
        package = here if Path(path).name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(_tree(text)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from pkg import module`
    return found


def cache_file():
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / PACKAGE / f"code_facts-{sys.implementation.cache_tag}.json"


_cache = {"entries": None, "dirty": False}


def _entries():
    if _cache["entries"] is None:
        try:
            loaded = json.loads(cache_file().read_text(encoding="utf-8"))
            _cache["entries"] = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _cache["entries"] = {}
    return _cache["entries"]


def _save():
    """Write the cache if it changed (atomically: a temporary file renamed over it)."""
    if not _cache["dirty"]:
        return
    entries = _entries()
    keep = dict(list(entries.items())[-CACHE_ENTRIES:])
    tmp = None
    try:
        path = cache_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".code_facts.")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(keep, f, separators=(",", ":"))
        os.replace(tmp, path)
        tmp = None
        _cache["dirty"] = False
    except OSError:
        pass
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


@functools.lru_cache(maxsize=None)
def _facts(path):
    """{"digest": sha256 of the syntax tree, "names": what it imports} of one source file, read
    once per process (as code_fingerprint is computed once per script)."""
    text = Path(path).read_text(encoding="utf-8")
    key = hashlib.sha256(f"{_name(path)}\0{text}".encode()).hexdigest()
    entries = _entries()
    facts = entries.pop(key, None)
    if not (isinstance(facts, dict) and isinstance(facts.get("digest"), str) and isinstance(facts.get("names"), list)):
        facts = {"digest": _text_digest(text), "names": sorted(_imported_names(str(Path(path).resolve()), text))}
        _cache["dirty"] = True
    entries[key] = facts  # last = most recently used
    return facts


def task_parts(script_path):
    """The TASK_PART a script declares (module-level `TASK_PART = "data"` or a tuple), as a tuple."""
    tree = _tree(Path(script_path).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "TASK_PART" for t in node.targets):
            value = ast.literal_eval(node.value)
            return (value,) if isinstance(value, str) else tuple(value)
    return ()


def code_files(script, task_types=(), scripts=None):
    """The script and every finetune_study module it needs, transitively, plus the part modules of
    the given task types that the script declares in TASK_PART."""
    start = Path(scripts or SCRIPTS) / script
    todo = [start]
    for t in task_types:
        for part in task_parts(start):
            path = _module_file(f"{TASKS_PACKAGE}.{t}" + ("" if part == "spec" else f"_{part}"))
            if path is None:
                raise ValueError(
                    f"{script} uses the {part} part of task type '{t}', but there is no tasks/{t}_{part}.py"
                )
            todo.append(path)
    seen = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [_module_file(m) for m in _imported(path) if m not in OUTSIDE_KEYS]
    seen.add(PACKAGE_DIR / "__init__.py")
    return sorted(seen)


def _source_digest(path):
    return _facts(path)["digest"]


def _text_digest(text):
    try:
        text = ast.dump(_tree(text))
    except SyntaxError:
        pass
    return hashlib.sha256(text.encode()).hexdigest()


def _name(path):
    p = Path(path).resolve()
    if p.is_relative_to(PACKAGE_DIR):
        return str(Path(PACKAGE) / p.relative_to(PACKAGE_DIR))
    return f"workflow_scripts/{p.name}"


@functools.lru_cache(maxsize=None)
def code_fingerprint(script, task_types=(), scripts=None) -> str:
    """Hash of the code a script runs (12 hex digits): editing any module it imports changes it."""
    digests = {_name(p): _source_digest(p) for p in code_files(script, tuple(task_types), scripts)}
    _save()
    return hashlib.sha256(json.dumps(digests, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
