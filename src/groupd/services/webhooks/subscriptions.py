"""A tenant's webhook subscriptions and their deliveries, as an admin manages them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from sqlalchemy import exists, func, select, update

from groupd.errors import InvalidInput, NotFound
from groupd.services import audit
from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    new_uuid,
    parse_uuid,
)
from groupd.services.webhooks import addresses, deliveries, sealing
from groupd.services.webhooks.catalogue import TEST_EVENT, check_patterns
from groupd.services.webhooks.outbox import emit
from groupd.store import deliveries as queue_store
from groupd.store.db import Database, UnitOfWork, transaction
from groupd.store.models import (
    OutboxEvent,
    WebhookDelivery,
    WebhookSubscription,
)

FORMATS = ("standard", "cloudevents")
MAX_DESCRIPTION = 2000


@dataclass(frozen=True, slots=True)
class Policy:
    """What the installation allows: the allow-list and the keys that seal secrets."""

    networks: tuple[addresses.Network, ...] = ()
    secret_keys: str = ""


@dataclass(frozen=True, slots=True)
class SubscriptionView:
    id: int
    uuid: UUID
    url: str
    events: list[str]
    description: str
    format: str
    enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    secret: str | None = None  # only when just made (create, rotate-secret)


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as an admin sees it; ``next_attempt_at`` only while it is pending."""

    id: int
    uuid: UUID
    event_uuid: UUID
    event_type: str
    state: str
    attempt_count: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None


def _view(row: WebhookSubscription, secret: str | None = None) -> SubscriptionView:
    return SubscriptionView(
        row.id,
        row.uuid,
        row.url,
        list(row.events),
        row.description,
        row.format,
        row.enabled,
        row.disabled_reason,
        row.created_at,
        row.updated_at,
        secret,
    )


def _check_format(value: str) -> str:
    if value not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}", field="format")
    return value


def _check_description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"description is longer than {MAX_DESCRIPTION} characters", field="description"
        )
    return value


def _record(
    uow: UnitOfWork, actor: Actor, action: str, row: WebhookSubscription, now: datetime
) -> None:
    audit.record_event(
        uow,
        actor=actor,
        action=action,
        target_type="webhook",
        target_uuid=row.uuid,
        target_name=row.url[:255],
        outcome="succeeded",
        now=now,
    )


def create_subscription(
    uow: UnitOfWork,
    *,
    actor: Actor,
    url: str,
    events: list[str],
    description: str = "",
    format: str = "standard",
    policy: Policy,
    now: datetime,
) -> SubscriptionView:
    """Subscribe ``url`` to the tenant's ``events``; the view carries the new secret,
    which is never shown again. Recorded as ``webhook.create``."""
    actor.require("admin")
    addresses.check_url(url, policy.networks)
    secret = sealing.new_secret()
    # Events are told from the subscription on: none already in the outbox.
    after = uow.session.execute(select(func.coalesce(func.max(OutboxEvent.id), 0))).scalar_one()
    row = WebhookSubscription(
        after_event_id=after,
        uuid=new_uuid(),
        tenant_id=actor.tenant_id,
        url=url,
        events=check_patterns(events),
        description=_check_description(description),
        format=_check_format(format),
        secret=sealing.seal(secret, policy.secret_keys),
        enabled=True,
        created_at=now,
        updated_at=now,
    )
    uow.session.add(row)
    uow.session.flush()
    _record(uow, actor, "webhook.create", row, now)
    return _view(row, secret)


def _subscription(
    uow: UnitOfWork, *, actor: Actor, subscription_id: str | UUID, lock: bool = False
) -> WebhookSubscription:
    key = (
        subscription_id
        if isinstance(subscription_id, UUID)
        else parse_uuid(subscription_id, what="webhook")
    )
    query = select(WebhookSubscription).where(
        WebhookSubscription.uuid == key, WebhookSubscription.tenant_id == actor.tenant_id
    )
    if lock:
        query = query.with_for_update()
    row = uow.session.execute(query).scalar_one_or_none()
    if row is None:
        raise NotFound(f"no webhook '{subscription_id}'")
    return row


def any_enabled(uow: UnitOfWork) -> bool:
    """Whether any tenant has an enabled subscription (a read: no write lock)."""
    found = uow.session.execute(
        select(WebhookSubscription.id).where(WebhookSubscription.enabled).limit(1)
    ).first()
    return found is not None


