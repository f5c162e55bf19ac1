"""The outbox: an event row written in the transaction of the change it tells.

The audit trail calls ``emit_for_action`` for every event it appends, so each change of
every surface (and of features yet to come) emits its event with no code of its own; a
rolled-back change rolls its event back with it (decision 0060).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select

from groupd.services.common import new_uuid
from groupd.services.webhooks.catalogue import TYPE_OF_ACTION
from groupd.store.db import UnitOfWork
from groupd.store.models import Licence, OutboxEvent, table_of
from groupd.store.prepared import Prepared

if TYPE_CHECKING:
    from groupd.services.common import Actor

_APPEND = Prepared(
    insert(table_of(OutboxEvent)),
    column_keys=["uuid", "tenant_id", "type", "data", "relayed", "occurred_at"],
)


def emit(
    uow: UnitOfWork, *, tenant_id: int, event_type: str, data: dict[str, Any], now: datetime
) -> uuid.UUID:
    """Append one event of ``tenant_id``; it commits or rolls back with the change."""
    key = new_uuid()
    _APPEND.execute(
        uow,
        {
            "uuid": key,
            "tenant_id": tenant_id,
            "type": event_type,
            "data": data,
            "relayed": False,
            "occurred_at": now,
        },
    )
    return key


def emit_for_action(
    uow: UnitOfWork,
    *,
    tenant_id: int,
    actor: Actor,
    action: str,
    target_type: str,
    target_uuid: uuid.UUID | None,
    target_name: str | None,
    counts: dict[str, Any] | None,
    detail: str | None,
    now: datetime,
    event_data: dict[str, Any] | None = None,
) -> None:
    """Emit the event an audited ``action`` tells, if it tells one (``TYPE_OF_ACTION``).

    The data names the actor and the request, the target and the counts; ``event_data``
    (a full representation, say) is added as given."""
    event_type = TYPE_OF_ACTION.get(action)
    if event_type is None:
        return
    data: dict[str, Any] = {
        "actor": actor.username,
        "requestId": actor.request_id or None,
        "source": actor.source,
        "target": {
            "type": target_type,
            "id": str(target_uuid) if target_uuid is not None else None,
            "name": target_name,
        },
    }
    if counts:
        data["counts"] = counts
    if detail:
        data["detail"] = detail
    if event_data:
        data.update(event_data)
    emit(uow, tenant_id=tenant_id, event_type=event_type, data=data, now=now)


def released_units(uow: UnitOfWork, *, units_by_licence: dict[int, int]) -> list[dict[str, Any]]:
    """What a delete gave back, per licence (``{"licenceId", "product", "units"}``), in
    product order, from the licences' keys."""
    if not units_by_licence:
        return []
    rows = uow.session.execute(
        select(Licence.id, Licence.uuid, Licence.product)
        .where(Licence.id.in_(sorted(units_by_licence)))
        .order_by(Licence.product)
    ).all()
    return [
        {"licenceId": str(key), "product": product, "units": units_by_licence[licence_id]}
        for licence_id, key, product in rows
    ]


def emit_units_released(
    uow: UnitOfWork,
    *,
    actor: Actor,
    released: list[dict[str, Any]],
    now: datetime,
    event_data: dict[str, Any],
) -> None:
    """One ``licence.units_released`` event per licence of ``released``."""
    for item in released:
        data = {
            "actor": actor.username,
            "requestId": actor.request_id or None,
            "source": actor.source,
            "target": {"type": "license", "id": item["licenceId"], "name": item["product"]},
            **item,
            **event_data,
        }
        emit(
            uow, tenant_id=actor.tenant_id, event_type="licence.units_released", data=data, now=now
        )
