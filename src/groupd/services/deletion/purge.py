"""Phase 2 of a delete: removing the marked rows in bounded chunks, deepest first, and
keeping the licence books (decision 0004).

Each chunk is its own transaction that also records progress on the operation: a crash
between chunks loses nothing and repeats nothing. The statements that remove rows are the
store's (``groupd.store.deletion``); this module decides which groups go when, counts what
went, and gives released units back to their licences.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import aliased

from groupd.services import audit, operations, recycle_bin
from groupd.services.common import Actor
from groupd.services.deletion import binned
from groupd.services.progress import Progress
from groupd.services.webhooks import outbox
from groupd.store import deletion as store
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group, Operation

log = logging.getLogger("groupd.deletion")


@dataclass(frozen=True, slots=True)
class StepsLeft:
    """Where a chunk cut short for another writer stopped (SQLite): its groups, and the
    ends of the steps it had not taken. The next step of the same groups goes on from
    there instead of reading its objects' bounds again. The worker keeps it in memory
    only: lost, the bounds are read again; stale, a step is merely longer or shorter,
    since the steps always cover every id."""

    chunk: tuple[int, ...]
    bounds: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ChunkResult:
    finished: bool
    lost_lease: bool = False
    # Every group left has a child that another delete, accepted earlier inside this
    # subtree, still has to remove: that delete must run first.
    blocked: bool = False
    # The step ended inside a chunk because another writer waited (SQLite): where the
    # chunk's next step starts (None when it has to read its bounds again).
    steps_left: StepsLeft | None = None


def run_delete_chunk(
    uow: UnitOfWork,
    *,
    operation_id: int,
    worker_id: str,
    now: datetime,
    lease_seconds: float,
    chunk_groups: int,
    chunk_objects: int,
    result_ttl_seconds: int,
    step_objects: int | None = None,
    steps_left: StepsLeft | None = None,
) -> ChunkResult:
    """One bounded step of phase 2, in the caller's transaction.

    The step first renews this worker's lease; if another worker holds the operation now,
    it does nothing. Then it takes the deepest ``chunk_groups`` groups still marked that
    have no child left (``_select_chunk``), and removes their objects (at most
    ``chunk_objects`` in one step; a bigger chunk takes several steps), then their
    memberships, then the groups. The last step finishes the operation and writes the
    closing audit event.

    ``step_objects``: objects are removed that many at a time, and the chunk ends after
    any of these steps once another writer waits (``uow.writers_waiting``, SQLite): a
    small write waits for one step of the delete, not for a whole chunk.
    ``steps_left``, from the previous step's result, saves reading the bounds of a chunk
    cut short that way again.
    """
    uow.plan_by_index()
    operation = operations.renew_lease(
        uow,
        operation_id=operation_id,
        worker_id=worker_id,
        now=now,
        lease_seconds=lease_seconds,
    )
    if operation is None:
        return ChunkResult(finished=False, lost_lease=True)
    if binned.is_whole(operation):
        binned.run_whole(uow, operation=operation, now=now, ttl_seconds=result_ttl_seconds)
        return ChunkResult(finished=True)
    # A purge of a subtree whose delete gave its units back: its activations go, and the
    # books stay as they are (decision 0030).
    already = bool(operation.params.get("unitsReleased"))
    release = already or bool(operation.params.get("releaseConsumedUnits"))
    progress = Progress.from_record(operation.progress)
    chunk, adopted = _select_chunk(uow, operation_id=operation_id, chunk_groups=chunk_groups)
    if not chunk and not adopted:
        left = uow.session.execute(
            select(Group.id).where(Group.operation_id == operation_id).limit(1)
        ).first()
        if left is None:
            _finish(uow, operation=operation, progress=progress, now=now, ttl=result_ttl_seconds)
            return ChunkResult(finished=True)
        # Every group left has a child. A live one is taken along; if there is none, the
        # children belong to a delete accepted earlier inside this subtree, which has to
        # run first.
        adopted = _adopt_live_children(
            uow,
            operation_id=operation_id,
            parents=select(Group.id).where(Group.operation_id == operation_id),
        )
        if not adopted:
            return ChunkResult(finished=False, blocked=True)
    if adopted:
        progress.adopted += adopted
        if not chunk:
            # The groups taken along are picked, deepest first, by the next step.
            operations.save_progress(uow, operation_id=operation_id, progress=progress)
            return ChunkResult(finished=False)
    groups_left, objects_left = chunk_groups, chunk_objects
    next_steps: StepsLeft | None = None
    while chunk:
        removed, emptied, next_steps = _remove_chunk(
            uow,
            operation_id=operation_id,
            tenant_id=operation.tenant_id,
            chunk=chunk,
            objects_budget=objects_left,
            step_objects=objects_left if step_objects is None else step_objects,
            steps_left=steps_left,
            release=release,
            already=already,
            progress=progress,
            now=now,
        )
        objects_left -= removed
        if not emptied:
            break  # the next chunk goes on with the objects left in these groups
        groups_left -= len(chunk)
        if groups_left <= 0 or objects_left <= 0 or uow.writers_waiting():
            break
        # Only groups without children are taken, so the parents of the groups just
        # removed may be free now: top the step up with them, within the same bounds,
        # instead of leaving each level of the tree's last groups a step of its own.
        chunk, adopted = _select_chunk(uow, operation_id=operation_id, chunk_groups=groups_left)
        progress.adopted += adopted
    progress.chunks += 1
    operations.save_progress(uow, operation_id=operation_id, progress=progress)
    return ChunkResult(finished=False, steps_left=next_steps)


def _remove_chunk(
    uow: UnitOfWork,
    *,
    operation_id: int,
    tenant_id: int,
    chunk: list[int],
    objects_budget: int,
    step_objects: int,
    steps_left: StepsLeft | None,
    release: bool,
    already: bool,
    progress: Progress,
    now: datetime,
) -> tuple[int, bool, StepsLeft | None]:
    """Empty a chunk of groups, at most ``objects_budget`` objects of it, ``step_objects``
    at a time in key order, and remove the groups once they are empty. After each step
    but the last it stops early when another writer waits. Returns how many objects went,
    whether the groups went too, and where the chunk's next step starts when a writer
    cut it short (``StepsLeft``)."""
    if steps_left is not None and steps_left.chunk == tuple(chunk):
        bounds, whole = list(steps_left.bounds), True
    else:
        bounds, whole = store.step_bounds(
            uow, chunk=chunk, tenant_id=tenant_id, step=step_objects, budget=objects_budget
        )
    # Read once, not in every step: a chunk holds nothing but devices as a rule, and its
    # steps then need no count by kind and no probe of the memberships.
    devices_only = store.holds_devices_only(uow, chunk=chunk, tenant_id=tenant_id)
    removed = 0
    for taken, (lower, upper) in enumerate(zip((None, *bounds), (*bounds, None), strict=True)):
        step = store.remove_objects(
            uow,
            chunk=chunk,
            tenant_id=tenant_id,
            lower=lower,
            upper=upper,
            devices_only=devices_only,
            release=release,
            now=now,
        )
        _account(uow, step=step, release=release, already=already, progress=progress)
        removed += step.objects
        if upper is None:
            continue
        if removed >= objects_budget:
            return removed, False, None
        if uow.writers_waiting():
            # The bounds left hold for the next step only if they reach the chunk's
            # end (it fitted the budget); otherwise that step reads them again.
            left = StepsLeft(tuple(chunk), tuple(bounds[taken + 1 :])) if whole else None
            return removed, False, left
    memberships, groups = store.remove_groups(uow, chunk=chunk, operation_id=operation_id)
    progress.memberships.done += memberships
    progress.groups.done += groups
    return removed, True, None


def _account(
    uow: UnitOfWork, *, step: store.Removed, release: bool, already: bool, progress: Progress
) -> None:
    """Count what a step removed, and give the units of released activations back to
    their licences in the same transaction that removed them, in key order (concurrent
    chunks lock licences in the same order). ``already``: they went back when the
    subtree went to the recycle bin."""
    progress.devices.done += step.devices
    progress.users.done += step.users
    progress.memberships.done += step.memberships
    progress.activations.done += step.activations
    units = sum(step.units.values())
    if already:
        return
    if release:
        for licence_id in sorted(step.units):
            store.give_units_back(uow, licence_id=licence_id, units=step.units[licence_id])
            released = progress.units_by_licence.get(licence_id, 0) + step.units[licence_id]
            progress.units_by_licence[licence_id] = released
        progress.units_released += units
    else:
        progress.units_kept_consumed += units


def _select_chunk(
    uow: UnitOfWork, *, operation_id: int, chunk_groups: int
) -> tuple[list[int], int]:
    """The next groups to remove: the deepest of the operation's groups that have no
    child at all, locked, and re-checked for children once locked. Also returns how
    many live groups it found under them and took along.

    Why a chunk taken this way can be deleted without breaking the parent key, whatever
    runs beside it (PostgreSQL, READ COMMITTED; SQLite runs one writer at a time):

    - Selection: ``NOT EXISTS`` any child row, live, of this delete or of another one (a
      delete accepted earlier inside this subtree keeps its own marks, since phase 1
      marks live groups only, and its groups must go first). Probed by ``parent_id``
      through ``ix_groups_parent_id_tenant_id_id``; no test on the child's
      ``operation_id``, which made PostgreSQL probe the partial index on it instead
      (quadratic; decision 0004).
    - Locking: ``FOR UPDATE`` on the chosen rows. From the moment it is granted, no
      child can be added under them until this chunk commits: a create share-locks its
      parent and wants it live, a move locks its new parent and wants it live (both
      wait, then find the row gone and answer 404), and any other insert or update of a
      ``parent_id`` takes a key-share lock on the parent for its foreign-key check, which
      waits for this lock and then fails on the deleted parent. Phase 1 marking already
      refuses all of these for marked groups; the lock makes the chunk safe even for a
      writer that slipped past it.
    - The window between the selection's snapshot and the lock: a child committed in it
      (by such a writer) is invisible to the ``NOT EXISTS`` but not to a new statement,
      so the locked chunk is checked again with a fresh snapshot; a group that gained a
      child leaves this chunk (it is taken later, after the child), and a live child is
      taken along (marked for this delete) as before.
    """
    session = uow.session
    child = aliased(Group)
    has_child = select(child.id).where(child.parent_id == Group.id).exists()
    chunk = list(
        session.execute(
            select(Group.id)
            .where(Group.operation_id == operation_id, ~has_child)
            .order_by(Group.depth.desc(), Group.id)
            .limit(chunk_groups)
            .with_for_update(of=Group)
        ).scalars()
    )
    if not chunk:
        return chunk, 0
    parents = set(
        session.execute(select(Group.parent_id).where(Group.parent_id.in_(chunk))).scalars()
    )
    if not parents:
        return chunk, 0
    log.warning(
        "delete %s: %s group(s) of the chunk gained a child after selection; they wait",
        operation_id,
        len(parents),
    )
    adopted = _adopt_live_children(uow, operation_id=operation_id, parents=list(parents))
    return [group_id for group_id in chunk if group_id not in parents], adopted


def _adopt_live_children(uow: UnitOfWork, *, operation_id: int, parents: Any) -> int:
    """Mark for this delete the live groups found under ``parents`` (ids or a subquery).

    A live group under a group of this delete breaks invariant 1; phase 1's marking is
    meant to make that impossible, but if a race still lets one in, the delete takes it
    along (it is inside the subtree) and removes it, deepest first, in a later step.
    """
    adopted = uow.session.execute(
        update(Group)
        .where(Group.parent_id.in_(parents), Group.state == LIVE)
        .values(state="deleting", operation_id=operation_id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if adopted:
        log.warning("delete %s took along %s live group(s) found under it", operation_id, adopted)
    return int(adopted)


def _finish(
    uow: UnitOfWork, *, operation: Operation, progress: Progress, now: datetime, ttl: int
) -> None:
    progress.close()
    result = {
        "operationId": str(operation.uuid),
        "groupId": str(operation.target_uuid),
        "deleted": {
            "groups": progress.groups.done,
            "devices": progress.devices.done,
            "users": progress.users.done,
            "memberships": progress.memberships.done,
            "activations": progress.activations.done,
        },
        "releaseConsumedUnits": bool(operation.params.get("releaseConsumedUnits")),
        "unitsReleased": progress.units_released,
        "unitsKeptConsumed": progress.units_kept_consumed,
    }
    operations.succeed(uow, operation=operation, progress=progress, result=result, now=now, ttl=ttl)
    recycle_bin.close_purged(uow, operation_id=operation.id)
    actor = Actor(
        tenant_id=operation.tenant_id,
        account_id=None,
        username=operation.actor,
        role="admin",
        request_id=operation.request_id,
        source=operation.source,
    )
    released = outbox.released_units(uow, units_by_licence=progress.units_by_licence)
    audit.record_event(
        uow,
        actor=actor,
        action="group.purge"
        if operation.kind == recycle_bin.PURGE_KIND
        else "group.delete.succeeded",
        target_type="group",
        target_uuid=operation.target_uuid,
        target_name=operation.target_name,
        outcome="succeeded",
        counts=result,
        detail=f"operation {operation.uuid}",
        now=now,
        event_data={"operationId": str(operation.uuid), "unitsByLicence": released},
    )
    # One event per licence, however many devices gave units back.
    outbox.emit_units_released(
        uow,
        actor=actor,
        released=released,
        now=now,
        event_data={"operationId": str(operation.uuid), "groupId": str(operation.target_uuid)},
    )
