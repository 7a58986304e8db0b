"""The sha256 of every file of a prepared model folder (results/models/<model>/), recorded when
prepare_model writes the folder and checked before jobs use it: a weights file whose length is
right but whose content changed (a flipped bit) is named instead of being loaded. Standard library
only (the parse imports it).

- `weight_digests.json` in the folder (MANIFEST), written inside the folder's atomic write, holds
  each file's size and sha256: the weights, config and tokenizer files, head.json.
- A stamp per folder under `.snakemake/weight_digests/` of the working directory (STAMPS) holds
  each file's (size, mtime_ns, ctime_ns, inode) when its content last matched the manifest. A file
  whose stat still equals its stamp is not hashed again; an edited, replaced or copied file is. So
  a folder is hashed once when prepare_model writes it (it stamps it then) or when the parse first
  meets it, and later parses and jobs only stat its files (`verify` returns what it hashed).
- A folder prepared before digests were recorded has no manifest: the parse records one from the
  files as they are, with one line saying so (`check_prepared`).
"""

import hashlib
import json
import os
import re
import sys
from pathlib import Path

from .common import PipelineError, atomic_write_text
from .hashing import short_hash
from .paths import MODEL_DIR

MANIFEST = "weight_digests.json"
STAMPS = Path(".snakemake") / "weight_digests"
NOT_RECORDED = {MANIFEST, ".snakemake_timestamp"}  # Snakemake touches the latter after the job
CHUNK = 1 << 23
PREPARE = "prepare_model"  # the rule that writes a prepared folder (rules/models.smk)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fix(folder) -> str:
    return f"delete {folder}/ so prepare_model rebuilds it, or rerun with --forcerun prepare_model"


def record(folder) -> dict:
    """Hash every file of `folder` and write its MANIFEST atomically; returns the manifest."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in NOT_RECORDED)
    manifest = {
        "algorithm": "sha256",
        "files": {
            p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        },
    }
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _stat_key(path):
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def stamp_path(folder, stamps=STAMPS) -> Path:
    folder = Path(folder)
    return Path(stamps) / f"{folder.name}-{short_hash(str(folder.resolve()))}.json"


def _read_manifest(folder):
    raw = (Path(folder) / MANIFEST).read_bytes()
    try:
        files = json.loads(raw)["files"]
        whole = all(isinstance(r["size"], int) and isinstance(r["sha256"], str) for r in files.values())
    except (ValueError, KeyError, TypeError, AttributeError):
        whole = False
    if not whole:
        raise PipelineError(f"{Path(folder) / MANIFEST}: unreadable; {fix(folder)}")
    return files, hashlib.sha256(raw).hexdigest()


def write_stamp(folder, stamps=STAMPS, keys=None):
    """Stamp `folder` as matching its manifest: `keys` (name -> stat key), or its files' stat now
    (prepare_model, which has just hashed them)."""
    files, tag = _read_manifest(folder)
    keys = keys if keys is not None else {name: _stat_key(Path(folder) / name) for name in files}
    atomic_write_text(stamp_path(folder, stamps), json.dumps({"manifest": tag, "files": keys}, sort_keys=True))


def verify(folder, stamps=STAMPS, write=True):
    """Raise PipelineError naming the first file of `folder` that is missing or whose content no
    longer matches its manifest; hash only the files whose stat differs from the stamp. write: update
    the stamp (the parse; jobs only read it). Returns the names of the files it hashed."""
    folder = Path(folder)
    files, tag = _read_manifest(folder)
    try:
        stamp = json.loads(stamp_path(folder, stamps).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = {}
    known = stamp.get("files", {}) if isinstance(stamp, dict) and stamp.get("manifest") == tag else {}
    keys, hashed = {}, []
    for name, rec in sorted(files.items()):
        path = folder / name
        try:
            keys[name] = _stat_key(path)
        except FileNotFoundError:
            raise PipelineError(
                f"{path}: missing, though {folder / MANIFEST} records it from when the model was prepared; {fix(folder)}"
            ) from None
        if known.get(name) == keys[name]:
            continue
        hashed.append(name)
        if keys[name][0] != rec["size"] or file_sha256(path) != rec["sha256"]:
            raise PipelineError(
                f"{path}: its content no longer matches the sha256 recorded in {folder / MANIFEST} when "
                f"the model was prepared; {fix(folder)}"
            )
    if hashed and write:
        write_stamp(folder, stamps, keys)
    return hashed


def check_prepared(folder, stamps=STAMPS):
    """The parse's check of a prepared folder (verify); a folder prepared before digests were
    recorded (a config.json, no manifest) gets its manifest now, from its files as they are, and one
    line on stderr. Returns the names of the files it hashed."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return verify(folder, stamps)
    if not (folder / "config.json").is_file():
        return []  # not prepared yet
    manifest = record(folder)
    write_stamp(folder, stamps)
    print(
        f"{folder}: prepared before weight digests were recorded; recorded the sha256 of its "
        f"{len(manifest['files'])} files as they are now in {folder / MANIFEST}",
        file=sys.stderr,
    )
    return sorted(manifest["files"])


# options by which a Snakemake command line may rebuild a prepared folder by force (-R, -F, -f, or
# several one-letter options in one word: -nR)
FORCE_OPTIONS = re.compile(r"^(--force|--forceall|--forcerun|--target-jobs)(=|$)|^-[A-Za-z]*[RFf]")


def command_line(argv):
    """Snakemake's reading of its own command line (`sys.argv`), as far as it forces jobs: None when
    no force option is given (most runs: no parser is built) or when argv is not Snakemake's."""
    if not argv or "snakemake" not in Path(argv[0]).as_posix() or not any(FORCE_OPTIONS.match(a) for a in argv[1:]):
        return None
    from snakemake.cli import get_argument_parser

    try:
        return get_argument_parser().parse_known_args(argv[1:])[0]
    except SystemExit:  # not a command line Snakemake would accept: it says so itself
        return None


def forced_models(names, args):
    """The models among `names` whose prepared folder this Snakemake invocation rebuilds by force,
    so the parse does not check it (args: command_line): --forceall, --forcerun of prepare_model or
    of the folder, a forced target (-f) that is the folder, or a cluster job of prepare_model (which
    Snakemake runs with --force --target-jobs prepare_model:model=<name>)."""
    if args is None:
        return set()
    forced = set(args.forcerun or ())
    if args.force:
        forced |= set(args.targets or ())
        forced |= {
            MODEL_DIR.format(model=j.wildcards_dict.get("model"))
            for j in args.target_jobs or ()
            if j.rulename == PREPARE
        }
    if args.forceall or PREPARE in forced:
        return set(names)
    forced = {os.path.normpath(f) for f in forced}
    return {n for n in names if os.path.normpath(MODEL_DIR.format(model=n)) in forced}
