"""Engines and the unit of work.

SQLite runs in WAL mode with foreign keys on; writers open their transaction with
``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing on upgrade.
PostgreSQL runs through psycopg 3 with a connection pool.

A request's database work runs under a deadline (``request_deadline``): PostgreSQL gets
``SET LOCAL statement_timeout`` for the rest of the budget, SQLite a progress handler and a
busy timeout that stop at the deadline, and no statement starts after it. Work outside such
a block (the delete worker, the CLI) has no deadline.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection, SingletonThreadPool

from groupd.errors import Unavailable
from groupd.settings import Settings
from groupd.store.prepared import wrap_driver_error

log = logging.getLogger("groupd.db")
CHECKPOINT_INTERVAL_SECONDS = 1.0
SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_SQLITE_CACHE_MIB = 2
DEFAULT_SQLITE_PAGE_SIZE = 4096
# SQLite calls the progress handler every this many virtual-machine steps (~0.1-1 ms).
SQLITE_PROGRESS_STEPS = 10_000
# How early SQLite's busy handler may give up before the deadline it was set to.
SQLITE_BUSY_SLACK = 0.1
PG_QUERY_CANCELED = "57014"
TIMEOUT_KEY = "groupd_statement_timeout_ms"  # the timeout in force in this transaction
AUTOCOMMIT = "AUTOCOMMIT"
UNIT_BEGUN = "groupd_unit_begun"  # a unit of work began the transaction on the driver
SESSION_DEFAULT_KEY = "groupd_session_timeout_ms"  # the connection's default timeout
SESSION_TIMEOUT_SET = "groupd_session_timeout_set"  # a read unit changed the session's


@dataclass(slots=True)
class Deadline:
    at: float  # time.monotonic()
    budget_seconds: float
    # A shorter bound for an inline read (decision 0070): it may hold the event loop for
    # ``cpu_seconds`` of wall time and then, if the loop was only descheduled meanwhile,
    # for as much processor time again. The processor clock (a system call) is read only
    # by the reads that outlive the first part.
    cpu_seconds: float = 0.0
    cpu_checked_from: float = math.inf  # time.monotonic()
    cpu_from: float | None = None  # time.thread_time() when the first part ended

    def remaining_ms(self) -> int:
        remaining = self.at - time.monotonic()
        if self.cpu_seconds:
            # Waiting for a lock (SQLite's busy handler) holds the loop up as much.
            remaining = min(remaining, self.cpu_seconds)
        return max(1, int(remaining * 1000))

    def passed(self) -> bool:
        now = time.monotonic()
        if now >= self.at:
            return True
        if now < self.cpu_checked_from:
            return False
        if self.cpu_from is None:
            self.cpu_from = time.thread_time()
            return False
        return time.thread_time() - self.cpu_from >= self.cpu_seconds


_deadline: ContextVar[Deadline | None] = ContextVar("groupd_db_deadline", default=None)


@contextmanager
def request_deadline(
    at: float, budget_seconds: float, *, cpu_seconds: float = 0.0
) -> Iterator[None]:
    """Bound the database work started in this block (in this thread or task) so that it
    ends by ``at`` (a ``time.monotonic()`` value), and with ``cpu_seconds``, once it has
    held this thread that long and then used as much processor time, or waited that long
    for a lock (SQLite); past either, statements fail with ``Unavailable``
    (``time_budget_exceeded``)."""
    if cpu_seconds:
        deadline = Deadline(at, budget_seconds, cpu_seconds, time.monotonic() + cpu_seconds)
    else:
        deadline = Deadline(at, budget_seconds)
    token = _deadline.set(deadline)
    try:
        yield
    finally:
        _deadline.reset(token)


def budget_exceeded(deadline: Deadline) -> Unavailable:
    return Unavailable(
        f"the request did not finish within its time budget of "
        f"{deadline.budget_seconds:g} s; try again later or ask for less at once",
        code="time_budget_exceeded",
    )


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


# JSON columns are read on every listed row: orjson is several times faster than json.
JSON_CODEC: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}


def normalise_url(url: str) -> str:
    """Route plain ``postgresql://`` URLs to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create_db_engine(
    url: str,
    *,
    pool_size: int = 10,
    request_budget_seconds: float | None = None,
    sqlite_cache_mib: int = DEFAULT_SQLITE_CACHE_MIB,
    sqlite_page_size: int = DEFAULT_SQLITE_PAGE_SIZE,
    per_thread: bool = False,
) -> Engine:
    """An engine for ``url``. ``request_budget_seconds``: PostgreSQL sessions start with
    that statement timeout, so a request's transaction needs no statement to set it.
    ``sqlite_cache_mib``: the most page cache each SQLite connection may keep.
    ``sqlite_page_size``: the page size of a SQLite database this engine creates.
    ``per_thread`` (SQLite): one connection per thread, never waited for: the event loop's
    own (``Database.loop_engine``)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        pool_args: dict[str, Any] = (
            # Read units in autocommit leave no transaction to roll back on return.
            {"poolclass": SingletonThreadPool, "pool_size": pool_size, "pool_reset_on_return": None}
            if per_thread
            else {
                "pool_size": pool_size,
                "max_overflow": pool_size,
                "pool_use_lifo": True,  # the busiest connections stay warm
            }
        )
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **pool_args,
            **JSON_CODEC,
        )
        _configure_sqlite(engine, cache_mib=sqlite_cache_mib, page_size=sqlite_page_size)
        _configure_deadlines(engine)
        return engine
    connect_args: dict[str, Any] = {}
    default_ms = 0
    if request_budget_seconds is not None and "options=" not in url:
        default_ms = int(request_budget_seconds * 1000)
        connect_args["options"] = f"-c statement_timeout={default_ms}"
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_use_lifo=True,  # the busiest connections stay warm
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args=connect_args,
        **JSON_CODEC,
    )
    _configure_deadlines(engine, session_timeout_ms=default_ms)
    return engine


def _configure_sqlite(engine: Engine, *, cache_mib: int, page_size: int) -> None:
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
        # SQLite's own default, 2 MiB, unless configured: a bigger cache made a
        # million-object delete 3% faster, and the server 60 MB bigger (docs/benchmarks.md).
        cursor.execute(f"PRAGMA cache_size={-cache_mib * 1024}")
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
    _bound_sqlite_transaction(pooled)
    if mode != AUTOCOMMIT:
        run_on_driver(pooled, dialect, f"BEGIN {mode}")


def _bound_sqlite_transaction(pooled: Any) -> None:
    # Set per transaction, since pooled connections serve requests and the worker in turn:
    # under a deadline, long statements are interrupted and lock waits end at it.
    dbapi_connection = pooled.dbapi_connection
    deadline = _deadline.get()
    if deadline is None:
        busy_ms = SQLITE_BUSY_TIMEOUT_MS
        dbapi_connection.set_progress_handler(None, 0)
    else:
        busy_ms = min(SQLITE_BUSY_TIMEOUT_MS, deadline.remaining_ms())
        dbapi_connection.set_progress_handler(deadline.passed, SQLITE_PROGRESS_STEPS)
    if pooled.info.get("busy_ms", SQLITE_BUSY_TIMEOUT_MS) != busy_ms:
        dbapi_connection.execute(f"PRAGMA busy_timeout={busy_ms}")
        pooled.info["busy_ms"] = busy_ms


def _configure_deadlines(engine: Engine, *, session_timeout_ms: int = 0) -> None:
    is_postgres = engine.dialect.name == "postgresql"

    if is_postgres:

        @event.listens_for(engine, "connect")
        def _on_connect(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
            record.info[SESSION_DEFAULT_KEY] = session_timeout_ms

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            pooled = connection.connection
            if pooled.info.pop(UNIT_BEGUN, False):
                return  # a unit of work began it on the driver already
            begin_postgres(pooled, connection.dialect)

    @event.listens_for(engine, "before_cursor_execute")
    def _before_execute(connection: Connection, cursor: Any, *_: Any) -> None:
        apply_deadline(connection.connection, connection.dialect, cursor)

    @event.listens_for(engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        deadline = _deadline.get()
        if deadline is not None and _is_budget_error(
            context.original_exception, is_postgres, deadline
        ):
            raise budget_exceeded(deadline) from context.original_exception


def begin_postgres(pooled: PoolProxiedConnection, dialect: Dialect) -> None:
    """The statement timeout a unit starts with. The session default (the whole budget)
    fits a request that has just begun, the hot path, so that costs no statement; work
    without a deadline lifts it."""
    session_default = int(pooled.info.get(SESSION_DEFAULT_KEY, 0))
    deadline = _deadline.get()
    if deadline is None:
        if session_default:
            _set_statement_timeout(pooled, dialect, None, 0)
        return
    remaining = deadline.remaining_ms()
    if _tighter(session_default, remaining, deadline):
        _set_statement_timeout(pooled, dialect, None, remaining)
    else:
        pooled.info[TIMEOUT_KEY] = session_default


def apply_deadline(pooled: PoolProxiedConnection, dialect: Dialect, cursor: Any) -> None:
    """Before a statement: refuse it past the deadline, and on PostgreSQL make sure the
    statement timeout in force ends it by the deadline."""
    deadline = _deadline.get()
    if deadline is None:
        return
    if deadline.passed():
        raise budget_exceeded(deadline)
    if dialect.name == "postgresql":
        # A statement timeout bounds each statement, not the transaction: near the
        # end, shorten it so that no statement outlives the deadline by much.
        remaining = deadline.remaining_ms()
        if _tighter(pooled.info.get(TIMEOUT_KEY, 0), remaining, deadline):
            _set_statement_timeout(pooled, dialect, cursor, remaining)


def _set_statement_timeout(
    pooled: PoolProxiedConnection, dialect: Dialect, cursor: Any, ms: int
) -> None:
    """PostgreSQL's statement timeout for the rest of the unit. In a transaction, SET LOCAL
    ends with it. A read unit runs in autocommit (no BEGIN and COMMIT round trips), where
    only a session-wide SET works: the unit undoes it when it ends (``reset_session``)."""
    if pooled.dbapi_connection.autocommit:  # type: ignore[union-attr]
        statement = f"SET statement_timeout = {ms}"
        pooled.info[SESSION_TIMEOUT_SET] = True
    else:
        statement = f"SET LOCAL statement_timeout = {ms}"
    if cursor is None:
        run_on_driver(pooled, dialect, statement, deadline=False)
    else:
        cursor.execute(statement)
    pooled.info[TIMEOUT_KEY] = ms


def reset_session(pooled: PoolProxiedConnection, dialect: Dialect) -> None:
    """Undo what a unit set for the whole database session, before the connection goes
    back to the pool; a connection that cannot be reset is discarded."""
    if not pooled.is_valid or not pooled.info.pop(SESSION_TIMEOUT_SET, False):
        return
    try:
        run_on_driver(pooled, dialect, "RESET statement_timeout", deadline=False)
    except Exception:
        log.warning("could not reset a connection's statement timeout; discarding it")
        pooled.invalidate()


def translate_driver_error(
    pooled: PoolProxiedConnection,
    dialect: Dialect,
    error: Exception,
    statement: str,
    params: Any,
    *,
    invalidate: Callable[[BaseException], None] | None = None,
) -> Exception:
    """A driver error as a Core execution would say it: the time budget, or SQLAlchemy's
    exception (a lost connection invalidated, so a retry gets a fresh one)."""
    deadline = _deadline.get()
    if deadline is not None and _is_budget_error(error, dialect.name == "postgresql", deadline):
        return budget_exceeded(deadline)
    invalidated = False
    if isinstance(error, dialect.loaded_dbapi.Error) and dialect.is_disconnect(
        error, pooled.dbapi_connection, None
    ):
        (invalidate or pooled.invalidate)(error)
        invalidated = True
    return wrap_driver_error(error, statement, params, dialect, invalidated=invalidated)


def run_on_driver(
    pooled: PoolProxiedConnection, dialect: Dialect, statement: str, *, deadline: bool = True
) -> None:
    """Run a statement without parameters or rows (BEGIN, SET) on the DB-API connection."""
    cursor = pooled.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if deadline:
            apply_deadline(pooled, dialect, cursor)
        cursor.execute(statement)
    except dialect.loaded_dbapi.Error as error:
        raise translate_driver_error(pooled, dialect, error, statement, ()) from error
    finally:
        cursor.close()


def _tighter(in_force_ms: int, remaining_ms: int, deadline: Deadline) -> bool:
    """Whether the timeout in force lets a statement run past the deadline by more than a
    tenth of the budget (or is none at all)."""
    slack = deadline.budget_seconds * 100
    return not in_force_ms or not remaining_ms <= in_force_ms <= remaining_ms + slack


def _is_budget_error(error: BaseException, is_postgres: bool, deadline: Deadline) -> bool:
    if is_postgres:
        return getattr(error, "sqlstate", None) == PG_QUERY_CANCELED
    message = str(error)
    if message == "interrupted":  # the progress handler stopped the statement
        return True
    # The busy timeout, cut to the rest of the budget, ran out while another writer held
    # the database. (SQLite also says "locked" at once when a read transaction cannot
    # become a write one; that is not the budget, and stays what it is.)
    return message.startswith("database is locked") and (
        time.monotonic() >= deadline.at - SQLITE_BUSY_SLACK
    )


class Database:
    """The engine pair of one database: ``reader`` for reads, ``writer`` for writes."""

    def __init__(
        self,
        engine: Engine,
        *,
        checkpoint_interval: float | None = CHECKPOINT_INTERVAL_SECONDS,
        loop_engine: Engine | None = None,
    ) -> None:
        """``checkpoint_interval``: SQLite, how often a background thread folds the WAL
        back into the database (``None``: never; ``checkpoint()`` still does).
        ``loop_engine`` (SQLite): one connection per thread, for short reads run in the
        event loop (``unit_of_work(in_loop=True)``); without it, none run there."""
        self.engine = engine
        self.loop_engine = loop_engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.writer = engine.execution_options(sqlite_begin="IMMEDIATE")
        # Read units run in autocommit: each statement is its own transaction with its own
        # snapshot, as every statement of a READ COMMITTED transaction on PostgreSQL has
        # anyway. On PostgreSQL that saves the BEGIN and COMMIT round trips of every read
        # request; on SQLite two more calls into the library, each of which lets go of the
        # GIL and takes it back, which costs more than the statements under contention.
        # A read unit that writes (a session's sliding expiry) commits that at once.
        self.reader = engine.execution_options(
            **({"sqlite_begin": AUTOCOMMIT} if self.is_sqlite else {"isolation_level": AUTOCOMMIT})
        )
        self.writer_queue = WriterQueue() if self.is_sqlite else None
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if self.is_sqlite and checkpoint_interval is not None:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop,
                args=(checkpoint_interval,),
                name="groupd-wal-checkpoint",
                daemon=True,
            )
            self._checkpointer.start()

    def _checkpoint_loop(self, interval: float) -> None:
        while not self._stop_checkpoints.wait(interval):
            try:
                self.checkpoint()
            except Exception as error:  # the file may be gone (tests); try again later
                log.debug("WAL checkpoint skipped: %s", error)

    def checkpoint(self) -> bool:
        """SQLite: fold the WAL back into the database without blocking anyone (PASSIVE:
        it copies what no reader still needs and never waits for a lock). True when it
        copied every frame: the next writer then starts the WAL again from its beginning
        instead of appending to it. PostgreSQL: nothing to do."""
        if not self.is_sqlite:
            return True
        # A raw connection: it is in autocommit mode, outside any transaction, which a
        # checkpoint needs.
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")
            row = cursor.fetchone()
            cursor.close()
        finally:
            raw.close()
        assert row is not None, "PRAGMA wal_checkpoint answers one row"
        busy, frames, copied = row
        return not busy and frames == copied

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        def engine(per_thread: bool = False) -> Engine:
            return create_db_engine(
                settings.database_url,
                pool_size=settings.database_pool_size,
                request_budget_seconds=settings.request_time_budget_seconds,
                sqlite_cache_mib=settings.sqlite_cache_mib,
                sqlite_page_size=settings.sqlite_page_size,
                per_thread=per_thread,
            )

        main = engine()
        # Short reads in the event loop (decision 0070): SQLite only, whose statements run
        # in this process under a progress handler that stops them at the deadline. A
        # PostgreSQL statement is a round trip the loop would sit idle in.
        in_loop = main.dialect.name == "sqlite" and settings.inline_read_budget_seconds > 0
        return cls(main, loop_engine=engine(per_thread=True) if in_loop else None)

    @property
    def reads_in_loop(self) -> bool:
        """Whether short reads may run in the event loop (``unit_of_work(in_loop=True)``)."""
        return self.loop_engine is not None

    def unit_of_work(self, *, write: bool = True, in_loop: bool = False) -> UnitOfWork:
        """``in_loop``: a read unit on the calling thread's own connection
        (``loop_engine``), which is never waited for: for the event loop."""
        return UnitOfWork(self, write=write, in_loop=in_loop)

    def snapshot(self) -> UnitOfWork:
        """A read-only unit whose statements all see the database as of its first one
        (PostgreSQL: REPEATABLE READ; SQLite: one read transaction). For a long read that
        runs beside writes and must add up with what it read first."""
        return UnitOfWork(self, write=False, snapshot=True)

    def dispose(self) -> None:
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        self.engine.dispose()
        if self.loop_engine is not None:
            self.loop_engine.dispose()


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
        deadline = _deadline.get()
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


class UnitOfWork:
    """One transaction. Rolls back on exit unless ``commit()`` was called.

    The boundary (a request, a CLI command, a worker chunk) owns it; services receive it,
    may flush, and never commit.

    The transaction lives on one pooled DB-API connection, taken and begun on first use
    (``begin_sqlite``, ``begin_postgres``). Prepared statements run on it directly
    (``raw_cursor``): the hot paths (the token check, a get, a create) pay for nothing
    else. SQLAlchemy's ``connection`` is wrapped around it, and the ORM ``session``
    joined to that, only when a service asks for them (see docs/benchmarks.md, "Where
    groupd's time goes"). Read units run in autocommit (``Database.reader``).
    """

    def __init__(
        self, db: Database, *, write: bool, snapshot: bool = False, in_loop: bool = False
    ) -> None:
        self.db = db
        self.write = write
        self.snapshot = snapshot and not write
        self._engine = db.engine
        if in_loop:
            assert db.loop_engine is not None and not write, "only reads run in the loop"
            self._engine = db.loop_engine
        self.is_sqlite = db.is_sqlite
        self.dialect = db.engine.dialect
        self._committed = False
        self._queued = False
        self._pooled: PoolProxiedConnection | None = None
        self._connection: Connection | None = None
        self._session: Session | None = None

    def _begun(self) -> PoolProxiedConnection:
        """The unit's pooled DB-API connection, its transaction begun."""
        if self._pooled is None:
            pooled = self._engine.pool.connect()
            try:
                if self.is_sqlite:
                    mode = "DEFERRED" if self.snapshot else AUTOCOMMIT
                    begin_sqlite(pooled, self.dialect, "IMMEDIATE" if self.write else mode)
                else:
                    if not self.write and not self.snapshot:
                        pooled.dbapi_connection.autocommit = True  # type: ignore[union-attr]
                    begin_postgres(pooled, self.dialect)
                    if self.snapshot:
                        run_on_driver(
                            pooled,
                            self.dialect,
                            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
                        )
            except BaseException:
                self._give_back(pooled)
                raise
            self._pooled = pooled
        return self._pooled

    @property
    def connection(self) -> Connection:
        """SQLAlchemy's connection on the unit's transaction (made on first use)."""
        if self._connection is None:
            pooled = self._begun()
            engine: Engine = self.db.writer
            if not self.write:
                # The reader's options would put a snapshot's connection in autocommit.
                engine = self.db.engine if self.snapshot else self.db.reader
            pooled.info[UNIT_BEGUN] = True  # the begin listeners leave it as it is
            connection = Connection(engine, connection=pooled)
            try:
                connection.begin()
            finally:
                pooled.info.pop(UNIT_BEGUN, None)
            self._connection = connection
        return self._connection

    @property
    def session(self) -> Session:
        """An ORM session inside the unit's transaction (made on first use)."""
        if self._session is None:
            # "rollback_only": the session's commit only flushes; the transaction is the
            # unit's to commit. Its rollback (a failed flush) rolls the unit back.
            self._session = Session(
                bind=self.connection,
                join_transaction_mode="rollback_only",
                expire_on_commit=False,
            )
        return self._session

    def __enter__(self) -> UnitOfWork:
        self._queued = self.write and self.db.writer_queue is not None
        if self._queued:
            assert self.db.writer_queue is not None
            self.db.writer_queue.acquire(SQLITE_BUSY_TIMEOUT_MS / 1000)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._session is not None:
                if not self._committed:
                    self._session.rollback()
                self._session.close()
        finally:
            try:
                if self._connection is not None:
                    if not self._connection.invalidated:
                        reset_session(self._connection.connection, self.dialect)
                    # Back to the pool, rolled back if the unit did not commit.
                    self._connection.close()
                elif self._pooled is not None:
                    self._give_back(self._pooled)
            finally:
                if self._queued:
                    assert self.db.writer_queue is not None
                    self.db.writer_queue.release()

    def _give_back(self, pooled: PoolProxiedConnection) -> None:
        """Return a connection the unit used only through the driver to the pool, as it
        found it (the pool rolls back what was not committed)."""
        try:
            if pooled.is_valid:
                reset_session(pooled, self.dialect)
            if pooled.is_valid and not self.is_sqlite and not self.write:
                pooled.dbapi_connection.autocommit = False  # type: ignore[union-attr]
        finally:
            pooled.close()

    def raw_cursor(self) -> Any:
        """A DB-API cursor in the unit's transaction, for ``Prepared`` statements; the
        deadline applies to it as to any other statement."""
        pooled = self._begun()
        cursor = pooled.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            apply_deadline(pooled, self.dialect, cursor)
        except BaseException:
            cursor.close()
            raise
        return cursor

    def writers_waiting(self) -> bool:
        """Whether other writers of this process wait for this unit's lock (SQLite: one
        writer at a time). Long work in small steps ends its transaction early then."""
        queue = self.db.writer_queue
        return self._queued and queue is not None and queue.others_waiting()

    def plan_by_index(self) -> None:
        """Have PostgreSQL drive the rest of this transaction's joins by index.

        For bulk work in bounded chunks (phase 2 of a delete): each statement joins a
        chunk's few thousand keys to a big table, which must cost what the chunk holds.
        PostgreSQL's default costs (``random_page_cost = 4``, as for uncached disks)
        make it answer ``activations.object_id IN (the chunk's objects)`` with a hash
        join over a scan of the whole table instead: 237 ms a chunk against 34 ms with
        nested index probes, for 20,000 objects among 1,000,000 (docs/benchmarks.md).
        ``SET LOCAL`` ends with the transaction. SQLite always probes by index here.
        """
        if self.is_sqlite:
            return
        cursor = self.raw_cursor()
        try:
            cursor.execute("SET LOCAL enable_hashjoin = off")
            cursor.execute("SET LOCAL enable_mergejoin = off")
        finally:
            cursor.close()

    def translate_error(self, error: Exception, statement: str, params: Any) -> Exception:
        """What a driver error on ``raw_cursor`` means (see ``translate_driver_error``).
        A lost connection is invalidated through SQLAlchemy's connection when the unit
        made one, so that it knows."""
        pooled = self._begun()
        invalidate = self._connection.invalidate if self._connection is not None else None
        return translate_driver_error(
            pooled, self.dialect, error, statement, params, invalidate=invalidate
        )

    def commit(self) -> None:
        if self._session is not None:
            self._session.commit()
        if self._connection is not None:
            self._connection.commit()
        elif self._pooled is not None:
            self._pooled.dbapi_connection.commit()  # type: ignore[union-attr]
        self._committed = True


@contextmanager
def transaction(db: Database) -> Iterator[UnitOfWork]:
    """A write unit of work that commits when the block ends without an exception."""
    with db.unit_of_work() as uow:
        yield uow
        uow.commit()
