"""The recycle bin's operations that are one transaction each: what a delete to the bin
does after phase 1 (count the subtree, give the units back when asked), and a restore
(decision 0030). The worker runs them as a single step of ``run_delete_chunk``."""

from __future__ import annotations

from datetime import datetime

from groupd.services import recycle_bin, restore
from groupd.services.deletion.impact import measure_impact
from groupd.services.operations import DELETE_KIND
from groupd.store.db import UnitOfWork
from groupd.store.models import Operation


def is_whole(operation: Operation) -> bool:
    """Whether ``operation`` is one of the bin's one-transaction operations."""
    params = operation.params or {}
    return operation.kind == recycle_bin.RESTORE_KIND or (
        operation.kind == DELETE_KIND and bool(params.get("bin"))
    )


def run_whole(uow: UnitOfWork, *, operation: Operation, now: datetime, ttl_seconds: int) -> None:
    """Run a delete to the bin or a restore, whole, in the caller's transaction (whose
    lease the caller has renewed), and finish the operation with its result."""
    if operation.kind == recycle_bin.RESTORE_KIND:
        outcome = restore.run_restore(uow, operation=operation, now=now)
        action = None  # the restore records its own event
    else:
        release = bool((operation.params or {}).get("releaseConsumedUnits"))
        impact = measure_impact(
            uow, tenant_id=operation.tenant_id, operation_id=operation.id, release_units=release
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
        outcome = recycle_bin.run_binned_delete(
            uow, operation=operation, counts=counts, licences=licences, now=now
        )
        action = "group.delete.succeeded"
    recycle_bin.finish_operation(
        uow, operation=operation, outcome=outcome, action=action, now=now, ttl_seconds=ttl_seconds
    )
