"""Statements on the DB-API connection, under a request's deadline.

A request's database work runs under a deadline (``request_deadline``): PostgreSQL gets
``SET LOCAL statement_timeout`` for the rest of the budget, SQLite a progress handler and a
busy timeout that stop at the deadline (``groupd.store.sqlite``), and no statement starts
after it. Work outside such a block (the delete worker, the CLI) has no deadline.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import Dialect, ExceptionContext
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from groupd.errors import Unavailable
from groupd.store.prepared import wrap_driver_error

log = logging.getLogger("groupd.db")
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


deadline_var: ContextVar[Deadline | None] = ContextVar("groupd_db_deadline", default=None)


class request_deadline:
    """Bound the database work started in this block (in this thread or task) so that it
    ends by ``at`` (a ``time.monotonic()`` value), and with ``cpu_seconds``, once it has
    held this thread that long and then used as much processor time, or waited that long
    for a lock (SQLite); past either, statements fail with ``Unavailable``
    (``time_budget_exceeded``). A class rather than a generator: every request enters
    one (decision 0075)."""

    __slots__ = ("_deadline", "_token")

    def __init__(self, at: float, budget_seconds: float, *, cpu_seconds: float = 0.0) -> None:
        if cpu_seconds:
            self._deadline = Deadline(
                at, budget_seconds, cpu_seconds, time.monotonic() + cpu_seconds
            )
        else:
            self._deadline = Deadline(at, budget_seconds)
        self._token: Token[Deadline | None] | None = None

    def __enter__(self) -> None:
        self._token = deadline_var.set(self._deadline)

    def __exit__(self, *_: object) -> None:
        if self._token is not None:
            deadline_var.reset(self._token)
            self._token = None


def budget_exceeded(deadline: Deadline) -> Unavailable:
    return Unavailable(
        f"the request did not finish within its time budget of "
        f"{deadline.budget_seconds:g} s; try again later or ask for less at once",
        code="time_budget_exceeded",
    )


def current_deadline() -> Deadline | None:
    """The deadline of the work running in this thread or task, if any."""
    return deadline_var.get()


def configure_deadlines(engine: Engine, *, session_timeout_ms: int = 0) -> None:
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
        deadline = deadline_var.get()
        if deadline is not None and _is_budget_error(
            context.original_exception, is_postgres, deadline
        ):
            raise budget_exceeded(deadline) from context.original_exception


def begin_postgres(pooled: PoolProxiedConnection, dialect: Dialect) -> None:
    """The statement timeout a unit starts with. The session default (the whole budget)
    fits a request that has just begun, the hot path, so that costs no statement; work
    without a deadline lifts it."""
    session_default = int(pooled.info.get(SESSION_DEFAULT_KEY, 0))
    deadline = deadline_var.get()
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
    deadline = deadline_var.get()
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
    deadline = deadline_var.get()
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
