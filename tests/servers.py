"""Real ``groupd serve`` processes for fault and load tests.

A ``ServerProcess`` starts the installed ``groupd`` command on a free loopback port with
the environment a test gives it, waits until ``/readyz`` answers, and can be killed with
SIGKILL and started again on the same database. Each server leads a process group of its
own, with the processes it starts (its webhook delivery process): SIGKILL goes to the
whole group, as when a machine or container dies. Every process started here is killed
when its context ends, and at interpreter exit whatever a failing test left behind.

A server is the ``groupd`` command's own ``main`` with ``serve`` and its options, run in
a process forked from a server of processes that imported groupd once (multiprocessing's
``forkserver``): the suite starts about a hundred servers, and an interpreter's imports
are most of a start's CPU on this two-core machine. ``tests/test_cli.py`` starts the
installed command itself.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

GROUPD = Path(sys.executable).with_name("groupd")
_FORKS = multiprocessing.get_context("forkserver")
# Not ``groupd.cli``: its consoles read the terminal's width from the environment when they
# are made, which must be the forked command's, not the forkserver's.
_FORKS.set_forkserver_preload(
    ["groupd.api.app", "uvicorn", "httptools", "uvloop", "httpx", "typer", "rich.table"]
)


def _serve(argv: list[str], env: dict[str, str], log_path: str) -> None:
    """The forked process: a session of its own, the log as its output, the test's
    environment, then the command's ``main``."""
    os.setsid()
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.environ.clear()
    os.environ.update(env)
    sys.argv = ["groupd", *argv]
    from groupd.cli import main

    main()


def _command(
    argv: list[str], env: dict[str, str], cwd: str | None, stdin: str, out: str, err: str
) -> None:
    """A forked ``groupd`` command: its input, output and errors in files."""
    os.environ.clear()
    os.environ.update(env)
    if cwd is not None:
        os.chdir(cwd)
    for fd, path, mode in ((0, stdin, os.O_RDONLY), (1, out, os.O_WRONLY), (2, err, os.O_WRONLY)):
        opened = os.open(path, mode)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own standard input)
    sys.argv = ["groupd", *argv]
    from groupd.cli import main

    main()


def run_groupd(
    *args: str,
    env: dict[str, str],
    stdin: str | None = None,
    cwd: Path | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``groupd ARGS``, as ``subprocess.run`` with its output captured would run it, in a
    process forked from the forkserver (the module's docstring)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = [os.path.join(tmp, name) for name in ("in", "out", "err")]
        Path(files[0]).write_text(stdin or "")
        for path in files[1:]:
            Path(path).touch()
        process = _FORKS.Process(
            target=_command, args=(list(args), env, str(cwd) if cwd else None, *files)
        )
        process.start()
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise subprocess.TimeoutExpired(["groupd", *args], timeout)
        out, err = (Path(path).read_text() for path in files[1:])
    return subprocess.CompletedProcess(["groupd", *args], process.exitcode, out, err)


class Forked:
    """A forked server with the part of ``subprocess.Popen`` the tests use."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self._process = _FORKS.Process(target=_serve, args=(argv, env, str(log_path)))
        self._process.start()
        assert self._process.pid is not None
        self.pid: int = self._process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("groupd serve", timeout or 0)
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_RUNNING: set[Forked] = set()


def _kill_group(process: Forked) -> None:
    """SIGKILL to the server and every process of its group (to the server alone if it
    has not made its group yet)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)


def _kill_leftovers() -> None:
    for process in list(_RUNNING):
        _kill_group(process)
        process.wait()
    _RUNNING.clear()


atexit.register(_kill_leftovers)


# Ports for the servers tests start: each pytest-xdist worker takes its own thousand below
# the kernel's ephemeral ports (32768 and up), in turn. A port the kernel hands out (bind
# to 0) could be handed to another worker's server between this probe and the bind, and
# that server would then answer this test's readiness probe.
_PORT_BASE = 20_000
_PORTS_PER_WORKER = 1_000
_next_port = itertools.count()


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    first = _PORT_BASE + (index % 12) * _PORTS_PER_WORKER
    for _ in range(_PORTS_PER_WORKER):
        port = first + next(_next_port) % _PORTS_PER_WORKER
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in {first} to {first + _PORTS_PER_WORKER - 1}")


def server_env(database_url: str, **settings: str | int | float | bool) -> dict[str, str]:
    """The parent's environment without its GROUPD_ settings, plus these settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GROUPD_") or k.startswith("GROUPD_TEST_")
    }
    env["GROUPD_DATABASE_URL"] = database_url
    env["GROUPD_RATE_LIMIT_ENABLED"] = "false"
    env["GROUPD_LOG_LEVEL"] = "warning"
    # As conftest.make_settings: deletes remove at once unless a test is about the bin.
    env["GROUPD_RETENTION_SECONDS"] = "0"
    for name, value in settings.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"GROUPD_{name.upper()}"] = text
    return env


class ServerProcess:
    """One ``groupd serve`` process at a time; ``start`` after ``kill`` is a restart."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.process: Forked | None = None
        self.port = 0
        self.starts = 0
        self.kills = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def start(self, timeout: float = 30.0) -> None:
        assert self.process is None, "the server is already running"
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = free_port()
            with self.log_path.open("ab") as log:
                log.write(f"--- start {self.starts + 1} on port {self.port}\n".encode())
            argv = ["serve", "--host", "127.0.0.1", "--port", str(self.port)]
            process = Forked(argv, self.env, self.log_path)
            _RUNNING.add(process)
            self.process = process
            if self._wait_ready(timeout):
                self.starts += 1
                return
            self._reap(signal.SIGKILL)
        raise RuntimeError(f"groupd did not become ready; log:\n{self.log_tail()}")

    def _wait_ready(self, timeout: float) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if client.get("/readyz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        return False

    def kill(self) -> None:
        """SIGKILL to the server and its children: no shutdown handler runs,
        transactions in flight are cut."""
        self._reap(signal.SIGKILL)
        self.kills += 1

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and a graceful shutdown; SIGKILL if it takes longer than ``timeout``."""
        self._reap(signal.SIGTERM, timeout)

    def _reap(self, sig: signal.Signals, timeout: float = 10.0) -> None:
        process = self.process
        if process is None:
            return
        if sig == signal.SIGKILL:
            _kill_group(process)
        else:  # the server stops its own children
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
        _kill_group(process)  # whatever outlived a graceful stop
        process.wait()
        _RUNNING.discard(process)
        self.process = None

    def log_problems(self, limit: int = 12) -> str:
        """The distinct warnings and errors the server logged, one short line each."""
        seen: dict[str, None] = {}
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if not isinstance(entry, dict) or entry.get("level") not in ("warning", "error"):
                continue
            error = _error_line(str(entry.get("exception") or ""))
            message = str(entry.get("message", "")).splitlines()[0][:300]
            seen.setdefault(f"{entry['level']}: {message} {error[:300]}", None)
        shown = list(seen)[:limit]
        more = f"\n... and {len(seen) - limit} more" if len(seen) > limit else ""
        return "\n".join(shown) + more

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._reap(signal.SIGKILL)


def _error_line(exception: str) -> str:
    """The line of a logged traceback that names the error ("module.Error: why"), the last
    such; SQLAlchemy ends its errors with a link that says nothing of the cause."""
    lines = [line for line in exception.strip().splitlines() if line.strip()]
    while lines and lines[-1].startswith("(Background on this error"):
        lines.pop()
    named = [line for line in lines if re.match(r"^[\w.]+: ", line)]  # "module.Error: why"
    return (named or lines or [""])[-1]
