"""The recycle bin's operations that are one transaction each: what a delete to the bin
does after phase 1 (give the units back when asked, with the entry's counts), and a
restore (decision 0030). The worker runs them as a single step of ``run_delete_chunk``.

A delete to the bin counts its subtree first, in a snapshot of its own
(``count_contents``, run by ``deletion.totals`` before the step): the count reads the
whole subtree, and on SQLite a write transaction would hold every other writer for as
long (decision 0031). The step then only writes: the licences, the entry, the operation.
"""

from __future__ import annotations

from datetime import datetime

from groupd.services import operations, recycle_bin, restore
from groupd.services.deletion.impact import measure_impact
from groupd.services.operations import DELETE_KIND
from groupd.store.db import UnitOfWork
from groupd.store.models import Operation


def is_whole(operation: Operation) -> bool:
    """Whether ``operation`` is one of the bin's one-transaction operations."""
    return operation.kind == recycle_bin.RESTORE_KIND or is_binned_delete(operation)


def is_binned_delete(operation: Operation) -> bool:
    """Whether ``operation`` is a delete to the bin."""
    return operation.kind == DELETE_KIND and bool((operation.params or {}).get("bin"))


def needs_count(uow: UnitOfWork, *, operation_id: int) -> bool:
    """Whether ``operation_id`` is an unfinished delete to the bin whose entry lacks its
    contents (``count_contents``)."""
    operation = operations.unfinished(uow, operation_id=operation_id)
    if operation is None or not is_binned_delete(operation):
        return False
    entry = recycle_bin.binned_entry(uow, operation_id=operation_id, lock=False)
    return entry is not None and not recycle_bin.is_counted(entry)


def count_contents(
    uow: UnitOfWork, *, operation_id: int
) -> tuple[dict[str, int], list[recycle_bin.BinUnits]]:
    """What the subtree a delete to the bin hid holds: counts per kind, and the units its
    activations hold per licence. Reads the whole subtree; takes no lock."""
    operation = uow.session.get(Operation, operation_id)
    assert operation is not None
    impact = measure_impact(
        uow,
        tenant_id=operation.tenant_id,
        operation_id=operation_id,
        release_units=bool((operation.params or {}).get("releaseConsumedUnits")),
    )
    counts = {
        "groups": impact.group_total,
        "devices": impact.devices,
        "users": impact.users,
        "memberships": impact.memberships,
        "activations": impact.activations,
    }
    licences = [
        recycle_bin.BinUnits(
            item.licence_uuid, item.product, item.unit_kind, item.activations, item.units
        )
        for item in impact.licences
    ]
    return counts, licences


def record_count(
    uow: UnitOfWork,
    *,
    operation_id: int,
    counted: tuple[dict[str, int], list[recycle_bin.BinUnits]],
) -> None:
    """Store what ``count_contents`` found in the delete's bin entry, unless it is there."""
    entry = recycle_bin.binned_entry(uow, operation_id=operation_id)
    if entry is not None:
        counts, licences = counted
        recycle_bin.record_contents(uow, entry=entry, counts=counts, licences=licences)


def run_whole(uow: UnitOfWork, *, operation: Operation, now: datetime, ttl_seconds: int) -> None:
    """Run a delete to the bin or a restore, whole, in the caller's transaction (whose
    lease the caller has renewed), and finish the operation with its result."""
    if operation.kind == recycle_bin.RESTORE_KIND:
        outcome = restore.run_restore(uow, operation=operation, now=now)
        action = None  # the restore records its own event
    else:
        entry = recycle_bin.binned_entry(uow, operation_id=operation.id)
        if entry is None:
            raise LookupError(f"operation {operation.uuid} has no bin entry")
        if not recycle_bin.is_counted(entry):
            # Not counted beside (that count failed, or the step runs without it): count
            # here, in the write.
            counts, licences = count_contents(uow, operation_id=operation.id)
            recycle_bin.record_contents(uow, entry=entry, counts=counts, licences=licences)
        outcome = recycle_bin.run_binned_delete(uow, operation=operation, entry=entry)
        action = "group.delete.succeeded"
    recycle_bin.finish_operation(
        uow, operation=operation, outcome=outcome, action=action, now=now, ttl_seconds=ttl_seconds
    )