def get_subscription(
    uow: UnitOfWork, *, actor: Actor, subscription_id: str | UUID
) -> SubscriptionView:
    """One of the tenant's subscriptions (never its secret)."""
    actor.require("admin")
    return _view(_subscription(uow, actor=actor, subscription_id=subscription_id))


def list_subscriptions(
    uow: UnitOfWork, *, actor: Actor, limit: int = 50, cursor: str | None = None
) -> Page:
    """The tenant's subscriptions, oldest first."""
    actor.require("admin")
    check_limit(limit)
    rows = (
        uow.session.execute(
            select(WebhookSubscription)
            .where(
                WebhookSubscription.tenant_id == actor.tenant_id,
                WebhookSubscription.id > decode_cursor(cursor),
            )
            .order_by(WebhookSubscription.id)
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    items = [_view(row) for row in rows[:limit]]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


def update_subscription(
    uow: UnitOfWork,
    *,
    actor: Actor,
    subscription_id: str,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
    policy: Policy,
    now: datetime,
) -> SubscriptionView:
    """Change what is given; enabling again resumes the deliveries still pending.
    Recorded as ``webhook.update``."""
    actor.require("admin")
    row = _subscription(uow, actor=actor, subscription_id=subscription_id, lock=True)
    if url is not None:
        addresses.check_url(url, policy.networks)
        row.url = url
    if events is not None:
        row.events = check_patterns(events)
    if description is not None:
        row.description = _check_description(description)
    if enabled is not None and enabled != row.enabled:
        row.enabled = enabled
        row.disabled_reason = None if enabled else "disabled by an administrator"
        if enabled:  # whatever was pending goes out again
            uow.after_commit(partial(_resume, uow.db.queue, row.id, row.tenant_id, now))
    row.updated_at = now
    uow.session.flush()
    _record(uow, actor, "webhook.update", row, now)
    return _view(row)


def delete_subscription(
    uow: UnitOfWork, *, actor: Actor, subscription_id: str, now: datetime
) -> None:
    """Remove a subscription and its deliveries. Recorded as ``webhook.delete``."""
    actor.require("admin")
    row = _subscription(uow, actor=actor, subscription_id=subscription_id, lock=True)
    _record(uow, actor, "webhook.delete", row, now)
    uow.session.delete(row)
    uow.session.flush()
    uow.after_commit(partial(_forget, uow.db.queue, row.id))


def _resume(queue: Database, subscription_id: int, tenant_id: int, now: datetime) -> None:
    """Make a subscription due now if the queue holds pending deliveries of it."""
    with transaction(queue) as uow:
        pending = uow.session.execute(
            select(
                exists().where(
                    WebhookDelivery.subscription_id == subscription_id,
                    WebhookDelivery.state == "pending",
                )
            )
        ).scalar()
        if pending:
            _due_now(uow, subscription_id, tenant_id, now)


def _due_now(queue: UnitOfWork, subscription_id: int, tenant_id: int, now: datetime) -> None:
    queue_store.schedule(queue, [(subscription_id, tenant_id)], now=now, earlier=False)


def _forget(queue: Database, subscription_id: int) -> None:
    with transaction(queue) as uow:
        deliveries.forget(uow, subscription_id)


def rotate_secret(
    uow: UnitOfWork, *, actor: Actor, subscription_id: str, policy: Policy, now: datetime
) -> SubscriptionView:
    """A new secret, shown once; the next delivery is signed with it.
    Recorded as ``webhook.rotate_secret``."""
    actor.require("admin")
    row = _subscription(uow, actor=actor, subscription_id=subscription_id, lock=True)
    secret = sealing.new_secret()
    row.secret = sealing.seal(secret, policy.secret_keys)
    row.updated_at = now
    uow.session.flush()
    _record(uow, actor, "webhook.rotate_secret", row, now)
    return _view(row, secret)


_DELIVERY_COLUMNS = (
    WebhookDelivery.id,
    WebhookDelivery.uuid,
    OutboxEvent.uuid,
    OutboxEvent.type,
    WebhookDelivery.state,
    WebhookDelivery.attempts,
    WebhookDelivery.last_status,
    WebhookDelivery.last_error,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.created_at,
    WebhookDelivery.delivered_at,
)


def _delivery_view(row: Any) -> DeliveryView:
    return DeliveryView(*row)


def list_deliveries(
    uow: UnitOfWork,
    *,
    actor: Actor,
    subscription_id: str,
    state: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """A subscription's deliveries, newest first."""
    actor.require("admin")
    check_limit(limit)
    row = _subscription(uow, actor=actor, subscription_id=subscription_id)
    query = (
        select(*_DELIVERY_COLUMNS)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == row.id)
    )
    if cursor is not None:
        query = query.where(WebhookDelivery.id < decode_cursor(cursor))
    if state is not None:
        if state not in ("pending", "succeeded", "failed"):
            raise InvalidInput("state must be pending, succeeded or failed", field="state")
        query = query.where(WebhookDelivery.state == state)
    rows = uow.session.execute(query.order_by(WebhookDelivery.id.desc()).limit(limit + 1)).all()
    items = [_delivery_view(r) for r in rows[:limit]]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


def _delivery(uow: UnitOfWork, *, subscription: WebhookSubscription, delivery_id: str) -> Any:
    key = parse_uuid(delivery_id, what="delivery")
    found = uow.session.execute(
        select(*_DELIVERY_COLUMNS)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.uuid == key, WebhookDelivery.subscription_id == subscription.id)
    ).first()
    if found is None:
        raise NotFound(f"no delivery '{delivery_id}'")
    return found


def retry_delivery(
    uow: UnitOfWork, *, actor: Actor, subscription_id: str, delivery_id: str, now: datetime
) -> DeliveryView:
    """Send one delivery again, whatever became of it, as soon as its subscription's
    earlier pending deliveries are out. It keeps its ``webhook-id``. The queue takes it
    once the ``webhook.retry`` record is committed."""
    actor.require("admin")
    row = _subscription(uow, actor=actor, subscription_id=subscription_id, lock=True)
    found = _delivery_view(_delivery(uow, subscription=row, delivery_id=delivery_id))
    _record(uow, actor, "webhook.retry", row, now)
    uow.after_commit(partial(_retry, uow.db.queue, found.id, row.id, row.tenant_id, now))
    return replace(found, state="pending", next_attempt_at=now)


def _retry(
    queue: Database, delivery_key: int, subscription_id: int, tenant_id: int, now: datetime
) -> None:
    with transaction(queue) as uow:
        _due_now(uow, subscription_id, tenant_id, now)  # the schedule first (``forget``)
        uow.session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_key)
            .values(state="pending", next_attempt_at=now, first_attempt_at=None)
            .execution_options(synchronize_session=False)
        )


