"""The audit trail: append-only events, written in the transaction of what they record."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    parse_uuid_field,
)
from groupd.services.webhooks import outbox
from groupd.services.webhooks.documents import group_document
from groupd.store.db import UnitOfWork
from groupd.store.models import AuditEvent, table_of
from groupd.store.prepared import Prepared

if TYPE_CHECKING:
    # Only a type here: the group services record their changes through this module.
    from groupd.services.groups import GroupView


@dataclass(frozen=True, slots=True)
class AuditView:
    id: int
    actor: str
    action: str
    target_type: str
    target_uuid: uuid.UUID | None
    target_name: str | None
    request_id: str | None
    source: str | None
    outcome: str
    counts: dict[str, Any]
    detail: str | None
    at: datetime


_APPEND = Prepared(
    insert(table_of(AuditEvent)),
    column_keys=[
        "tenant_id",
        "actor",
        "action",
        "target_type",
        "target_uuid",
        "target_name",
        "request_id",
        "source",
        "outcome",
        "counts",
        "detail",
        "at",
    ],
)


def record_event(
    uow: UnitOfWork,
    *,
    actor: Actor,
    action: str,
    target_type: str,
    target_uuid: uuid.UUID | None,
    target_name: str | None,
    outcome: str,
    now: datetime,
    counts: dict[str, Any] | None = None,
    detail: str | None = None,
    tenant_id: int | None = None,
    event_data: dict[str, Any] | None = None,
) -> None:
    """Append one event; it commits or rolls back with the change it describes.

    A change a webhook subscriber may want also writes its outbox event here (one seam:
    decision 0060); ``event_data`` adds to that event's data (a full representation)."""
    tenant = tenant_id if tenant_id is not None else actor.tenant_id
    # A prepared statement on the raw connection: most writes append an event.
    _APPEND.execute(
        uow,
        {
            "tenant_id": tenant,
            "actor": actor.username,
            "action": action,
            "target_type": target_type,
            "target_uuid": target_uuid,
            "target_name": target_name,
            "request_id": actor.request_id or None,
            "source": actor.source,
            "outcome": outcome,
            "counts": counts or {},
            "detail": detail[:2000] if detail else None,
            "at": now,
        },
    )
    outbox.emit_for_action(
        uow,
        tenant_id=tenant,
        actor=actor,
        action=action,
        target_type=target_type,
        target_uuid=target_uuid,
        target_name=target_name,
        counts=counts,
        detail=detail,
        now=now,
        event_data=event_data,
    )


def record_group_change(
    uow: UnitOfWork, *, actor: Actor, action: str, group: GroupView, now: datetime
) -> None:
    """Append the event of a successful change to ``group`` (create, update, move)."""
    record_event(
        uow,
        actor=actor,
        action=action,
        target_type="group",
        target_uuid=group.uuid,
        target_name=group.name,
        outcome="succeeded",
        now=now,
        event_data={"group": group_document(group)},
    )


def list_events(
    uow: UnitOfWork,
    *,
    actor: Actor,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """The tenant's events, oldest first, filtered by target, action and time."""
    check_limit(limit)
    query = select(AuditEvent).where(
        AuditEvent.tenant_id == actor.tenant_id, AuditEvent.id > decode_cursor(cursor)
    )
    if target is not None:
        query = query.where(AuditEvent.target_uuid == parse_uuid_field(target, field="target"))
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    rows = uow.session.execute(query.order_by(AuditEvent.id).limit(limit + 1)).scalars().all()
    items = [
        AuditView(
            e.id,
            e.actor,
            e.action,
            e.target_type,
            e.target_uuid,
            e.target_name,
            e.request_id,
            e.source,
            e.outcome,
            e.counts or {},
            e.detail,
            e.at,
        )
        for e in rows[:limit]
    ]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)
