"""Waiting, inside a request, for an accepted operation to finish (within a budget)."""

from __future__ import annotations

import asyncio
import time
import uuid

from groupd.api.context import AppContext
from groupd.services import deletion
from groupd.services.common import Actor


async def wait_for_operation(
    ctx: AppContext, *, actor: Actor, operation_uuid: uuid.UUID, budget_seconds: float
) -> deletion.OperationView:
    """The operation once finished, or as it stands when the budget runs out."""
    deadline = time.monotonic() + budget_seconds
    pause = 0.01
    while True:
        view = await _read(ctx, actor, operation_uuid)
        if view.done or time.monotonic() >= deadline:
            return view
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 0.25)


async def _read(ctx: AppContext, actor: Actor, operation_uuid: uuid.UUID) -> deletion.OperationView:
    from starlette.concurrency import run_in_threadpool

    def read() -> deletion.OperationView:
        with ctx.db.unit_of_work(write=False) as uow:
            return deletion.get_operation(
                uow, actor=actor, operation_id=operation_uuid, now=ctx.clock()
            )

    return await run_in_threadpool(read)
