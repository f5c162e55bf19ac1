"""The webhook queue's bulk statements, one set-based statement each (decision 0079).

A relay gives out a batch of events in one multi-row INSERT that drops the deliveries
the queue has already (a relay that stopped before marking its events gives them
again); a batch's successes are one UPDATE per answer status. Row by row, the same work
was one statement per delivery for the database to parse, plan and run: on PostgreSQL,
CPU taken from the backends that serve the API.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, null, update
from sqlalchemy.dialects import postgresql, sqlite

from groupd.store.db import UnitOfWork
from groupd.store.models import WebhookDelivery, WebhookSchedule, table_of

_deliveries = table_of(WebhookDelivery)
_schedules = table_of(WebhookSchedule)
# Rows per INSERT: 9 values each stay far below SQLite's 32,766 bound parameters.
INSERT_ROWS = 1000


def _dialect(uow: UnitOfWork) -> Any:
    return sqlite if uow.is_sqlite else postgresql


def give(uow: UnitOfWork, rows: Sequence[dict[str, Any]]) -> None:
    """Insert pending deliveries (``id``, ``uuid``, ``tenant_id``, ``subscription_id``,
    ``event_id``, ``next_attempt_at``, ``created_at``), skipping any event a
    subscription has already."""
    insert = _dialect(uow).insert(_deliveries)
    for start in range(0, len(rows), INSERT_ROWS):
        chunk = [
            {**row, "state": "pending", "attempts": 0} for row in rows[start : start + INSERT_ROWS]
        ]
        uow.session.execute(
            insert.values(chunk).on_conflict_do_nothing(
                index_elements=["subscription_id", "event_id"]
            )
        )


def schedule(uow: UnitOfWork, due: Iterable[tuple[int, int]], *, now: datetime) -> None:
    """Make each (subscription, tenant) of ``due`` due now, unless it was due already."""
    values = [{"subscription_id": sub, "tenant_id": tenant, "due_at": now} for sub, tenant in due]
    if not values:
        return
    upsert = _dialect(uow).insert(_schedules).values(values)
    uow.session.execute(
        upsert.on_conflict_do_update(
            index_elements=["subscription_id"],
            set_={"due_at": func.coalesce(_schedules.c.due_at, upsert.excluded.due_at)},
        )
    )


def mark_succeeded(
    uow: UnitOfWork, by_status: dict[int | None, list[int]], *, now: datetime
) -> None:
    """Mark the deliveries of each answer status succeeded (those still pending)."""
    for status, ids in by_status.items():
        for start in range(0, len(ids), INSERT_ROWS):
            uow.session.execute(
                update(_deliveries)
                .where(
                    _deliveries.c.id.in_(ids[start : start + INSERT_ROWS]),
                    _deliveries.c.state == "pending",
                )
                .values(
                    state="succeeded",
                    attempts=_deliveries.c.attempts + 1,
                    last_status=status,
                    last_error=null(),
                    delivered_at=now,
                    next_attempt_at=null(),
                )
            )
