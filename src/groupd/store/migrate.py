"""Alembic, driven from code: ``groupd db upgrade`` and the server's start-up."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Column, Connection, Engine, Index

from groupd.store.models import QUEUE_TABLES, created_on
from groupd.store.queue import QUEUE_SCHEMA, queue_file, sqlite_file

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def include_object_for(dialect: str) -> Callable[..., bool]:
    """Alembic's comparison filter for a database of ``dialect``: a constraint or index the
    models give other databases only (``groupd.store.models.only_on``) is not missing, nor
    is an index on an expression on SQLite, which SQLAlchemy cannot read back from it
    (tests/test_migrations.py looks for those by name)."""

    def include_object(item: Any, name: str | None, kind: str, reflected: bool, other: Any) -> bool:
        if dialect == "sqlite" and _queue_table_name(item, kind) in QUEUE_TABLES:
            return False  # in the queue's own file, made from the models (store/queue.py)
        if reflected:
            return True
        if dialect == "sqlite" and kind == "index" and has_expression(item):
            return False
        return created_on(item, dialect)

    return include_object


def _queue_table_name(item: Any, kind: str) -> str | None:
    if kind == "table":
        return str(item.name)
    table = getattr(item, "table", None)
    return str(table.name) if table is not None else None


def has_expression(index: Index) -> bool:
    """Whether an index covers an expression, not only columns."""
    return any(not isinstance(part, Column) for part in index.expressions)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` on the engine's database."""
    _migrate(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to ``revision`` (each migration's ``downgrade``)."""
    _migrate(engine, lambda config: command.downgrade(config, revision))


def _migrate(engine: Engine, run: Callable[[Config], None]) -> None:
    """Run migrations in one transaction on the engine's database.

    SQLite alters a table by copying it (Alembic's batch mode). With foreign keys on,
    dropping the old copy of a table that others reference would delete through them,
    so, as SQLite's documentation prescribes for such changes, migrations run with the
    keys off (a setting that only takes effect outside a transaction) and every
    reference is checked before the commit: a migration that broke one fails and
    changes nothing.
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        path = sqlite_file(engine.url)
        if sqlite:
            _driver_execute(connection, "PRAGMA foreign_keys=OFF")
        if path is not None:
            # The queue's file writable, for a migration that moves rows to or from it;
            # this connection is then dropped, not pooled with a writable attachment.
            _driver_execute(connection, f"DETACH DATABASE {QUEUE_SCHEMA}")
            _driver_execute(
                connection, f"ATTACH DATABASE '{_quoted(queue_file(path))}' AS {QUEUE_SCHEMA}"
            )
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                run(config)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(
                            f"the migration left {len(broken)} broken reference(s),"
                            f" the first {tuple(broken[0])}; nothing was changed"
                        )
        finally:
            if path is not None:
                connection.invalidate()
            elif sqlite:
                _driver_execute(connection, "PRAGMA foreign_keys=ON")


def _quoted(path: Path) -> str:
    return str(path.resolve()).replace("'", "''")


def _driver_execute(connection: Connection, statement: str) -> None:
    # On the driver: through SQLAlchemy the statement would open a transaction first.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(statement)
    finally:
        cursor.close()
