"""Snakemake's directory lock after a kill: the next run with the same command starts.

Snakemake locks its working directory (`.snakemake/locks/*.lock`) while it runs and removes the lock
when it ends, but a Snakemake killed with SIGKILL (or by the machine going down) cannot, and every
later run there stops with "Directory cannot be locked" until someone runs `snakemake --unlock`.

So every Snakemake process that parses the workflow in its main mode (not a job's own parse)
records itself in `.snakemake/finetune_study.owners`: host, process id and the process's start time
(so a reused id is not mistaken for it). When a parse finds lock files while no other recorded
process of this host is alive, the lock is stale: it is removed, with one line saying so. A lock
with no record (left by a Snakemake that never parsed this workflow's code) or with a record from
another host (whose processes cannot be seen from here) is left to `snakemake --unlock`.
Standard library only: the Snakefile imports it at parse time.
"""

import contextlib
import fcntl
import os
import socket
from pathlib import Path

OWNERS = "finetune_study.owners"


def start_time(pid):
    """The process's start time (clock ticks since boot, /proc/<pid>/stat), or None when it is not
    running (gone, or a zombie: killed and not yet reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (command name)": state is field 3
    return None if fields[0] in ("Z", "X") else fields[19]


def _alive(host, pid, started, here):
    return host != here or start_time(int(pid)) == started


def clear_stale(snakemake_dir=".snakemake", pid=None, host=None):
    """Record this process as a user of the working directory and remove Snakemake's lock files when
    no other recorded process of this host is alive (see the module docstring). Returns the removed
    lock files."""
    d = Path(snakemake_dir)
    d.mkdir(parents=True, exist_ok=True)
    pid, host = pid or os.getpid(), host or socket.gethostname()
    me = (host, str(pid), start_time(pid) or "0")
    with open(d / OWNERS, "a+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # parses that start together take turns
        f.seek(0)
        known = [tuple(line.split()) for line in f.read().splitlines() if len(line.split()) == 3]
        others = [o for o in known if o[:2] != me[:2] and _alive(*o, host)]
        removed = []
        if known and not others:
            for lock in sorted((d / "locks").glob("*.lock")):
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                    removed.append(lock)
        f.seek(0)
        f.truncate()
        f.write("".join(" ".join(o) + "\n" for o in [*others, me]))
    return removed
