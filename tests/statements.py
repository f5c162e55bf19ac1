"""Every statement the database driver runs, seen at the driver.

SQLAlchemy's execution events miss the statements groupd runs straight on the DB-API
cursor (``store/prepared.py``, BEGIN, SET). A test that bounds how many statements a
request runs records them here instead: SQLite's trace callback and a psycopg cursor
class see each one, whatever issued it.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from groupd.store.db import Database


@contextmanager
def driver_statements(
    db: Database, *, record_thread: Callable[[threading.Thread], bool] = lambda _: True
) -> Iterator[list[str]]:
    """The statements run on ``db``'s connections checked out inside the block, by
    threads that ``record_thread`` accepts, in order."""
    seen: list[str] = []

    def record(statement: str) -> None:
        # SQLite also reports the statements its triggers run, as "-- TRIGGER ...".
        if record_thread(threading.current_thread()) and not statement.startswith("--"):
            seen.append(statement)

    def watch(dbapi_connection: Any, *_: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(record)
        else:
            dbapi_connection.cursor_factory = _recording_cursor(record)

    def unwatch(dbapi_connection: Any, *_: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.set_trace_callback(None)
        else:
            import psycopg

            dbapi_connection.cursor_factory = psycopg.Cursor

    event.listen(db.engine, "checkout", watch)
    event.listen(db.engine, "checkin", unwatch)
    try:
        yield seen
    finally:
        event.remove(db.engine, "checkout", watch)
        event.remove(db.engine, "checkin", unwatch)


def _recording_cursor(record: Callable[[str], None]) -> Any:
    import psycopg

    class RecordingCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            record(str(query))
            return super().execute(query, *args, **kwargs)

        def executemany(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            record(str(query))
            return super().executemany(query, *args, **kwargs)

    return RecordingCursor
