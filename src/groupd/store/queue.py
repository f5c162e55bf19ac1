"""SQLite's webhook delivery queue: a database file of its own beside the main one.

SQLite lets one writer in at a time per file. The delivery threads write a row or two
per event sent (the relay's deliveries, the leases, the outcomes); in the main file those
writes took the lock that every API write waits for. So on SQLite the queue's tables
(``QUEUE_TABLES``) live in ``<name>-webhooks<suffix>`` beside ``<name><suffix>``, and the
queue's writers lock only that file (decision 0078):

- the main database's connections attach the queue **read-only**, as ``webhook_queue``:
  the API reads deliveries joined to their events, and its ``BEGIN IMMEDIATE`` takes no
  lock on the queue (SQLite begins a read transaction on a read-only attachment);
- the queue's own connections (``Database.queue``) open the queue file as their main
  database and attach the main file read-only, as ``directory``: the relay and the
  delivery threads read events and subscriptions and lock only the queue.

SQLite finds a table named without a schema in the main database first, then in the
attached ones, so every statement reads the same on both kinds of connection, and on
PostgreSQL, where the queue's tables sit with the rest.

The queue file's schema is made from the models when the file is new, and numbered by
``PRAGMA user_version`` (``QUEUE_SCHEMA_VERSION``); the main file's is Alembic's. A
migration that moves rows between the two attaches the queue writable
(``groupd.store.migrate``).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Table
from sqlalchemy.dialects.sqlite import dialect as sqlite_dialect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.schema import CreateIndex, CreateTable

from groupd.store.models import QUEUE_TABLES, Base

QUEUE_SCHEMA = "webhook_queue"  # the queue as the main database's connections see it
DIRECTORY_SCHEMA = "directory"  # the main database as the queue's connections see it
QUEUE_SCHEMA_VERSION = 1


def sqlite_file(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for another database or one in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if name in ("", ":memory:") or name.startswith("file:"):
        return None
    return Path(name)


def queue_file(database: Path) -> Path:
    """Where the queue of the SQLite database ``database`` lives."""
    return database.with_name(f"{database.stem}-webhooks{database.suffix}")


def database_files(database: Path) -> tuple[Path, Path]:
    """The files that hold a SQLite database: its main file and its queue's (what a
    copy or a backup of it takes, each with SQLite's backup API or while it is closed)."""
    return database, queue_file(database)


def copy_database(source: Path, target: Path) -> None:
    """Copy a closed SQLite database, its queue with it."""
    for source_file, target_file in zip(
        database_files(source), database_files(target), strict=True
    ):
        if source_file.exists():
            shutil.copyfile(source_file, target_file)


def read_only_uri(path: Path) -> str:
    """A URI that opens ``path`` read-only (for ``ATTACH``)."""
    return f"file:{quote(str(path.resolve()))}?mode=ro"


def queue_tables() -> list[Table]:
    return [Base.metadata.tables[name] for name in QUEUE_TABLES]


def ensure_queue_file(path: Path, *, page_size: int) -> None:
    """Make the queue file with its schema if it is new (several processes may start at
    once: the first makes it, the others find it made)."""
    if path.exists() and _schema_version(path) == QUEUE_SCHEMA_VERSION:
        return
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        connection.execute(f"PRAGMA page_size={page_size}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("BEGIN IMMEDIATE")
        (version,) = connection.execute("PRAGMA user_version").fetchone()
        if version == 0:
            for statement in _schema_statements():
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version={QUEUE_SCHEMA_VERSION}")
        elif version != QUEUE_SCHEMA_VERSION:
            raise RuntimeError(
                f"{path}: the webhook queue's schema is version {version}; this groupd"
                f" knows version {QUEUE_SCHEMA_VERSION}"
            )
        connection.execute("COMMIT")
    finally:
        connection.close()


def _schema_statements() -> list[str]:
    dialect = sqlite_dialect()
    statements = []
    for table in queue_tables():
        statements.append(str(CreateTable(table).compile(dialect=dialect)))
        statements.extend(
            str(CreateIndex(index).compile(dialect=dialect))
            for index in sorted(table.indexes, key=lambda index: str(index.name))
        )
    return statements


def _schema_version(path: Path) -> int:
    connection = sqlite3.connect(read_only_uri(path), uri=True)
    try:
        (version,) = connection.execute("PRAGMA user_version").fetchone()
    finally:
        connection.close()
    return int(version)
