"""Operations: the durable record of accepted long work (a delete's phase 2), and every
rule of its life.

An operation is ``accepted``, then ``running`` under a worker's lease, then
``succeeded`` or ``failed``. Workers claim one with ``SELECT ... FOR UPDATE SKIP
LOCKED`` and a lease they renew in every step's transaction; a killed worker's operations
are taken over when its lease runs out, or at once by a worker on the same host that sees
the claimer's process is gone. ``failed`` is for bugs: a transient database refusal
hands the operation back instead (``release``), and a failed one can be resumed. A
finished operation's result is kept for a while (``expires_at``), then forgotten.

The ESET dialect answers a slow delete with 202 and a ``response-id``; the result is
collected once with it (``collect``). The dialect translates; the rules are here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any
from uuid import UUID

import anyio.to_thread
from sqlalchemy import delete, or_, select, update

from groupd.errors import Conflict, InvalidInput, NotFound
from groupd.services import audit
from groupd.services.common import Actor, check_limit, new_uuid, parse_uuid, system_actor
from groupd.services.progress import Progress
from groupd.store.db import Database, UnitOfWork
from groupd.store.models import OPERATION_STATES, Operation

DELETE_KIND = "delete_group"
# The audit action of each kind of operation, for its ".failed" and ".resumed" events.
AUDIT_ACTIONS = {DELETE_KIND: "group.delete"}
FINISHED = ("succeeded", "failed")
UNFINISHED = ("accepted", "running")


@dataclass(frozen=True, slots=True)
class OperationView:
    id: int
    uuid: UUID
    kind: str
    state: str
    target_uuid: UUID
    target_name: str
    params: dict[str, Any]
    progress: Progress
    result_status: int | None
    result_body: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None

    @property
    def done(self) -> bool:
        return self.state in FINISHED

    @property
    def release_units(self) -> bool:
        return bool(self.params.get("releaseConsumedUnits"))


def _view(op: Operation) -> OperationView:
    return OperationView(
        op.id,
        op.uuid,
        op.kind,
        op.state,
        op.target_uuid,
        op.target_name,
        op.params or {},
        Progress.from_record(op.progress),
        op.result_status,
        op.result_body,
        op.created_at,
        op.started_at,
        op.finished_at,
        op.expires_at,
    )


# accepting and reading ----------------------------------------------------------------
def accept(
    uow: UnitOfWork,
    *,
    actor: Actor,
    kind: str,
    target_uuid: UUID,
    target_name: str,
    params: dict[str, Any],
    now: datetime,
) -> Operation:
    """Write a new ``accepted`` operation (flushed: its key is known) for a worker to run."""
    operation = Operation(
        uuid=new_uuid(),
        tenant_id=actor.tenant_id,
        kind=kind,
        target_uuid=target_uuid,
        target_name=target_name,
        params=params,
        state="accepted",
        progress={},
        actor=actor.username,
        request_id=actor.request_id or "",
        source=actor.source,
        attempts=0,
        created_at=now,
    )
    uow.session.add(operation)
    uow.session.flush()
    return operation


def _find(uow: UnitOfWork, *, actor: Actor, operation_id: str | UUID, now: datetime) -> Operation:
    key = (
        operation_id
        if isinstance(operation_id, UUID)
        else parse_uuid(operation_id, what="operation")
    )
    op = uow.session.execute(
        select(Operation).where(Operation.uuid == key, Operation.tenant_id == actor.tenant_id)
    ).scalar_one_or_none()
    if op is None or (op.expires_at is not None and op.expires_at <= now):
        raise NotFound(f"no operation '{operation_id}'")
    return op


def get_operation(
    uow: UnitOfWork, *, actor: Actor, operation_id: str | UUID, now: datetime
) -> OperationView:
    """An operation of the tenant; finished ones disappear once their result expires."""
    return _view(_find(uow, actor=actor, operation_id=operation_id, now=now))


def list_operations(
    uow: UnitOfWork, *, actor: Actor, state: str | None = None, limit: int = 100, now: datetime
) -> list[OperationView]:
    """The tenant's operations whose results are still kept, newest first (``state``:
    only those in it; ``limit``: at most that many)."""
    check_limit(limit)
    if state is not None and state not in OPERATION_STATES:
        raise InvalidInput(f"state must be one of {', '.join(OPERATION_STATES)}", field="state")
    query = select(Operation).where(
        Operation.tenant_id == actor.tenant_id,
        or_(Operation.expires_at.is_(None), Operation.expires_at > now),
    )
    if state is not None:
        query = query.where(Operation.state == state)
    rows = uow.session.execute(query.order_by(Operation.id.desc()).limit(limit)).scalars()
    return [_view(op) for op in rows]


async def wait_for_operation(
    db: Database,
    *,
    actor: Actor,
    operation_uuid: UUID,
    budget_seconds: float,
    now: Callable[[], datetime],
) -> OperationView:
    """The operation once finished, or as it stands when ``budget_seconds`` run out.
    Each look is a read unit of its own, off the event loop."""

    def read() -> OperationView:
        with db.unit_of_work(write=False) as uow:
            return get_operation(uow, actor=actor, operation_id=operation_uuid, now=now())

    deadline = time.monotonic() + budget_seconds
    pause = 0.01
    while True:
        view = await anyio.to_thread.run_sync(read)
        if view.done or time.monotonic() >= deadline:
            return view
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 2, 0.25)


# the ESET dialect's response-id --------------------------------------------------------
def record_answer(uow: UnitOfWork, *, operation_uuid: UUID, finished: bool, now: datetime) -> None:
    """Remember what a client was told after its wait: a finished result handed over now
    is collected (nothing is left to collect with the response-id); otherwise the time
    it was first told to come back later, from which its polling window runs."""
    if finished:
        mark_collected(uow, operation_uuid=operation_uuid, now=now)
        return
    uow.session.execute(
        update(Operation)
        .where(Operation.uuid == operation_uuid, Operation.first_pending_at.is_(None))
        .values(first_pending_at=now)
    )


def mark_collected(uow: UnitOfWork, *, operation_uuid: UUID, now: datetime) -> bool:
    """Hand a finished result over once; False when it was already collected."""
    result = uow.session.execute(
        update(Operation)
        .where(Operation.uuid == operation_uuid, Operation.collected_at.is_(None))
        .values(collected_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


class Collected(Enum):
    """What a resend with a response-id gets."""

    PENDING = "pending"  # still running: come back later
    FINISHED = "finished"  # the result, handed over now and never again
    TIMED_OUT = "timed_out"  # the polling window is over


@dataclass(frozen=True, slots=True)
class Collection:
    outcome: Collected
    view: OperationView


def collect(
    uow: UnitOfWork,
    *,
    actor: Actor,
    operation_uuid: UUID,
    kind: str,
    target_uuid: UUID,
    params: dict[str, Any],
    now: datetime,
    poll_timeout_seconds: float,
    uncollected_ttl_seconds: float,
) -> Collection:
    """Collect the result of an operation by its response-id, once.

    The resend must be the same request (``kind``, target and ``params`` equal), or
    there is nothing to collect (NotFound). A finished result is handed over once, and
    only within ``uncollected_ttl_seconds`` of its end; a running one answers PENDING
    until ``poll_timeout_seconds`` after the client was first told to come back, then
    TIMED_OUT.
    """
    op = _find(uow, actor=actor, operation_id=operation_uuid, now=now)
    stored = op.params or {}
    identical = (
        op.kind == kind
        and op.target_uuid == target_uuid
        and all(bool(stored.get(name)) == bool(value) for name, value in params.items())
    )
    if not identical:
        raise NotFound(f"no pending result '{operation_uuid}' for this request")
    if op.collected_at is not None:
        raise NotFound(f"the result of '{operation_uuid}' was already collected")
    view = _view(op)
    if view.done:
        assert op.finished_at is not None
        kept_until = op.finished_at + timedelta(seconds=uncollected_ttl_seconds)
        if now >= kept_until or not mark_collected(uow, operation_uuid=operation_uuid, now=now):
            raise NotFound(f"the result of '{operation_uuid}' is no longer kept")
        return Collection(Collected.FINISHED, view)
    first_pending = op.first_pending_at or op.created_at
    if now >= first_pending + timedelta(seconds=poll_timeout_seconds):
        return Collection(Collected.TIMED_OUT, view)
    return Collection(Collected.PENDING, view)


# workers: claim, lease, progress, finish ----------------------------------------------
def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim(
    uow: UnitOfWork, *, worker_id: str, host: str, now: datetime, lease_seconds: float
) -> int | None:
    """Claim the oldest claimable operation for ``worker_id`` (of ``host``): one not
    leased, or whose lease ran out, or held by a dead process of this host. Its key, or
    None when there is none."""
    claimable = or_(Operation.lease_until.is_(None), Operation.lease_until < now)
    row = uow.session.execute(
        select(Operation.id)
        .where(Operation.state.in_(UNFINISHED), claimable)
        .order_by(Operation.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    operation_id = row[0] if row else _orphan_of_dead_local_worker(uow, host=host)
    if operation_id is None:
        return None
    uow.session.execute(
        update(Operation)
        .where(Operation.id == operation_id)
        .values(
            state="running",
            claimed_by=worker_id,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=Operation.attempts + 1,
        )
    )
    uow.session.execute(
        update(Operation)
        .where(Operation.id == operation_id, Operation.started_at.is_(None))
        .values(started_at=now)
    )
    return int(operation_id)


def _orphan_of_dead_local_worker(uow: UnitOfWork, *, host: str) -> int | None:
    rows = uow.session.execute(
        select(Operation.id, Operation.claimed_by)
        .where(Operation.state == "running", Operation.claimed_by.like(f"{host}:%"))
        .order_by(Operation.id)
        .with_for_update(skip_locked=True)
    ).all()
    for operation_id, claimed_by in rows:
        try:
            pid = int(str(claimed_by).split(":")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _process_alive(pid):
            return int(operation_id)
    return None


def renew_lease(
    uow: UnitOfWork, *, operation_id: int, worker_id: str, now: datetime, lease_seconds: float
) -> Operation | None:
    """Extend this worker's lease for the rest of the step's transaction: the operation,
    or None when another worker holds it now (the step then does nothing)."""
    renewed = uow.session.execute(
        update(Operation)
        .where(
            Operation.id == operation_id,
            Operation.claimed_by == worker_id,
            Operation.state == "running",
        )
        .values(lease_until=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    if renewed.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return uow.session.execute(select(Operation).where(Operation.id == operation_id)).scalar_one()


def held_by(uow: UnitOfWork, *, operation_id: int, worker_id: str) -> Operation | None:
    """The operation, locked, if ``worker_id`` still holds its lease."""
    return uow.session.execute(
        select(Operation)
        .where(Operation.id == operation_id, Operation.claimed_by == worker_id)
        .with_for_update()
    ).scalar_one_or_none()


def unfinished(uow: UnitOfWork, *, operation_id: int) -> Operation | None:
    """The operation if it still has work to do."""
    operation = uow.session.get(Operation, operation_id)
    if operation is None or operation.state not in UNFINISHED:
        return None
    return operation


def save_progress(uow: UnitOfWork, *, operation_id: int, progress: Progress) -> None:
    """Store the progress, in the transaction of the step that made it."""
    uow.session.execute(
        update(Operation)
        .where(Operation.id == operation_id)
        .values(progress=progress.to_record())
        .execution_options(synchronize_session=False)
    )


def succeed(
    uow: UnitOfWork,
    *,
    operation: Operation,
    progress: Progress,
    result: dict[str, Any],
    now: datetime,
    ttl: int,
    status: int = 200,
) -> None:
    """Finish an operation: its result is kept ``ttl`` seconds, then forgotten. A
    ``status`` other than 200 is a refusal found when it ran (a restore's conflict):
    the operation completed, and changed nothing."""
    uow.session.execute(
        update(Operation)
        .where(Operation.id == operation.id)
        .values(
            state="succeeded",
            progress=progress.to_record(),
            result_status=status,
            result_body=result,
            finished_at=now,
            expires_at=now + timedelta(seconds=ttl),
            claimed_by=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )


def release(uow: UnitOfWork, *, operation_id: int, worker_id: str, not_before: datetime) -> None:
    """Give a running operation back, claimable by any worker from ``not_before`` on."""
    uow.session.execute(
        update(Operation)
        .where(
            Operation.id == operation_id,
            Operation.claimed_by == worker_id,
            Operation.state == "running",
        )
        .values(claimed_by=None, lease_until=not_before)
        .execution_options(synchronize_session=False)
    )


def fail(uow: UnitOfWork, *, operation_id: int, error: str, now: datetime, ttl: int) -> None:
    """Record that an operation cannot finish (a bug, never a client error or a busy
    database). What it marked stays as it is: hidden, kept for an operator to inspect
    and resume (``resume``)."""
    operation = uow.session.get(Operation, operation_id)
    if operation is None:
        return
    operation.state = "failed"
    operation.result_status = 500
    operation.result_body = {"error": error[:1000]}
    operation.finished_at = now
    operation.expires_at = now + timedelta(seconds=ttl)
    operation.claimed_by = None
    operation.lease_until = None
    audit.record_event(
        uow,
        actor=system_actor(operation.tenant_id, name=operation.actor),
        action=f"{AUDIT_ACTIONS.get(operation.kind, operation.kind)}.failed",
        target_type="group",
        target_uuid=operation.target_uuid,
        target_name=operation.target_name,
        outcome="failed",
        detail=error,
        now=now,
        event_data={"operationId": str(operation.uuid), "kind": operation.kind},
    )


def purge_expired(uow: UnitOfWork, *, now: datetime) -> int:
    """Forget finished operations whose result time is over."""
    result = uow.session.execute(
        delete(Operation).where(Operation.state.in_(FINISHED), Operation.expires_at <= now)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def resume(
    uow: UnitOfWork, *, actor: Actor, operation_id: str | UUID, now: datetime
) -> OperationView:
    """Accept a failed operation again, from where it stopped (admin).

    What it did stays done and counted; a worker takes it on from its next step. An
    operation that did not fail cannot be resumed (Conflict).
    """
    actor.require("admin")
    op = _find(uow, actor=actor, operation_id=operation_id, now=now)
    if op.state != "failed":
        raise Conflict(
            f"operation '{op.uuid}' is {op.state}; only a failed one can be resumed",
            code="operation_not_failed",
        )
    op.state = "accepted"
    op.result_status = None
    op.result_body = None
    op.finished_at = None
    op.expires_at = None
    op.claimed_by = None
    op.lease_until = None
    audit.record_event(
        uow,
        actor=actor,
        action=f"{AUDIT_ACTIONS.get(op.kind, op.kind)}.resumed",
        target_type="group",
        target_uuid=op.target_uuid,
        target_name=op.target_name,
        outcome="accepted",
        detail=f"operation {op.uuid}",
        now=now,
    )
    uow.session.flush()
    return _view(op)
