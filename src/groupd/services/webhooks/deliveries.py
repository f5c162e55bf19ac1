"""A delivery thread's bookkeeping: claim a subscription's next deliveries, record what
sending them did, give up when the retry schedule runs out (decision 0061).

All of it is written in the queue (units of ``Database.queue``: on SQLite a file of its
own, decision 0078) but disabling a subscription that gave up, which is the main
database's."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, delete, exists, or_, select

from groupd.services import audit
from groupd.services.common import system_actor
from groupd.services.webhooks import sealing
from groupd.store import deliveries as queue_store
from groupd.store.db import UnitOfWork
from groupd.store.models import (
    OutboxEvent,
    Tenant,
    WebhookDelivery,
    WebhookSubscription,
)
from groupd.store.models import WebhookSchedule as Schedule


@dataclass(frozen=True, slots=True)
class Message:
    """One delivery to send: its event and how often it was tried."""

    delivery_id: int
    event_uuid: uuid.UUID  # the ``webhook-id``, the same on every retry
    event_type: str
    occurred_at: datetime
    data: bytes  # the event's data as JSON text, put in the body as it is stored
    attempts: int


@dataclass(frozen=True, slots=True)
class Claim:
    """A subscription leased to one delivery thread, with its next messages in order."""

    subscription_id: int
    subscription_uuid: uuid.UUID
    tenant_uuid: uuid.UUID
    url: str
    secret: str
    format: str
    messages: list[Message]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt came to: a 2xx answer, or the status and reason of a failure."""

    delivery_id: int
    ok: bool
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    schedule: tuple[float, ...]  # seconds after each failed attempt; the last repeats
    give_up_seconds: float  # after this long since the first attempt: give up

    @classmethod
    def parse(cls, schedule: str, give_up_seconds: float) -> RetryPolicy:
        return cls(tuple(float(step) for step in schedule.split(",")), give_up_seconds)

    def delay(self, attempts: int) -> float:
        return self.schedule[min(attempts, len(self.schedule)) - 1]


def has_due(queue: UnitOfWork, *, now: datetime) -> bool:
    """Whether any subscription has a delivery to try now (a read: no write lock)."""
    return (
        queue.session.execute(_claimable(select(Schedule.subscription_id), now)).first() is not None
    )


def _claimable(query: Any, now: datetime) -> Any:
    return (
        query.join(WebhookSubscription, WebhookSubscription.id == Schedule.subscription_id)
        .where(
            Schedule.due_at <= now,
            WebhookSubscription.enabled,
            or_(Schedule.lease_until.is_(None), Schedule.lease_until < now),
        )
        .order_by(Schedule.due_at)
        .limit(1)
    )


@dataclass(frozen=True, slots=True)
class Lease:
    """A subscription leased to one delivery thread: no one else sends its deliveries
    until the lease is given back or runs out."""

    subscription_id: int


def lease_next(
    queue: UnitOfWork, *, worker_id: str, now: datetime, lease_seconds: float
) -> Lease | None:
    """Lease the subscription due longest, skipping those another thread holds; None
    when none is due. A short write: the deliveries are read after it (``claim``)."""
    session = queue.session
    row = session.execute(
        _claimable(select(Schedule), now).with_for_update(skip_locked=True, of=Schedule)
    ).scalar_one_or_none()
    if row is None:
        return None
    row.lease_until = now + timedelta(seconds=lease_seconds)
    row.claimed_by = worker_id
    session.flush()
    return Lease(row.subscription_id)


def claim(queue: UnitOfWork, *, lease: Lease, batch: int, secret_keys: str) -> Claim | None:
    """A leased subscription with up to ``batch`` of its pending deliveries, oldest
    first (a read: the lease keeps them this thread's, decision 0076); None when the
    subscription is gone (``forget`` it)."""
    session = queue.session
    found = session.execute(
        select(
            WebhookSubscription.uuid,
            Tenant.uuid,
            WebhookSubscription.url,
            WebhookSubscription.secret,
            WebhookSubscription.format,
        )
        .join(Tenant, Tenant.id == WebhookSubscription.tenant_id)
        .where(WebhookSubscription.id == lease.subscription_id)
    ).first()
    if found is None:
        return None
    subscription_uuid, tenant_uuid, url, secret, format_ = found
    # The data as the database keeps it (JSON text): decoding it only to encode it again
    # into the body would be most of a message's CPU before it is sent.
    messages = [
        Message(key, event_uuid, event_type, occurred_at, data.encode(), attempts)
        for key, event_uuid, event_type, occurred_at, data, attempts in session.execute(
            select(
                WebhookDelivery.id,
                OutboxEvent.uuid,
                OutboxEvent.type,
                OutboxEvent.occurred_at,
                cast(OutboxEvent.data, Text),
                WebhookDelivery.attempts,
            )
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
            .where(
                WebhookDelivery.subscription_id == lease.subscription_id,
                WebhookDelivery.state == "pending",
            )
            .order_by(WebhookDelivery.id)
            .limit(batch)
        )
    ]
    return Claim(
        lease.subscription_id,
        subscription_uuid,
        tenant_uuid,
        url,
        sealing.unseal(secret, secret_keys),
        format_,
        messages,
    )


