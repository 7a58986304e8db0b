"""Small helpers every stage uses: atomic writes, JSON/JSONL I/O, log redirection, seeding.

Artifacts are written to a temporary file in the same folder (`.<name>.<random>.tmp`) and renamed
into place, so a killed job never leaves a half-written output that looks complete; the next
write of the same file removes what a killed write left. A full disk during a write ends the job
with one line naming the file (DiskFull), not a traceback.
"""

import contextlib
import errno
import glob
import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def temporary_names(path):
    """The temporary files and folders a write of `path` makes (`.<name>.<random>.tmp`, beside it)."""
    path = Path(path)
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def _remove_leftovers(path):
    """Remove what an earlier write of `path` left when it was killed before its rename (SIGKILL runs
    no cleanup); called once the new content is in place."""
    for left in temporary_names(path):
        if left.is_dir() and not left.is_symlink():
            shutil.rmtree(left, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                left.unlink()


def atomic_write_bytes(path, data: bytes):
    path = Path(path)
    with naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes files private; artifacts get the usual mode
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    _remove_leftovers(path)


def atomic_write_text(path, text: str):
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def write_jsonl(path, rows):
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder next to `path`; on success it replaces `path` in one rename."""
    path = Path(path)
    with naming_full_disk(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
        try:
            yield tmp
            os.chmod(tmp, 0o777 & ~_UMASK)
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    _remove_leftovers(path)


@contextlib.contextmanager
def log_to(log_path):
    """Send this process's stdout and stderr (progress bars included) to the rule's log file.
    A PipelineError (a bad input the user can fix) ends the job with its one line, "Error: ...",
    in the log and on the job's stderr, instead of a traceback."""
    if not log_path:
        try:
            yield
        except Exception as e:
            if not isinstance(e, PipelineError) and not is_disk_full(e):
                raise
            print(f"Error: {one_line(e)}", file=sys.stderr)
            raise SystemExit(1) from None
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1, encoding="utf-8") as log:
        old_out, old_err = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield
        except Exception as e:
            if not isinstance(e, PipelineError) and not is_disk_full(e):
                raise
            print(f"{_line_start(log)}Error: {one_line(e)}", file=log)
            print(f"Error: {one_line(e)}", file=old_err)
            raise SystemExit(1) from None
        finally:
            sys.stdout, sys.stderr = old_out, old_err


def _line_start(log):
    """A newline when the log's last line is unfinished (a progress bar), so that the error is a line
    of its own; else nothing."""
    log.flush()
    if log.tell() == 0:
        return ""
    with open(log.name, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return "" if f.read(1) == b"\n" else "\n"


def snakemake_log(smk):
    """The first log file of a Snakemake job, or None."""
    return smk.log[0] if len(smk.log) else None


def seed_everything(seed: int):
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


WORKFLOW_CORES_ENV = "LORA_WF_CORES"  # set by rules/common.smk at parse time: snakemake's --cores


def cpu_threads(config, job_threads=1, affinity=None, workflow_cores=None):
    """Intra-op threads of a model job: the config's torch_threads when set; else the job's own
    Snakemake `threads:` or, when larger, its share of the cores this process may run on (the
    cores divided by how many jobs --cores lets run at once). So `--cores 1` on a 2-core machine
    gives its one job both cores, `--cores 2` runs two one-thread jobs side by side without
    oversubscription, and a SLURM job uses the cores it was given."""
    n = int(config.get("torch_threads", 0) or 0)
    if n > 0:
        return n
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if workflow_cores is None:
        try:
            workflow_cores = int(os.environ.get(WORKFLOW_CORES_ENV, "0"))
        except ValueError:
            workflow_cores = 0
    share = affinity // workflow_cores if workflow_cores > 0 else affinity
    return max(1, int(job_threads or 1), share)


def use_cpu_threads(config, job_threads=1):
    """Set torch's intra-op threads for this job (cpu_threads) and return them."""
    import torch

    torch.set_num_threads(cpu_threads(config, job_threads))
    print(f"torch threads: {torch.get_num_threads()}")
    return torch.get_num_threads()


class PipelineError(Exception):
    """A bad input the user can fix: the message names the file and the fix."""


class DiskFull(PipelineError):
    """No space left on the device (or quota) while writing a file: the message names it."""


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc):
    """Whether an exception, or one it was raised from or while handling, is a full disk: an OSError
    with ENOSPC or EDQUOT, or a library's message of one (safetensors reports `os error 28`)."""
    return any(
        isinstance(e, DiskFull)
        or (isinstance(e, OSError) and e.errno in NO_SPACE)
        or "No space left on device" in str(e)
        or "Disk quota exceeded" in str(e)
        for e in _chain(exc)
    )


def one_line(exc):
    """The one line a job ends with for a PipelineError or a full disk (is_disk_full): the message,
    or for an unnamed full disk the file the OSError names."""
    if isinstance(exc, PipelineError):
        return str(exc)
    where = next((e.filename for e in _chain(exc) if isinstance(e, OSError) and e.filename), None)
    return f"{where or 'a file of this job'}: no space left on device; {FREE_SPACE_FIX}"


def _chain(exc):
    """The exception and those it was raised from or while handling, newest first."""
    seen = []
    while exc is not None and all(exc is not e for e in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


FREE_SPACE_FIX = (
    "free space on that disk (or point checkpoint_dir or the working directory at a larger one) "
    "and rerun the same command"
)


@contextlib.contextmanager
def naming_full_disk(path):
    """Turn a full disk while writing `path` into DiskFull naming it (log_to prints it as one line)."""
    try:
        yield
    except DiskFull:
        raise
    except Exception as e:
        if not is_disk_full(e):
            raise
        raise DiskFull(f"{path}: no space left on device; {FREE_SPACE_FIX}") from None


class ConfigError(ValueError):
    """A config value the schema or a cross-check refuses: the message names the config file, the
    key and the fix (config.py, tasks/<type>.py, preflight.py)."""


def read_text(path, encoding="utf-8"):
    """The file's text; a decode error names the file, the line and the offending byte."""
    raw = Path(path).read_bytes()
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8") and raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]  # a UTF-8 byte-order mark would otherwise end up in the first column name
    try:
        return raw.decode(encoding)
    except LookupError:
        raise PipelineError(
            f"{path}: unknown encoding '{encoding}'; set the task's encoding: to a Python "
            f"codec name such as utf-8 or latin-1"
        ) from None
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise PipelineError(
            f"{path}:{line}: not valid {encoding} (byte 0x{raw[e.start]:02x}); re-save the file "
            f"as UTF-8 or set the task's encoding: (e.g. latin-1)"
        ) from None


def selected_tasks(config):
    """The tasks this run builds: every task of the config, or those `run_tasks` names."""
    return {k: v for k, v in config["tasks"].items() if config["run_tasks"] is None or k in config["run_tasks"]}