def send_test_event(
    uow: UnitOfWork, *, actor: Actor, subscription_id: str, now: datetime
) -> DeliveryView:
    """Queue a ``webhook.test`` event for this subscription alone. The event is written
    relayed (no other subscription sees it); its delivery is given to the queue once the
    event is committed."""
    actor.require("admin")
    row = _subscription(uow, actor=actor, subscription_id=subscription_id, lock=True)
    event_uuid = emit(
        uow,
        tenant_id=actor.tenant_id,
        event_type=TEST_EVENT,
        data={
            "actor": actor.username,
            "requestId": actor.request_id or None,
            "webhookId": str(row.uuid),
        },
        now=now,
    )
    event_id = uow.session.execute(
        select(OutboxEvent.id).where(OutboxEvent.uuid == event_uuid)
    ).scalar_one()
    uow.session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id == event_id)
        .values(relayed=True)
        .execution_options(synchronize_session=False)
    )
    delivery = WebhookDelivery(
        uuid=new_uuid(),
        tenant_id=actor.tenant_id,
        subscription_id=row.id,
        event_id=event_id,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    uow.after_commit(partial(_give, uow.db.queue, delivery, due=row.enabled))
    return DeliveryView(
        0, delivery.uuid, event_uuid, TEST_EVENT, "pending", 0, None, None, now, now, None
    )


def _give(queue: Database, delivery: WebhookDelivery, *, due: bool) -> None:
    """Put one delivery in the queue; its subscription due now if enabled."""
    with transaction(queue) as uow:
        uow.session.add(delivery)
        if due:
            _due_now(uow, delivery.subscription_id, delivery.tenant_id, delivery.created_at)
        uow.session.flush()
