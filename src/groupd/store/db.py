"""Engines and the unit of work.

PostgreSQL runs through psycopg 3 with a connection pool; SQLite's own machinery (its
pragmas, the writer queue, the WAL folds) is ``groupd.store.sqlite``'s, and the deadline
that bounds a request's statements ``groupd.store.driver``'s.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection, SingletonThreadPool

from groupd.errors import Unavailable
from groupd.settings import Settings
from groupd.store.driver import (
    AUTOCOMMIT,
    UNIT_BEGUN,
    apply_deadline,
    begin_postgres,
    configure_deadlines,
    request_deadline,
    reset_session,
    run_on_driver,
    translate_driver_error,
)
from groupd.store.queue import (
    DIRECTORY_SCHEMA,
    QUEUE_SCHEMA,
    ensure_queue_file,
    queue_file,
    read_only_uri,
    sqlite_file,
)
from groupd.store.sqlite import (
    CHECKPOINT_INTERVAL_SECONDS,
    DEFAULT_SQLITE_CACHE_MIB,
    DEFAULT_SQLITE_PAGE_SIZE,
    SQLITE_BUSY_TIMEOUT_MS,
    Checkpointer,
    WalFolds,
    WriterQueue,
    begin_sqlite,
    checkpoint,
    configure_sqlite,
)

T = TypeVar("T")
__all__ = ["Database", "UnitOfWork", "create_db_engine", "request_deadline", "transaction"]
log = logging.getLogger("groupd.db")


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
    queue_of: Path | None = None,
) -> Engine:
    """An engine for ``url``. ``request_budget_seconds``: PostgreSQL sessions start with
    that statement timeout, so a request's transaction needs no statement to set it.
    ``sqlite_cache_mib``: the most page cache each SQLite connection may keep.
    ``sqlite_page_size``: the page size of a SQLite database this engine creates.
    ``per_thread`` (SQLite): one connection per thread, never waited for: the event loop's
    own (``Database.loop_engine``). ``queue_of`` (SQLite): this engine opens the webhook
    queue of that main database file (``Database.queue``); any other engine of a SQLite
    file attaches its queue read-only (``groupd.store.queue``)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        attach: tuple[str, str] | None = None
        if queue_of is not None:
            attach = (DIRECTORY_SCHEMA, read_only_uri(queue_of))
        elif (path := sqlite_file(url)) is not None:
            ensure_queue_file(queue_file(path), page_size=sqlite_page_size)
            attach = (QUEUE_SCHEMA, read_only_uri(queue_file(path)))
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
        configure_sqlite(
            engine, cache_mib=sqlite_cache_mib, page_size=sqlite_page_size, attach=attach
        )
        configure_deadlines(engine)
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
    configure_deadlines(engine, session_timeout_ms=default_ms)
    return engine


