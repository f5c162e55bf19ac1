"""Waiting, inside a request, for an accepted operation to finish within a budget: the
request's context handed to ``operations.wait_for_operation``."""

from __future__ import annotations

import uuid

from groupd.api.context import AppContext
from groupd.services import operations
from groupd.services.common import Actor


async def wait_for_operation(
    ctx: AppContext, *, actor: Actor, operation_uuid: uuid.UUID, budget_seconds: float
) -> operations.OperationView:
    """The operation once finished, or as it stands when the budget runs out."""
    return await operations.wait_for_operation(
        ctx.db,
        actor=actor,
        operation_uuid=operation_uuid,
        budget_seconds=budget_seconds,
        now=ctx.clock,
    )
