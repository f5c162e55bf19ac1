"""Shared pieces of the benchmarks: databases, server processes, machine facts, statistics.

Every benchmark talks to servers on 127.0.0.1 only, and every loop here is bounded in
count and in time. Absolute times on a shared 2-core machine are noisy: each benchmark
measures its floor in the same run and reports ratios.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import platform
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
# The groupd sources the servers run: the work tree by default; point GROUPD_BENCH_SRC at a
# snapshot (e.g. ``git archive HEAD src | tar -x -C /tmp/snap``) to measure a fixed version
# while the tree is being edited.
SRC = Path(os.environ.get("GROUPD_BENCH_SRC", ROOT / "src")).resolve()
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get(
    "GROUPD_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
HOST = "127.0.0.1"
# groupd's default SQLite page cache (settings.sqlite_cache_mib), MiB.
SQLITE_CACHE_MIB = 2
# "Now" as groupd keeps a timestamp on SQLite: microseconds since 1970, an integer
# (migration 0008). For bulk loads in SQL, to the second.
SQLITE_NOW = "(CAST(strftime('%s', 'now') AS INTEGER) * 1000000)"


# machine ---------------------------------------------------------------------------
def machine_info(pg_url: str | None = None) -> dict[str, Any]:
    """What the figures were measured on: print it with every result."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    os_name = platform.platform()
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))} ({platform.release()})"
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "os": os_name,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": os.getloadavg()[0],
    }
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    info["groupd_commit"] = commit or "unknown"
    if (ROOT / "src").resolve() != SRC:
        # A snapshot: its COMMIT file (written next to src/ when it was made) names it.
        marker = SRC.parent / "COMMIT"
        info["groupd_src"] = str(SRC)
        info["groupd_commit"] = marker.read_text().strip() if marker.exists() else "snapshot"
    if os.environ.get("GROUPD_BENCH_PYTHONPATH"):
        info["server_extra_path"] = os.environ["GROUPD_BENCH_PYTHONPATH"]
    if pg_url:
        with contextlib.suppress(Exception):
            engine = create_engine(pg_url)
            with engine.connect() as connection:
                info["postgresql"] = connection.execute(text("SHOW server_version")).scalar_one()
                info["pg_shared_buffers"] = connection.execute(
                    text("SHOW shared_buffers")
                ).scalar_one()
            engine.dispose()
    return info


def print_machine(info: dict[str, Any]) -> None:
    print("machine:", json.dumps(info))


