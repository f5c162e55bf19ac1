"""SQLite: timestamps are kept as microseconds since 1970 instead of text

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-25 16:30:00

On SQLite only; PostgreSQL keeps ``timestamptz``.

SQLAlchemy's ``DateTime`` wrote 26 characters of text on SQLite (``2026-11-25
16:30:00.123456``). ``groupd.store.types.UTCDateTime`` now keeps an integer of
microseconds since 1970, UTC: 7 or 8 bytes, in the same order. A device and its activation
hold three timestamps, so deleting them writes fewer pages
(docs/decisions/0002-sqlite-uuids-and-times-as-bytes-and-integers.md). The columns keep
their declared ``DATETIME``: SQLite stores an integer as an integer there, so no table is
copied.

The conversion is a function registered on this connection for the migration.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

TIMESTAMP_COLUMNS = (
    ("system_flags", "updated_at"),
    ("tenants", "created_at"),
    ("accounts", "locked_until"),
    ("accounts", "created_at"),
    ("audit_events", "at"),
    ("groups", "created_at"),
    ("groups", "updated_at"),
    ("licences", "created_at"),
    ("operations", "lease_until"),
    ("operations", "first_pending_at"),
    ("operations", "collected_at"),
    ("operations", "created_at"),
    ("operations", "started_at"),
    ("operations", "finished_at"),
    ("operations", "expires_at"),
    ("credentials", "expires_at"),
    ("credentials", "last_used_at"),
    ("credentials", "revoked_at"),
    ("credentials", "created_at"),
    ("objects", "created_at"),
    ("objects", "updated_at"),
    ("activations", "orphaned_at"),
    ("activations", "created_at"),
    ("memberships", "created_at"),
)


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _text_to_microseconds(value: object) -> object:
    """SQLAlchemy's text (naive, UTC) to microseconds since 1970."""
    if not isinstance(value, str):
        return value
    return (datetime.fromisoformat(value).replace(tzinfo=UTC) - EPOCH) // MICROSECOND


def _microseconds_to_text(value: object) -> object:
    if not isinstance(value, int):
        return value
    return (EPOCH + value * MICROSECOND).strftime("%Y-%m-%d %H:%M:%S.%f")  # as SQLAlchemy wrote


def _convert(function: str, convert: object, stored_as: str) -> None:
    driver_connection = op.get_bind().connection.driver_connection
    assert driver_connection is not None, "a migration runs on an open connection"
    driver_connection.create_function(function, 1, convert, deterministic=True)
    for table, column in TIMESTAMP_COLUMNS:
        op.execute(
            f"UPDATE {table} SET {column} = {function}({column})"
            f" WHERE typeof({column}) = '{stored_as}'"
        )


def upgrade() -> None:
    if _on_sqlite():
        _convert("groupd_timestamp_microseconds", _text_to_microseconds, "text")


def downgrade() -> None:
    if _on_sqlite():
        _convert("groupd_timestamp_text", _microseconds_to_text, "integer")
