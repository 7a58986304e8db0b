"""Killing a Snakemake run from outside, for test_kill_anywhere.py.

run() starts the workflow's command in a process group of its own and SIGKILLs the whole group
the moment a chosen file appears: a recursive inotify watch of a few folders (Linux, through
ctypes; Watch) reads the events of files and folders appearing (created, or renamed into place)
and reports each path, relative to the working directory, as soon as the kernel does, so a kill can
land inside a checkpoint write or a temporary file's life instead of wherever polling would. Folders
that appear are watched in turn; entries made in a new folder before its watch was added are
reported from a scan of it. Also: the jobs a run's output says it started and finished, what a
kill left mid-write, and a tmpfs to fill a disk."""

import ctypes
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import tiny

IN_MOVED_TO, IN_CREATE, IN_ISDIR, IN_Q_OVERFLOW = 0x80, 0x100, 0x40000000, 0x4000
HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len (then the name)


class Watch:
    """Watch `roots` (folders under `work`, made if missing) and call on_path(relative path, is_dir)
    for every file or folder that appears below them, from a thread, until stop()."""

    def __init__(self, work, roots, on_path):
        self.work, self.on_path = Path(work), on_path
        self.libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = self.libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.folders, self.seen, self.overflow = {}, set(), False
        for root in roots:
            (self.work / root).mkdir(parents=True, exist_ok=True)
            self._add(self.work / root, report=False)
        self.running = True
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _add(self, folder, report=True):
        wd = self.libc.inotify_add_watch(self.fd, str(folder).encode(), IN_CREATE | IN_MOVED_TO)
        if wd < 0:  # gone again already
            return
        self.folders[wd] = folder
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for e in entries:  # made before the watch was added
            self._appeared(Path(e.path), e.is_dir(follow_symlinks=False), report)

    def _appeared(self, path, is_dir, report=True):
        if report and path not in self.seen:
            self.seen.add(path)
            self.on_path(str(path.relative_to(self.work)), is_dir)
        if is_dir:
            self._add(path, report)

    def _loop(self):
        while self.running:
            if not select.select([self.fd], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                continue
            i = 0
            while i < len(data):
                wd, mask, _, n = HEADER.unpack_from(data, i)
                name = data[i + HEADER.size : i + HEADER.size + n].rstrip(b"\0").decode()
                i += HEADER.size + n
                if mask & IN_Q_OVERFLOW:
                    self.overflow = True
                if wd in self.folders and name:
                    self._appeared(self.folders[wd] / name, bool(mask & IN_ISDIR))

    def stop(self):
        self.running = False
        self.thread.join()
        os.close(self.fd)


def run(work, out, target, trigger=None):
    """Run `snakemake ... target` on work (tiny.snakemake_call, as a new interpreter) in a process
    group of its own, its output to the file `out`; when trigger(path, is_dir) returns a delay for a
    path that appears, SIGKILL the group that many seconds later. (return code, the path that
    triggered a kill or None, Snakemake's output)."""
    args, env = tiny.snakemake_call(work, target)
    cmd = [sys.executable, "-m", "snakemake", *args]
    fired, t0 = [], time.monotonic()
    with open(out, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        def on_path(path, is_dir):
            delay = trigger(path, is_dir) if trigger and not fired else None
            if delay is not None:
                fired.append(path)
                time.sleep(delay)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:  # it ended within the delay: no kill
                    fired.clear()

        watch = Watch(work, ["results", "checkpoints"], on_path)
        try:
            rc = proc.wait(timeout=900)
        finally:
            watch.stop()
        wait_for_group(proc.pid)
    print(f"{Path(out).name}: rc {rc} after {time.monotonic() - t0:.1f} s")
    return rc, (fired[0] if fired else None), Path(out).read_text()


def wait_for_group(pgid, timeout=30):
    """Until no live process of the process group is left (the killed jobs have exited)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] not in "ZX":
                left.append(stat.parent.name)
        if not left:
            return
        time.sleep(0.05)
    raise AssertionError(f"processes of group {pgid} still alive: {left}")


def jobs(output):
    """(outputs of the jobs Snakemake started, outputs of those it logged as finished) of one run."""
    started, finished, current = {}, set(), None
    for line in output.splitlines():
        s = line.strip()
        if s.startswith("output:") and current is None:
            current = [p.strip() for p in s[len("output:") :].split(",")]
        elif s.startswith("jobid:") and current is not None:
            started[s.split()[1]], current = current, None
        elif s.startswith("Finished jobid:"):
            finished.add(s.split()[2])
    done = {p for j in finished if j in started for p in started[j]}
    return {p for ps in started.values() for p in ps}, done


def torn(work):
    """What a kill left mid-write: temporary files and folders, checkpoints without their marker."""
    tmp = [p for p in work.rglob("*.tmp") if ".snakemake" not in p.parts]
    unmarked = [p for p in (work / "checkpoints").rglob("step-*") if p.is_dir() and not (p / "COMPLETE").exists()]
    return sorted(str(p.relative_to(work)) for p in {*tmp, *unmarked})


def mount_tmpfs(folder, size="4k"):
    """Mount a tmpfs of `size` over folder: None, or why it could not."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return None if done.returncode == 0 else f"cannot mount a tmpfs: {done.stderr.decode().strip() or done.returncode}"


def unmount(folder):
    if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
