"""SQLite: uuids are stored as their 16 bytes instead of 32 hex characters

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 16:00:00

On SQLite only; PostgreSQL has a uuid type of its own and does not change.

Every uuid column held 32 hex characters (SQLAlchemy's ``Uuid`` on SQLite). It now holds
the uuid's 16 bytes as a BLOB (``groupd.store.types.UuidKey``): each uuid in a row and in
its unique index takes half the room, and deleting rows writes that many fewer pages
(docs/decisions/0002-sqlite-uuids-and-times-as-bytes-and-integers.md).
The columns keep their declared ``CHAR(32)``: SQLite stores a BLOB as a BLOB whatever a
column declares, so no table is copied. Blobs sort as their hex spelling does.

SQLite 3.40 has no ``unhex()``: the conversion is a function registered on this
connection for the migration.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UUID_COLUMNS = (
    ("tenants", "uuid"),
    ("accounts", "uuid"),
    ("groups", "uuid"),
    ("objects", "uuid"),
    ("licences", "uuid"),
    ("activations", "uuid"),
    ("activations", "object_uuid"),
    ("operations", "uuid"),
    ("operations", "target_uuid"),
    ("audit_events", "target_uuid"),
)


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _hex_to_bytes(value: object) -> object:
    return bytes.fromhex(value) if isinstance(value, str) else value


def upgrade() -> None:
    if not _on_sqlite():
        return
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None, "a migration runs on an open connection"
    driver_connection.create_function("groupd_uuid_bytes", 1, _hex_to_bytes, deterministic=True)
    for table, column in UUID_COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = groupd_uuid_bytes({column})"
            f" WHERE typeof({column}) = 'text'"
        )


def downgrade() -> None:
    if not _on_sqlite():
        return
    for table, column in UUID_COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = lower(hex({column})) WHERE typeof({column}) = 'blob'"
        )