class Database:
    """The engine pair of one database: ``reader`` for reads, ``writer`` for writes."""

    def __init__(
        self,
        engine: Engine,
        *,
        checkpoint_interval: float | None = CHECKPOINT_INTERVAL_SECONDS,
        loop_engine: Engine | None = None,
        writer_wait_seconds: float = SQLITE_BUSY_TIMEOUT_MS / 1000,
    ) -> None:
        """``checkpoint_interval``: SQLite, how often a background thread folds the WAL
        back into the database (``None``: never; ``checkpoint()`` still does).
        ``loop_engine`` (SQLite): one connection per thread, for short reads run in the
        event loop (``unit_of_work(in_loop=True)``); without it, none run there.
        ``writer_wait_seconds``: SQLite, how long a writer waits for its turn in the
        writer queue before the database is busy (``Unavailable``)."""
        self.engine = engine
        self.loop_engine = loop_engine
        self.writer_wait_seconds = writer_wait_seconds
        # Called with the SQL of every statement (``watch_statements``).
        self.statement_watchers: list[Callable[[str], None]] = []
        # The loop's connection stays checked out between its units: the pool's checkout
        # and checkin cost more than a short read (decision 0070).
        self._held = threading.local()
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
        self._checkpointer: Checkpointer | None = None
        if self.is_sqlite and checkpoint_interval is not None:
            self._checkpointer = Checkpointer(self.checkpoint, interval=checkpoint_interval)
        self._checkpoint_interval = checkpoint_interval
        self._queue: Database | None = None
        self._queue_lock = threading.Lock()

    @property
    def queue(self) -> Database:
        """The database of the webhook delivery queue (``QUEUE_TABLES``): this one, but
        for a SQLite file, whose queue is a file of its own, so that the delivery
        threads' writes never hold the lock this one's writers wait for (decision 0078).
        Made on first use."""
        if self._queue is not None:
            return self._queue
        path = sqlite_file(self.engine.url)
        if path is None:
            self._queue = self
            return self
        with self._queue_lock:
            if self._queue is None:
                pool = self.engine.pool
                engine = create_db_engine(
                    f"sqlite:///{queue_file(path)}",
                    pool_size=pool.size() if hasattr(pool, "size") else 5,
                    queue_of=path,
                )
                self._queue = Database(
                    engine,
                    checkpoint_interval=self._checkpoint_interval,
                    writer_wait_seconds=self.writer_wait_seconds,
                )
        return self._queue

    def checkpoint(self) -> bool:
        """SQLite: fold the WAL back into the database without blocking anyone; True when
        it copied every frame (``groupd.store.sqlite.checkpoint``). PostgreSQL: nothing
        to do."""
        return checkpoint(self.engine) if self.is_sqlite else True

    @contextmanager
    def watch_statements(self) -> Iterator[list[str]]:
        """Every statement sent to the database in this block, through SQLAlchemy or as a
        ``Prepared`` one on the driver's cursor, as its SQL (for tests and diagnosis)."""
        seen: list[str] = []

        def on_execute(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            seen.append(statement)

        event.listen(self.engine, "before_cursor_execute", on_execute)
        self.statement_watchers.append(seen.append)
        try:
            yield seen
        finally:
            self.statement_watchers.remove(seen.append)
            event.remove(self.engine, "before_cursor_execute", on_execute)

    def wal_folds(self) -> WalFolds:
        """The folds of the WAL between a delete's chunks (nothing to fold on PostgreSQL)."""
        return WalFolds(self.checkpoint, sqlite=self.is_sqlite)

    @classmethod
    def from_settings(cls, settings: Settings, *, serves_requests: bool = True) -> Database:
        """``serves_requests``: PostgreSQL sessions start with the request's time budget
        as their statement timeout, so a request's unit needs no statement to set it. A
        process that serves none (webhook delivery) would pay a ``SET`` to lift it in
        every unit instead: its sessions start without one."""

        def engine(per_thread: bool = False) -> Engine:
            return create_db_engine(
                settings.database_url,
                pool_size=settings.database_pool_size,
                request_budget_seconds=(
                    settings.request_time_budget_seconds if serves_requests else None
                ),
                sqlite_cache_mib=settings.sqlite_cache_mib,
                sqlite_page_size=settings.sqlite_page_size,
                per_thread=per_thread,
            )

        main = engine()
        # Short reads in the event loop (decision 0070): SQLite only, whose statements run
        # in this process under a progress handler that stops them at the deadline. A
        # PostgreSQL statement is a round trip the loop would sit idle in.
        in_loop = main.dialect.name == "sqlite" and settings.inline_read_budget_seconds > 0
        return cls(
            main,
            loop_engine=engine(per_thread=True) if in_loop else None,
            writer_wait_seconds=settings.sqlite_writer_wait_seconds,
        )

    @property
    def reads_in_loop(self) -> bool:
        """Whether short reads may run in the event loop (``unit_of_work(in_loop=True)``)."""
        return self.loop_engine is not None

    def held_connection(self) -> PoolProxiedConnection:
        """This thread's own connection of ``loop_engine``, kept checked out."""
        held: PoolProxiedConnection | None = getattr(self._held, "pooled", None)
        if held is None or not held.is_valid:
            assert self.loop_engine is not None, "no reads run in the loop here"
            held = self._held.pooled = self.loop_engine.pool.connect()
        return held

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
        if self._queue is not None and self._queue is not self:
            self._queue.dispose()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        self.engine.dispose()
        if self.loop_engine is not None:
            self.loop_engine.dispose()


class UnitOfWork:
    """One transaction. Rolls back on exit unless ``commit()`` was called.

    The boundary (a request, a CLI command, a worker chunk) owns it; services receive it,
    may flush, and never commit.

    The transaction lives on one pooled DB-API connection, taken and begun on first use
    (``begin_sqlite``, ``begin_postgres``). Prepared statements run on it directly
    (``raw_cursor``): the hot paths (the token check, a get, a create) pay for nothing
    else. SQLAlchemy's ``connection`` is wrapped around it, and the ORM ``session``
    joined to that, only when a service asks for them (decision 0003). Read units run
    in autocommit (``Database.reader``, decision 0006).
    """

    def __init__(
        self, db: Database, *, write: bool, snapshot: bool = False, in_loop: bool = False
    ) -> None:
        self.db = db
        self.write = write
        self.snapshot = snapshot and not write
        self.in_loop = in_loop
        assert not in_loop or (db.loop_engine is not None and not write), "reads in the loop"
        self.is_sqlite = db.is_sqlite
        self.dialect = db.engine.dialect
        self._committed = False
        self._queued = False
        self._pooled: PoolProxiedConnection | None = None
        self._connection: Connection | None = None
        self._session: Session | None = None
        self._after_commit: list[Callable[[], None]] = []

    def after_commit(self, work: Callable[[], None]) -> None:
        """Run ``work`` once this unit has committed (never if it rolls back): a change
        of another database that must follow this one's (the webhook queue's,
        ``Database.queue``)."""
        self._after_commit.append(work)

    def _begun(self) -> PoolProxiedConnection:
        """The unit's pooled DB-API connection, its transaction begun."""
        if self._pooled is None:
            pooled = self.db.held_connection() if self.in_loop else self.db.engine.pool.connect()
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
            self.db.writer_queue.acquire(self.db.writer_wait_seconds)
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
        found it (the pool rolls back what was not committed). The loop's connection
        stays with its thread (an autocommit read leaves nothing to undo)."""
        if self.in_loop and pooled.is_valid:
            return
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
        """Have PostgreSQL drive the rest of this transaction's joins by index (decision
        0011): for bulk work in bounded chunks, where each statement joins a chunk's keys
        to a big table and must cost what the chunk holds. ``SET LOCAL`` ends with the
        transaction. SQLite always probes by index here.
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

    def run_apart(self, work: Callable[[UnitOfWork], T]) -> T:
        """Run ``work`` in a short transaction of its own, committed whatever this unit
        does next (a failed login's count, kept although the request is refused).

        On SQLite a write unit holds the only write lock from its start, so a second
        writer of this thread would wait for it forever: there ``work`` runs in this unit,
        which commits at once. Callers use it before they change anything else.
        """
        if self.write and self.is_sqlite:
            result = work(self)
            self.commit()
            return result
        with self.db.unit_of_work() as own:
            result = work(own)
            own.commit()
        return result

    def commit(self) -> None:
        if self._session is not None:
            self._session.commit()
        if self._connection is not None:
            self._connection.commit()
        elif self._pooled is not None:
            self._pooled.dbapi_connection.commit()  # type: ignore[union-attr]
        self._committed = True
        work, self._after_commit = self._after_commit, []
        for step in work:
            # Its own unit, retried as any unit is; never the committed one again (the
            # boundary's retry would run the change a second time).
            try:
                retry_transient(step)
            except Exception as error:
                log.exception("a step after a commit failed")
                raise Unavailable(
                    "the change is made, but the webhook queue could not follow it; try again",
                    code="after_commit_failed",
                ) from error


