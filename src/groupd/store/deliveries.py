"""The webhook queue's bulk statements (decision 0079).

A relay gives out a batch of events in one INSERT that drops the deliveries the queue
has already (a relay that stopped before marking its events gives them again); a
batch's successes are one UPDATE per answer status. Row by row, the same work was a
statement per delivery for PostgreSQL to run, CPU taken from the backends that serve
the API. A multi-row VALUES list costs more to write out in Python than it saves
(SQLAlchemy compiles it anew for every batch): PostgreSQL takes the rows as arrays to
``unnest``, SQLite as one prepared statement stepped through per row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, func, text
from sqlalchemy.dialects import postgresql, sqlite

from groupd.store.db import UnitOfWork
from groupd.store.models import WebhookSchedule, table_of
from groupd.store.prepared import Prepared
from groupd.store.types import UTCDateTime, UuidKey

_schedules = table_of(WebhookSchedule)


def _dialect(uow: UnitOfWork) -> Any:
    return sqlite if uow.is_sqlite else postgresql


_GIVEN = ("id", "uuid", "tenant_id", "subscription_id", "event_id", "next_attempt_at", "created_at")
_INSERT = (
    "INSERT INTO webhook_deliveries (id, uuid, tenant_id, subscription_id, event_id, state,"
    " attempts, next_attempt_at, created_at)"
)
_SKIP_GIVEN = " ON CONFLICT (subscription_id, event_id) DO NOTHING"
# PostgreSQL: the batch as arrays, one statement whatever its size (its text never
# changes, so it is parsed once per connection).
_GIVE_POSTGRES = text(
    f"{_INSERT} SELECT g.id, g.uuid, g.tenant_id, g.subscription_id, g.event_id, 'pending',"
    " 0, g.next_attempt_at, g.created_at FROM unnest(CAST(:id AS bigint[]),"
    " CAST(:uuid AS uuid[]), CAST(:tenant_id AS bigint[]), CAST(:subscription_id AS bigint[]),"
    " CAST(:event_id AS bigint[]), CAST(:next_attempt_at AS timestamptz[]),"
    " CAST(:created_at AS timestamptz[]))"
    " AS g(id, uuid, tenant_id, subscription_id, event_id, next_attempt_at, created_at)"
    f"{_SKIP_GIVEN}"
)
# SQLite: one prepared statement the library steps through for every row, in one call
# of the driver (it has no arrays to unnest; each row costs it no parsing).
_GIVE_SQLITE = Prepared(
    text(
        f"{_INSERT} VALUES (:id, :uuid, :tenant_id, :subscription_id, :event_id, 'pending', 0,"
        f" :next_attempt_at, :created_at){_SKIP_GIVEN}"
    ).bindparams(
        bindparam("uuid", type_=UuidKey),
        bindparam("next_attempt_at", type_=UTCDateTime),
        bindparam("created_at", type_=UTCDateTime),
    )
)


def give(uow: UnitOfWork, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pending deliveries (``id``, ``uuid``, ``tenant_id``, ``subscription_id``,
    ``event_id``, ``next_attempt_at``, ``created_at``), skipping any event a
    subscription has already."""
    if not rows:
        return
    if uow.is_sqlite:
        _GIVE_SQLITE.execute_many(uow, rows)
        return
    uow.session.execute(_GIVE_POSTGRES, {name: [row[name] for row in rows] for name in _GIVEN})


def schedule(
    uow: UnitOfWork, due: Iterable[tuple[int, int]], *, now: datetime, earlier: bool = True
) -> None:
    """Make each (subscription, tenant) of ``due`` due now; ``earlier``: unless it was
    due already (a retry's later time, say, stays)."""
    values = [{"subscription_id": sub, "tenant_id": tenant, "due_at": now} for sub, tenant in due]
    if not values:
        return
    upsert = _dialect(uow).insert(_schedules).values(values)
    due_at = upsert.excluded.due_at
    uow.session.execute(
        upsert.on_conflict_do_update(
            index_elements=["subscription_id"],
            set_={"due_at": func.coalesce(_schedules.c.due_at, due_at) if earlier else due_at},
        )
    )


_SUCCEEDED = (
    "UPDATE webhook_deliveries SET state = 'succeeded', attempts = attempts + 1,"
    " last_status = :status, last_error = NULL, delivered_at = :now, next_attempt_at = NULL"
    " WHERE state = 'pending' AND id {keys}"
)
# The keys as one value, so that the statement's text is the same for every batch.
_SUCCEEDED_POSTGRES = text(_SUCCEEDED.format(keys="= ANY(CAST(:ids AS bigint[]))"))
_SUCCEEDED_SQLITE = text(
    _SUCCEEDED.format(keys="IN (SELECT value FROM json_each(:ids))")
).bindparams(bindparam("now", type_=UTCDateTime))


def mark_succeeded(
    uow: UnitOfWork, by_status: dict[int | None, list[int]], *, now: datetime
) -> None:
    """Mark the deliveries of each answer status succeeded (those still pending)."""
    for status, ids in by_status.items():
        if uow.is_sqlite:
            params = {"ids": orjson.dumps(ids).decode(), "status": status, "now": now}
            uow.session.execute(_SUCCEEDED_SQLITE, params)
        else:
            uow.session.execute(_SUCCEEDED_POSTGRES, {"ids": ids, "status": status, "now": now})


_RELAYED = "UPDATE outbox_events SET relayed = {true} WHERE id {keys}"
_UNWANTED = "DELETE FROM outbox_events WHERE id {keys}"
_KEYS_POSTGRES = "= ANY(CAST(:ids AS bigint[]))"
_KEYS_SQLITE = "IN (SELECT value FROM json_each(:ids))"
_MARK_POSTGRES = (
    text(_RELAYED.format(true="true", keys=_KEYS_POSTGRES)),
    text(_UNWANTED.format(keys=_KEYS_POSTGRES)),
)
_MARK_SQLITE = (
    text(_RELAYED.format(true="1", keys=_KEYS_SQLITE)),
    text(_UNWANTED.format(keys=_KEYS_SQLITE)),
)


def mark_relayed(uow: UnitOfWork, *, wanted: list[int], unwanted: list[int]) -> None:
    """In the outbox: the events given out are relayed, the others removed. The keys as
    one value, so that the statement's text is the same for every batch."""
    relayed, removed = _MARK_SQLITE if uow.is_sqlite else _MARK_POSTGRES
    for statement, ids in ((relayed, wanted), (removed, unwanted)):
        if ids:
            keys = orjson.dumps(ids).decode() if uow.is_sqlite else ids
            uow.session.execute(statement, {"ids": keys})
