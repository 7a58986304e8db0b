"""A recursive inotify watch of a few folders (Linux, through ctypes), for the kill tests: a thread
reads the events of files and folders appearing (created, or renamed into place) and calls a
function with each path, relative to the working directory, as soon as the kernel reports it. So a
test can act the moment a job starts a checkpoint write or a temporary file, instead of polling.

Folders that appear are watched in turn; entries made in a new folder before its watch was added
are reported from a scan of it, so nothing that appears is missed."""

import ctypes
import os
import select
import struct
import threading
from pathlib import Path

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
