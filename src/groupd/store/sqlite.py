"""Everything that only SQLite needs: its pragmas and transaction modes, the queue of
this process's writers, and the folds of the WAL back into the database.

SQLite runs in WAL mode with foreign keys on; writers open their transaction with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing on upgrade, and
queue first in ``WriterQueue``, in arrival order. The WAL is folded back by a background
``Checkpointer`` and, during a delete, between its chunks (``WalFolds``, decision 0005).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from groupd.errors import Unavailable
from groupd.store.driver import (
    AUTOCOMMIT,
    UNIT_BEGUN,
    budget_exceeded,
    current_deadline,
    run_on_driver,
)

log = logging.getLogger("groupd.db")
CHECKPOINT_INTERVAL_SECONDS = 1.0
SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_SQLITE_CACHE_MIB = 2
DEFAULT_SQLITE_PAGE_SIZE = 4096
# SQLite calls the progress handler every this many virtual-machine steps.
SQLITE_PROGRESS_STEPS = 10_000
# A writer that finds the lock held by another process polls for it itself this long,
# from every 50 µs up to every millisecond, before SQLite's busy handler takes over
# (``begin_immediate``, decision 0076).
FINE_WAIT_SECONDS = 0.05
FINE_POLL_SECONDS = (0.00005, 0.001)


def configure_sqlite(
    engine: Engine, *, cache_mib: int, page_size: int, attach: tuple[str, str] | None = None
) -> None:
    """Pragmas on every new connection; ``attach``: a database to attach to each, as
    (its name, a read-only URI): the webhook queue's file, or the main one from the
    queue's side (``groupd.store.queue``)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the sqlite3 module so BEGIN is ours to choose.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # Takes effect only while the file is still empty, so before WAL mode writes its
        # header; an existing database keeps its page size.
        cursor.execute(f"PRAGMA page_size={page_size}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        # Checkpoints run in the background (Database's checkpointer), not inside the
        # commit of whichever writer crossed the threshold: a big delete's chunks would
        # otherwise each pay for copying thousands of pages back into the database.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        # SQLite's own default, 2 MiB, unless configured (decision 0014).
        cursor.execute(f"PRAGMA cache_size={-cache_mib * 1024}")
        if attach is not None:
            name, uri = attach
            cursor.execute(f"ATTACH DATABASE ? AS {name}", (uri,))
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        pooled = connection.connection
        if pooled.info.pop(UNIT_BEGUN, False):
            return  # a unit of work began it on the driver already
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        begin_sqlite(pooled, connection.dialect, mode)


def begin_sqlite(pooled: PoolProxiedConnection, dialect: Dialect, mode: str) -> None:
    """Bound the coming work by the deadline, and BEGIN ``mode`` (IMMEDIATE, DEFERRED,
    or nothing for AUTOCOMMIT: each statement its own transaction) on the driver:
    SQLAlchemy's execution machinery would cost more than the BEGIN itself."""
    busy_ms = _bound_sqlite_transaction(pooled)
    if mode == "IMMEDIATE":
        begin_immediate(pooled, dialect, busy_ms)
    elif mode != AUTOCOMMIT:
        _set_busy_timeout(pooled, busy_ms)
        run_on_driver(pooled, dialect, f"BEGIN {mode}")
    else:
        _set_busy_timeout(pooled, busy_ms)


def begin_immediate(pooled: PoolProxiedConnection, dialect: Dialect, busy_ms: int) -> None:
    """``BEGIN IMMEDIATE``, waiting for a writer of another process in fine steps first.

    This process's writers queue in ``WriterQueue``; a writer of another process (the
    webhook delivery process, a worker, the CLI) holds the lock for a millisecond or
    two. SQLite's busy handler sleeps 1, 2, 5, 10 ms and more between its polls, so each
    such write used to cost this one several milliseconds of doing nothing, and every
    writer of this process queued behind it. The first ``FINE_WAIT_SECONDS`` are polled
    here instead; after them, SQLite's handler waits out the rest of ``busy_ms``."""
    deadline = current_deadline()
    if deadline is not None and deadline.passed():
        raise budget_exceeded(deadline)
    dbapi_connection: Any = pooled.dbapi_connection
    _set_busy_timeout(pooled, 0)
    pause, longest = FINE_POLL_SECONDS
    give_up = time.monotonic() + min(FINE_WAIT_SECONDS, busy_ms / 1000)
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            busy = (error.sqlite_errorcode & 0xFF) == sqlite3.SQLITE_BUSY  # extended codes too
            if not busy or time.monotonic() >= give_up:
                break
        time.sleep(pause)
        pause = min(pause * 2, longest)
    _set_busy_timeout(pooled, busy_ms)
    run_on_driver(pooled, dialect, "BEGIN IMMEDIATE")


def _bound_sqlite_transaction(pooled: Any) -> int:
    """Set per transaction, since pooled connections serve requests and the worker in
    turn: under a deadline, long statements are interrupted and lock waits end at it.
    The lock wait the transaction may have, in milliseconds."""
    dbapi_connection = pooled.dbapi_connection
    deadline = current_deadline()
    if deadline is None:
        dbapi_connection.set_progress_handler(None, 0)
        return SQLITE_BUSY_TIMEOUT_MS
    dbapi_connection.set_progress_handler(deadline.passed, SQLITE_PROGRESS_STEPS)
    return min(SQLITE_BUSY_TIMEOUT_MS, deadline.remaining_ms())


def _set_busy_timeout(pooled: Any, busy_ms: int) -> None:
    if pooled.info.get("busy_ms", SQLITE_BUSY_TIMEOUT_MS) != busy_ms:
        pooled.dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")
        pooled.info["busy_ms"] = busy_ms


class WriterQueue:
    """First come, first served among this process's SQLite writers.

    SQLite lets one writer in at a time, and a writer that finds the lock taken sleeps in
    SQLite's busy handler and polls; a worker committing chunk after chunk re-takes the
    lock between two polls, so a small write could wait for seconds. Queueing here, before
    ``BEGIN IMMEDIATE``, hands the lock to whoever asked first.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiting: deque[threading.Event] = deque()
        self._held = False

    def acquire(self, timeout: float) -> None:
        """Wait for this writer's turn: at most ``timeout``, or until the request's
        deadline when one is set (then the answer is the time-budget refusal)."""
        deadline = current_deadline()
        if deadline is not None:
            timeout = min(timeout, max((deadline.at - time.monotonic()), 0.0))
        with self._mutex:
            if not self._held and not self._waiting:
                self._held = True
                return
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return
        with self._mutex:
            if turn in self._waiting:
                self._waiting.remove(turn)
                if deadline is not None:
                    raise budget_exceeded(deadline)
                raise Unavailable("the database is busy; try again", code="database_busy")
        # handed the lock just as the wait timed out: it is ours

    def others_waiting(self) -> bool:
        """Whether a writer is queued behind the one holding the lock."""
        return bool(self._waiting)

    def release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()  # straight to the next in line
            else:
                self._held = False


def checkpoint(engine: Engine) -> bool:
    """Fold the WAL back into the database without blocking anyone (PASSIVE: it copies
    what no reader still needs and never waits for a lock). True when it copied every
    frame: the next writer then starts the WAL again from its beginning instead of
    appending to it."""
    # A raw connection: it is in autocommit mode, outside any transaction, which a
    # checkpoint needs.
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # The main file's only: an attached one is the other side's to fold.
        cursor.execute("PRAGMA main.wal_checkpoint(PASSIVE)")
        row = cursor.fetchone()
        cursor.close()
    finally:
        raw.close()
    assert row is not None, "PRAGMA wal_checkpoint answers one row"
    busy, frames, copied = row
    return not busy and frames == copied


class Checkpointer:
    """A background thread that folds the WAL back every ``interval`` seconds, so that no
    writer's commit pays for it (``wal_autocheckpoint`` is off)."""

    def __init__(self, fold: Callable[[], bool], *, interval: float) -> None:
        self._fold = fold
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, args=(interval,), name="groupd-wal-checkpoint", daemon=True
        )
        self._thread.start()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._fold()
            except Exception as error:  # the file may be gone (tests); try again later
                log.debug("WAL checkpoint skipped: %s", error)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class WalFolds:
    """Folds the WAL back into the database between a delete's chunks, half of the time
    beside the next chunk (decision 0005).

    Left to the background checkpointer, which never finds the WAL complete between two
    chunks, the WAL grows over a whole delete. SQLite starts a WAL from its beginning
    again only when a writer begins while every frame has been copied back. So after one
    chunk a fold starts on a thread of its own and the next chunk runs beside it (a
    ``PASSIVE`` checkpoint blocks no writer; the GIL is released while it copies); after
    that chunk the worker waits for it and folds the rest itself, and the chunk after
    starts the WAL again. The WAL holds at most two chunks, and half of the folds' time
    overlaps the chunks' statements instead of adding to them.

    ``fold`` is ``Database.checkpoint``; on PostgreSQL (``sqlite`` false) there is
    nothing to fold.
    """

    def __init__(self, fold: Callable[[], bool], *, sqlite: bool) -> None:
        self._fold_wal = fold
        self._sqlite = sqlite
        self._beside: threading.Thread | None = None

    def __enter__(self) -> WalFolds:
        return self

    def __exit__(self, *_: object) -> None:
        self.settle()

    def after_chunk(self) -> None:
        if not self._sqlite:
            return
        if self._beside is None:
            self._beside = threading.Thread(target=self._fold, name="groupd-wal-fold", daemon=True)
            self._beside.start()
            return
        self.settle()
        self._fold()

    def settle(self) -> None:
        """Wait for the fold running beside the chunks, if any."""
        if self._beside is not None:
            self._beside.join()
            self._beside = None

    def _fold(self) -> None:
        try:
            if not self._fold_wal():
                log.debug("WAL checkpoint after a chunk left frames a reader still uses")
        except Exception as error:  # the background checkpointer will do it later
            log.debug("WAL checkpoint after a chunk skipped: %s", error)
