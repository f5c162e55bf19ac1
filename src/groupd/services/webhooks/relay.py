"""The relay: gives each committed outbox event to the matching subscriptions of its
tenant, as deliveries numbered in the order it sees the events commit (decision 0061).

The deliveries go to the queue (``Database.queue``: on SQLite a file of its own,
decision 0078) in one transaction, and the outbox records it in the next: a relay that
stops in between gives the same events again, and the queue keeps one delivery of each."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, select, text

from groupd.services.common import new_uuid
from groupd.services.webhooks.catalogue import matches
from groupd.store import deliveries as queue_store
from groupd.store import outbox as outbox_store
from groupd.store.db import UnitOfWork
from groupd.store.ids import allocate_ids
from groupd.store.models import (
    OutboxEvent,
    WebhookDelivery,
    WebhookSchedule,
    WebhookSubscription,
)

# The partial index's own term, so SQLite uses it (a bound ``relayed = 0`` would not).
_UNRELAYED = text("NOT outbox_events.relayed")


@dataclass(frozen=True, slots=True)
class Relayed:
    """What a relay gave out: the events some subscription wants (to be marked relayed)
    and those none does (to be removed)."""

    wanted: list[int]
    unwanted: list[int]
    subscriptions: int = 0  # how many subscriptions were given deliveries

    def __len__(self) -> int:
        return len(self.wanted) + len(self.unwanted)


def has_unrelayed(uow: UnitOfWork) -> bool:
    """Whether any committed event waits for the relay (a read: no write lock)."""
    return (
        uow.session.execute(select(OutboxEvent.id).where(_UNRELAYED).limit(1)).first() is not None
    )


def give_out(queue: UnitOfWork, *, now: datetime, limit: int = 500) -> Relayed | None:
    """Give up to ``limit`` events, oldest first, to their subscriptions, as deliveries
    in the queue (a unit of ``Database.queue``); None when another relay holds the turn.
    ``mark_relayed`` then records it in the outbox, after this unit commits."""
    if not outbox_store.try_lock_relay(queue):
        return None
    session = queue.session
    events = session.execute(
        select(OutboxEvent.id, OutboxEvent.tenant_id, OutboxEvent.type)
        .where(_UNRELAYED)
        .order_by(OutboxEvent.id)
        .limit(limit)
    ).all()
    if not events:
        return Relayed([], [])
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
        keys = allocate_ids(queue, "webhook_deliveries", len(pairs))
        queue_store.give(
            queue,
            [
                {
                    "id": key,
                    "uuid": new_uuid(),
                    "tenant_id": event.tenant_id,
                    "subscription_id": sub_id,
                    "event_id": event.id,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for key, (event, sub_id) in zip(keys, pairs, strict=True)
            ],
        )
        tenant_of = {sub_id: event.tenant_id for event, sub_id in pairs}
        queue_store.schedule(queue, sorted(tenant_of.items()), now=now)
    wanted = sorted({event.id for event, _ in pairs})
    unwanted = sorted({event.id for event in events} - set(wanted))
    return Relayed(wanted, unwanted, len({sub_id for _, sub_id in pairs}))


def mark_relayed(uow: UnitOfWork, relayed: Relayed) -> None:
    """Record in the outbox what ``give_out`` did: the events given out are relayed
    (kept for the deliveries' listings until they are purged), the others removed."""
    outbox_store.mark_relayed(uow, wanted=relayed.wanted, unwanted=relayed.unwanted)


def purge_delivered(queue: UnitOfWork, *, now: datetime, retention_seconds: int) -> int:
    """Remove from the queue the deliveries that succeeded before the retention window,
    and what is left of subscriptions that are gone; the number of deliveries removed."""
    cutoff = now - timedelta(seconds=retention_seconds)
    session = queue.session
    removed = session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.state == "succeeded", WebhookDelivery.delivered_at < cutoff)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    subscribed = exists().where(WebhookSubscription.id == WebhookDelivery.subscription_id)
    session.execute(
        delete(WebhookDelivery).where(~subscribed).execution_options(synchronize_session=False)
    )
    session.execute(
        delete(WebhookSchedule)
        .where(~exists().where(WebhookSubscription.id == WebhookSchedule.subscription_id))
        .execution_options(synchronize_session=False)
    )
    return int(removed or 0)


def purge_events(uow: UnitOfWork, *, now: datetime, retention_seconds: int) -> None:
    """Remove the relayed events older than the retention window that no delivery in
    the queue refers to any more."""
    cutoff = now - timedelta(seconds=retention_seconds)
    uow.session.execute(
        delete(OutboxEvent)
        .where(
            OutboxEvent.relayed,
            OutboxEvent.occurred_at < cutoff,
            ~exists().where(WebhookDelivery.event_id == OutboxEvent.id),
        )
        .execution_options(synchronize_session=False)
    )
