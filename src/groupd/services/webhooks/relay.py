"""The relay: gives each committed outbox event to the matching subscriptions of its
tenant, as deliveries numbered in the order it sees the events commit (decision 0061)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, insert, literal, select, text, update

from groupd.services.common import new_uuid
from groupd.services.webhooks.catalogue import matches
from groupd.store.db import UnitOfWork
from groupd.store.ids import allocate_ids
from groupd.store.models import OutboxEvent, WebhookDelivery, WebhookSubscription, table_of
from groupd.store.outbox import try_lock_relay
from groupd.store.prepared import Prepared
from groupd.store.types import UTCDateTime

# The partial index's own term, so SQLite uses it (a bound ``relayed = 0`` would not).
_UNRELAYED = text("NOT outbox_events.relayed")


_DELIVERY_COLUMNS = [
    "id",
    "uuid",
    "tenant_id",
    "subscription_id",
    "event_id",
    "state",
    "attempts",
    "first_attempt_at",
    "next_attempt_at",
    "last_status",
    "last_error",
    "created_at",
    "delivered_at",
]
# A relay inserts a delivery per event and subscription while it holds SQLite's one
# write lock: through the driver in one call, not SQLAlchemy's bulk insert (decision 0076).
_INSERT_DELIVERIES = Prepared(insert(table_of(WebhookDelivery)), column_keys=_DELIVERY_COLUMNS)


def has_unrelayed(uow: UnitOfWork) -> bool:
    """Whether any committed event waits for the relay (a read: no write lock)."""
    return (
        uow.session.execute(select(OutboxEvent.id).where(_UNRELAYED).limit(1)).first() is not None
    )


def relay_events(uow: UnitOfWork, *, now: datetime, limit: int = 500) -> int:
    """Give up to ``limit`` events, oldest first, to their subscriptions; the number
    relayed (0 when another relay holds the turn). An event no subscription wants is
    removed at once."""
    if not try_lock_relay(uow):
        return 0
    session = uow.session
    events = session.execute(
        select(OutboxEvent.id, OutboxEvent.tenant_id, OutboxEvent.type)
        .where(_UNRELAYED)
        .order_by(OutboxEvent.id)
        .limit(limit)
    ).all()
    if not events:
        return 0
    by_tenant: dict[int, list[tuple[int, list[str], int]]] = defaultdict(list)
    for sub_id, tenant_id, patterns, after in session.execute(
        select(
            WebhookSubscription.id,
            WebhookSubscription.tenant_id,
            WebhookSubscription.events,
            WebhookSubscription.after_event_id,
        )
        .where(
            WebhookSubscription.tenant_id.in_({e.tenant_id for e in events}),
            WebhookSubscription.enabled,
        )
        .order_by(WebhookSubscription.id)
    ):
        by_tenant[tenant_id].append((sub_id, patterns, after))
    pairs = [
        (event, sub_id)
        for event in events
        for sub_id, patterns, after in by_tenant.get(event.tenant_id, ())
        if event.id > after and matches(patterns, event.type)
    ]
    if pairs:
        # Keys drawn in event order: a subscription's deliveries go out in key order.
        keys = allocate_ids(uow, "webhook_deliveries", len(pairs))
        rows: list[dict[str, Any]] = [
            {
                "id": key,
                "uuid": new_uuid(),
                "tenant_id": event.tenant_id,
                "subscription_id": sub_id,
                "event_id": event.id,
                "state": "pending",
                "attempts": 0,
                "first_attempt_at": None,
                "next_attempt_at": now,
                "last_status": None,
                "last_error": None,
                "created_at": now,
                "delivered_at": None,
            }
            for key, (event, sub_id) in zip(keys, pairs, strict=True)
        ]
        _INSERT_DELIVERIES.execute_many(uow, rows)
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id.in_(sorted({sub_id for _, sub_id in pairs})))
            .values(due_at=func.coalesce(WebhookSubscription.due_at, literal(now, UTCDateTime)))
            .execution_options(synchronize_session=False)
        )
    events_table = table_of(OutboxEvent)
    wanted = sorted({event.id for event, _ in pairs})
    unwanted = sorted({event.id for event in events} - set(wanted))
    if wanted:
        session.execute(
            update(events_table).where(events_table.c.id.in_(wanted)).values(relayed=True)
        )
    if unwanted:
        session.execute(delete(events_table).where(events_table.c.id.in_(unwanted)))
    return len(events)


def purge_delivered(uow: UnitOfWork, *, now: datetime, retention_seconds: int) -> int:
    """Remove deliveries that succeeded before the retention window, and the events no
    delivery refers to any more; the number of deliveries removed."""
    cutoff = now - timedelta(seconds=retention_seconds)
    session = uow.session
    removed = session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.state == "succeeded", WebhookDelivery.delivered_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    session.execute(
        delete(OutboxEvent)
        .where(
            OutboxEvent.relayed,
            OutboxEvent.occurred_at < cutoff,
            ~exists().where(WebhookDelivery.event_id == OutboxEvent.id),
        )
        .execution_options(synchronize_session=False)
    )
    return int(removed or 0)
