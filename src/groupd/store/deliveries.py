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

from sqlalchemy import Integer, bindparam, func, null, text, update
from sqlalchemy.dialects import postgresql, sqlite

from groupd.store.db import UnitOfWork
from groupd.store.keys import in_keys
from groupd.store.models import WebhookDelivery, WebhookSchedule, table_of
from groupd.store.prepared import Prepared
from groupd.store.types import UTCDateTime, UuidKey

_schedules = table_of(WebhookSchedule)
_deliveries = table_of(WebhookDelivery)


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


# The keys as one parameter (``in_keys``), so that the statement is the same for every
# batch, whatever its size, and runs on the driver's cursor.
_SUCCEEDED = Prepared(
    update(_deliveries)
    .where(text("state = 'pending'"), in_keys(_deliveries.c.id, "ids"))
    .values(
        state="succeeded",
        attempts=_deliveries.c.attempts + 1,
        last_status=bindparam("status", type_=Integer()),
        last_error=null(),
        delivered_at=bindparam("now", type_=UTCDateTime()),
        next_attempt_at=null(),
    )
)


def mark_succeeded(
    uow: UnitOfWork, by_status: dict[int | None, list[int]], *, now: datetime
) -> None:
    """Mark the deliveries of each answer status succeeded (those still pending)."""
    for status, ids in by_status.items():
        _SUCCEEDED.execute(uow, {"ids": ids, "status": status, "now": now})