@dataclass(frozen=True, slots=True)
class GiveUp:
    """A subscription whose delivery failed past the retry policy's end: to be disabled
    (``disable``), in the main database, after the queue recorded the failure."""

    subscription_id: int
    reason: str


def record_outcomes(
    queue: UnitOfWork,
    *,
    claim: Claim,
    outcomes: list[Outcome],
    worker_id: str,
    now: datetime,
    policy: RetryPolicy,
) -> GiveUp | None:
    """Record the attempts of a claim (successes, then at most one failure, which stops
    the rest), schedule what is left, and give the subscription back.

    A failure past the retry policy's end marks its delivery failed and stops the
    subscription's schedule; the caller then disables it (``disable``)."""
    session = queue.session
    # The schedule first: a relay giving the subscription new deliveries commits before
    # or after this whole unit, never in between (the pending check below then sees them).
    schedule = session.execute(
        select(Schedule).where(Schedule.subscription_id == claim.subscription_id).with_for_update()
    ).scalar_one_or_none()
    if schedule is None:
        return None  # forgotten meanwhile, deliveries with it
    by_status: dict[int | None, list[int]] = {}
    for outcome in outcomes:
        if outcome.ok:
            by_status.setdefault(outcome.status, []).append(outcome.delivery_id)
    queue_store.mark_succeeded(queue, by_status, now=now)
    failed = next((outcome for outcome in outcomes if not outcome.ok), None)
    give_up: GiveUp | None = None
    if failed is not None:
        schedule.due_at, give_up = _record_failure(
            queue, claim.subscription_id, failed, now=now, policy=policy
        )
    else:
        more = session.execute(
            select(
                exists().where(
                    WebhookDelivery.subscription_id == claim.subscription_id,
                    WebhookDelivery.state == "pending",
                )
            )
        ).scalar()
        schedule.due_at = now if more else None
    if schedule.claimed_by == worker_id:
        schedule.lease_until = None
        schedule.claimed_by = None
    session.flush()
    return give_up


def _record_failure(
    queue: UnitOfWork,
    subscription_id: int,
    failed: Outcome,
    *,
    now: datetime,
    policy: RetryPolicy,
) -> tuple[datetime | None, GiveUp | None]:
    """The failure on its delivery; when the subscription is due next, and whether it
    gives up."""
    delivery = queue.session.get(WebhookDelivery, failed.delivery_id)
    if delivery is None or delivery.state != "pending":
        return now, None
    delivery.attempts += 1
    delivery.first_attempt_at = delivery.first_attempt_at or now
    delivery.last_status = failed.status
    delivery.last_error = (failed.error or "")[:500] or None
    if (now - delivery.first_attempt_at).total_seconds() < policy.give_up_seconds:
        delivery.next_attempt_at = now + timedelta(seconds=policy.delay(delivery.attempts))
        return delivery.next_attempt_at, None
    delivery.state = "failed"
    delivery.next_attempt_at = None
    reason = (
        f"a delivery failed for {policy.give_up_seconds:g} s; last: {failed.status or failed.error}"
    )[:500]
    return None, GiveUp(subscription_id, reason)


def disable(uow: UnitOfWork, give_up: GiveUp, *, now: datetime) -> None:
    """Disable a subscription that gave up, recorded as ``webhook.disable``."""
    sub = uow.session.execute(
        select(WebhookSubscription)
        .where(WebhookSubscription.id == give_up.subscription_id)
        .with_for_update()
    ).scalar_one_or_none()
    if sub is None or not sub.enabled:
        return
    sub.enabled = False
    sub.disabled_reason = give_up.reason
    sub.updated_at = now
    uow.session.flush()
    audit.record_event(
        uow,
        actor=system_actor(sub.tenant_id, name="webhooks"),
        action="webhook.disable",
        target_type="webhook",
        target_uuid=sub.uuid,
        target_name=sub.url[:255],
        outcome="succeeded",
        detail=sub.disabled_reason,
        now=now,
    )


def forget(queue: UnitOfWork, subscription_id: int) -> None:
    """Remove what the queue holds of a subscription that is gone. The schedule first:
    every writer of a subscription's deliveries locks its schedule before them
    (``record_outcomes``), so none waits for another in the opposite order."""
    queue.session.execute(
        delete(Schedule)
        .where(Schedule.subscription_id == subscription_id)
        .execution_options(synchronize_session=False)
    )
    queue.session.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .execution_options(synchronize_session=False)
    )
