"""Primary keys reserved before an insert, the one way each database allows.

Batch creates compute paths and references in Python and write them with one bulk
INSERT, so they need their keys first (docs/decisions/0001-sequential-keys-uuids-on-the-wire.md).
"""

from __future__ import annotations

from sqlalchemy import text

from groupd.store.db import UnitOfWork
from groupd.store.prepared import Prepared

_SEQUENCE_IDS = Prepared(
    text("SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :n)")
)
_MAX_ID: dict[str, Prepared] = {}


def allocate_ids(uow: UnitOfWork, table: str, count: int) -> list[int]:
    """Reserve ``count`` primary keys of ``table`` before inserting, so paths and
    references can be computed in one pass and written with one bulk insert.

    PostgreSQL draws them from the table's sequence. SQLite has none, but a writer holds
    the database lock from ``BEGIN IMMEDIATE``, so ``max(id)`` cannot move under us.
    """
    if count <= 0:
        return []
    if not uow.is_sqlite:
        rows = _SEQUENCE_IDS.all(uow, {"table": table, "n": count})
        return [int(row[0]) for row in rows]
    max_id = _MAX_ID.get(table)
    if max_id is None:
        max_id = _MAX_ID[table] = Prepared(text(f"SELECT coalesce(max(id), 0) FROM {table}"))
    row = max_id.one_or_none(uow, {})
    assert row is not None
    start = int(row[0])
    return list(range(start + 1, start + 1 + count))
