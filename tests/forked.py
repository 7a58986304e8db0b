"""Runs `python -m snakemake ARGS` for the tests as a fork of a waiting interpreter that has already
imported Snakemake, instead of a new interpreter per call: Snakemake's own imports (its CLI,
persistence layer and executor plugins, about 1.5 of the 2 seconds a no-op dry run of the tiny
config takes as a new process) are then paid once per pytest worker, not once per call.

The waiting interpreter (the "zygote", `python forked.py --zygote`, one per pytest worker) imports
only Snakemake and what its CLI imports, never the workflow's own package or anything a test
imported, and starts no thread, so each fork begins as a fresh `python -m snakemake` would after
those imports. The child then takes the caller's environment, working folder, PYTHONPATH (first
on sys.path, after the working folder, as `python -m` sets it up), argv, and stdin, stdout and
stderr of its own. The jobs it starts are new interpreters, as with a plain `snakemake` call.
Set LORA_WF_TEST_FORK=0 to run every call as a subprocess instead.
"""

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENABLED = os.environ.get("LORA_WF_TEST_FORK", "1") != "0" and hasattr(os, "fork")
_zygote = None


# -----------------------------------------------------------------------------
# the caller's side (imported by tiny.py)


def run(args, env, timeout):
    """CompletedProcess of `python -m snakemake *args` with environment `env` (text output)."""
    cmd = [sys.executable, "-m", "snakemake", *args]
    if not ENABLED:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    z = _started_zygote()
    with tempfile.TemporaryDirectory(prefix="snakemake-fork-") as tmp:
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        request = {"args": list(args), "env": dict(env), "cwd": os.getcwd(), "out": str(out_path), "err": str(err_path)}
        z.stdin.write((json.dumps(request) + "\n").encode())
        z.stdin.flush()
        pid = _reply(z, 60)["pid"]
        try:
            code = _reply(z, timeout)["rc"]
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            _reply(z, 60)
            raise subprocess.TimeoutExpired(cmd, timeout) from None
        return subprocess.CompletedProcess(cmd, code, _read(out_path), _read(err_path))


def _started_zygote():
    global _zygote
    if _zygote is None or _zygote.poll() is not None:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # each call brings its own
        _zygote = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--zygote"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        _zygote.buffer = b""
        atexit.register(_zygote.stdin.close)  # the zygote exits when its stdin closes
        _reply(_zygote, 300)  # ready: Snakemake imported
    return _zygote


def _reply(z, timeout):
    """The zygote's next line, as JSON; TimeoutExpired if none comes within timeout seconds."""
    deadline = time.monotonic() + timeout
    fd = z.stdout.fileno()
    while b"\n" not in z.buffer:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise subprocess.TimeoutExpired("snakemake zygote", timeout)
        chunk = os.read(fd, 65536)
        if not chunk:
            raise RuntimeError(f"the snakemake zygote exited (rc {z.wait()})")
        z.buffer += chunk
    line, z.buffer = z.buffer.split(b"\n", 1)
    return json.loads(line)


def _read(path):
    return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""


# -----------------------------------------------------------------------------
# the zygote's side (python forked.py --zygote)


def _zygote_main():
    import jsonschema  # noqa: F401  (what every parse of the workflow's config imports)
    import smart_open  # noqa: F401  (what Snakemake imports when it opens the Snakefile)
    import snakemake.cli
    import snakemake.report  # noqa: F401
    import yaml  # noqa: F401

    snakemake.cli.get_argument_parser()  # its plugin registries find the installed plugins once

    here = str(Path(__file__).resolve().parent)
    base_path = [p for p in sys.path if p not in ("", here)]
    requests, replies = sys.stdin.buffer, sys.stdout.buffer

    def reply(obj):
        replies.write((json.dumps(obj) + "\n").encode())
        replies.flush()

    reply({"ready": True})
    for line in requests:
        r = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(snakemake.cli, r, base_path)
        reply({"pid": pid})
        _, status = os.waitpid(pid, 0)
        reply({"rc": os.waitstatus_to_exitcode(status)})


def _child(cli, r, base_path):
    code = 1
    try:
        os.chdir(r["cwd"])
        os.environ.clear()
        os.environ.update(r["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd, path in ((1, r["out"]), (2, r["err"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
            os.close(f)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
        sys.stderr = open(2, "w", buffering=1, closefd=False, encoding="utf-8", errors="backslashreplace")
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
        extra = [p for p in r["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:] = [os.getcwd(), *extra, *base_path]  # as `python -m snakemake` sets it up
        sys.argv = [str(Path(cli.__file__).with_name("__main__.py")), *r["args"]]
        try:
            cli.main(r["args"])
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__" and sys.argv[1:] == ["--zygote"]:
    _zygote_main()
