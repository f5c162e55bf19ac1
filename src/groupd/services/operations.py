"""The tenant's operations as a list: newest first, the ones still running on top of
what the console shows. A single operation is read through ``deletion.get_operation``."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select

from groupd.services.common import MAX_KEY, Actor, Page, check_limit, decode_cursor, encode_cursor
from groupd.services.deletion import OperationView
from groupd.store.db import UnitOfWork
from groupd.store.models import Operation


def list_operations(
    uow: UnitOfWork, *, actor: Actor, now: datetime, limit: int = 50, cursor: str | None = None
) -> Page:
    """The tenant's operations, newest first; finished ones drop out when their result
    expires, as ``get_operation`` says."""
    check_limit(limit)
    rows = (
        uow.session.execute(
            select(Operation)
            .where(
                Operation.tenant_id == actor.tenant_id,
                Operation.id < (decode_cursor(cursor) or MAX_KEY),
                or_(Operation.expires_at.is_(None), Operation.expires_at > now),
            )
            .order_by(Operation.id.desc())
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    items = [
        OperationView(
            op.id,
            op.uuid,
            op.kind,
            op.state,
            op.target_uuid,
            op.target_name,
            op.params or {},
            op.progress or {},
            op.result_status,
            op.result_body,
            op.created_at,
            op.started_at,
            op.finished_at,
            op.expires_at,
            op.first_pending_at,
            op.collected_at,
        )
        for op in rows[:limit]
    ]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)