# databases -------------------------------------------------------------------------
@dataclass
class BenchDatabase:
    """A fresh database for one benchmark: a SQLite file or a PostgreSQL database."""

    kind: str  # "sqlite" or "postgresql"
    url: str
    name: str
    workdir: Path

    @property
    def is_sqlite(self) -> bool:
        return self.kind == "sqlite"

    def begin(self, cursor: Any) -> None:
        """Open a write transaction on a ``raw_connect`` connection: SQLite's (in
        autocommit) takes the write lock at once; psycopg's opens one by itself."""
        if self.is_sqlite:
            cursor.execute("BEGIN IMMEDIATE")

    def commit(self, connection: Any, cursor: Any) -> None:
        if self.is_sqlite:
            cursor.execute("COMMIT")
        else:
            connection.commit()

    def raw_connect(self) -> Any:
        """A DB-API connection of the driver groupd uses (sqlite3 or psycopg 3)."""
        if self.is_sqlite:
            connection = sqlite3.connect(
                self.url.removeprefix("sqlite:///"),
                timeout=60,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            # The page cache groupd's own connections have, so that the floors measured
            # here and groupd run with the same database configuration.
            cache_mib = int(os.environ.get("GROUPD_SQLITE_CACHE_MIB", SQLITE_CACHE_MIB))
            connection.execute(f"PRAGMA cache_size={-cache_mib * 1024}")
            return connection
        import psycopg

        return psycopg.connect(pg_dsn(self.url))


def pg_dsn(url: str) -> str:
    """A libpq URL from an SQLAlchemy one."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def create_database(kind: str, label: str) -> BenchDatabase:
    workdir = Path(tempfile.mkdtemp(prefix=f"groupd-bench-{label}-"))
    name = f"groupd_bench_{label}_{os.getpid()}"
    if kind == "sqlite":
        return BenchDatabase(kind, f"sqlite:///{workdir / 'groupd.db'}", name, workdir)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return BenchDatabase(kind, PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name, workdir)


def clone_database(template: BenchDatabase, label: str) -> BenchDatabase:
    """A copy of a loaded database, so destructive runs start from the same data."""
    workdir = Path(tempfile.mkdtemp(prefix=f"groupd-bench-{label}-"))
    name = f"groupd_bench_{label}_{os.getpid()}"
    if template.is_sqlite:
        sys.path.insert(0, str(SRC))
        from groupd.store.queue import copy_database, database_files

        source = Path(template.url.removeprefix("sqlite:///"))
        for path in database_files(source):
            sqlite_connection = sqlite3.connect(path)
            sqlite_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sqlite_connection.close()
        copy_database(source, workdir / "groupd.db")
        return BenchDatabase("sqlite", f"sqlite:///{workdir / 'groupd.db'}", name, workdir)
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(
            text(f'CREATE DATABASE "{name}" TEMPLATE "{template.name}" STRATEGY FILE_COPY')
        )
    admin.dispose()
    return BenchDatabase("postgresql", PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}", name, workdir)


def drop_database(db: BenchDatabase) -> None:
    if not db.is_sqlite:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))
        admin.dispose()
    shutil.rmtree(db.workdir, ignore_errors=True)


def vacuum_analyze(db: BenchDatabase) -> None:
    """Fresh statistics after a bulk load, as a production database would have."""
    connection = db.raw_connect()
    try:
        if db.is_sqlite:
            connection.execute("ANALYZE")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        else:
            connection.autocommit = True
            connection.execute("VACUUM ANALYZE")
    finally:
        connection.close()


def bootstrap(db: BenchDatabase) -> str:
    """Migrate and seed groupd's schema; returns the admin's API token."""
    sys.path.insert(0, str(SRC))
    from groupd.bootstrap import prepare_database
    from groupd.settings import Settings
    from groupd.store.db import Database

    # As a server would create it: GROUPD_* variables (a page size) apply.
    database = Database.from_settings(Settings(database_url=db.url, database_pool_size=2))
    try:
        seeded = prepare_database(database)
    finally:
        database.dispose()
    assert seeded is not None, "the bench database was not empty"
    return seeded.token


# processes -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on 127.0.0.1, started and stopped by the benchmark."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    base_url: str = field(init=False)

    def __post_init__(self) -> None:
        self.base_url = f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_server(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    port: int,
    log_path: Path,
    health_path: str = "/healthz",
    cpus: set[int] | None = None,
    timeout: float = 60.0,
) -> Server:
    # GROUPD_BENCH_PYTHONPATH adds packages to the servers only (e.g. uvloop and httptools
    # installed with ``pip install --target DIR``, which uvicorn then picks up).
    paths = [str(SRC), str(ROOT), *filter(None, [os.environ.get("GROUPD_BENCH_PYTHONPATH")])]
    full_env = {**os.environ, **env, "PYTHONPATH": os.pathsep.join(paths)}
    log = log_path.open("wb")

    def pin() -> None:
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    process = subprocess.Popen(
        list(argv),
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(ROOT),
        preexec_fn=pin,
    )
    server = Server(process, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(server.base_url + health_path, timeout=1.0).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"server did not become healthy:\n{log_path.read_text()[-3000:]}")


def start_groupd(
    db: BenchDatabase,
    *,
    extra_env: dict[str, str] | None = None,
    cpus: set[int] | None = None,
    log_name: str = "groupd.log",
) -> Server:
    """One groupd server process (uvicorn with the app factory), rate limiting off."""
    port = free_port()
    env = {
        "GROUPD_DATABASE_URL": db.url,
        "GROUPD_RATE_LIMIT_ENABLED": "false",
        "GROUPD_LOG_LEVEL": "warning",
        # Deletes remove at once, as the delete benchmarks measure them; the recycle bin
        # has its own (bench/recycle_bin.py).
        "GROUPD_RETENTION_SECONDS": "0",
        **(extra_env or {}),
    }
    argv = [
        PYTHON,
        "-m",
        "uvicorn",
        "--factory",
        "groupd.api.app:create_app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return start_server(argv, env=env, port=port, log_path=db.workdir / log_name, cpus=cpus)


class RssSampler:
    """Samples a process's resident set size from /proc every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.05, max_seconds: float = 7200) -> None:
        self.pid = pid
        self.interval = interval
        self.max_seconds = max_seconds
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                self.peak = max(self.peak, rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# statistics ------------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """``with timed() as t: ...`` then ``t[0]`` is the elapsed seconds."""
    box: list[float] = []
    started = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - started)


def api(base_url: str, token: str, timeout: float = 600.0) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout
    )


def check(response: httpx.Response, *expected: int) -> Any:
    if response.status_code not in expected:
        raise RuntimeError(
            f"{response.request.method} {response.request.url} -> {response.status_code}: "
            f"{response.text[:500]}"
        )
    return response.json() if response.content else None


def tenant_root(client: httpx.Client) -> str:
    """The uuid of the tenant's root static group ("All")."""
    body = check(client.get("/api/v1/groups", params={"name": "All", "kind": "static"}), 200)
    roots = [item for item in body["items"] if item["parentId"] is None]
    return str(roots[0]["id"])