TRANSIENT_SQLSTATES = ("40P01", "40001")  # deadlock detected, serialization failure
# A storm of writers on one subtree can make PostgreSQL pick the same unit as a deadlock's
# victim three times running (the likely cause of a 500 in a CI run), so a unit gets six
# tries, waiting a little longer, at random, before each (the deadline bounds them all).
# Decision 0081.
TRANSIENT_ATTEMPTS = 6
TRANSIENT_PAUSE_SECONDS = 0.02  # the longest first pause; it doubles with each try


def retry_transient(work: Callable[[], T]) -> T:
    """Run ``work`` (a whole unit of work) again when PostgreSQL chose it as the victim of
    a deadlock or a serialization failure, or lost its connection: it rolled back whole,
    so a retry is safe. When the last try fails too, ``Unavailable`` says so (a 503 to
    try again later, not an internal error): nothing was changed."""
    for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
        try:
            return work()
        except OperationalError as error:
            sqlstate = getattr(error.orig, "sqlstate", None)
            # A dropped connection (a database restart) is invalidated by the pool; the
            # retry gets a fresh one. This is why the pool does not ping on checkout.
            if error.connection_invalidated:
                why = "the connection to the database was lost on every try"
                code = "database_unavailable"
            elif sqlstate in TRANSIENT_SQLSTATES:
                why = (
                    f"the database undid this request {attempt} times to settle a "
                    "conflict with concurrent changes"
                )
                code = "contention"
            else:
                raise
            if attempt == TRANSIENT_ATTEMPTS:
                raise Unavailable(f"{why}; nothing was changed; try again", code=code) from error
            time.sleep(random.uniform(0, TRANSIENT_PAUSE_SECONDS * 2 ** (attempt - 1)))
    raise AssertionError("unreachable")


@contextmanager
def transaction(db: Database) -> Iterator[UnitOfWork]:
    """A write unit of work that commits when the block ends without an exception."""
    with db.unit_of_work() as uow:
        yield uow
        uow.commit()
