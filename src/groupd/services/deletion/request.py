"""Phase 1 of a delete: one short transaction that hides the subtree and accepts the
operation, or refuses and changes nothing (decision 0004).

The root is locked, every group of the subtree marked ``deleted`` (in the recycle bin,
decision 0030) or, for a delete that skips the bin, ``deleting`` (from then on no read
shows them and nothing can be created under them), the guards checked over that locked
set, the operation, the bin entry and the audit event written. A refusal raises, and the
caller's unit of work rolls all of it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from sqlalchemy import update

from groupd.services import audit, operations, recycle_bin
from groupd.services.common import Actor, Precondition, parse_uuid
from groupd.services.deletion.impact import (
    Impact,
    find_blockers,
    measure_impact,
    refusal,
    subtree_filter,
    survey_groups,
)
from groupd.services.deletion.policy import STANDARD, DeletePolicy
from groupd.services.group_views import find_group_view
from groupd.services.groups import check_version, lock_live_group
from groupd.services.progress import Progress
from groupd.services.webhooks.documents import group_document
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group
from groupd.store.tree import in_subtree

DELETE_KIND = operations.DELETE_KIND


@dataclass(frozen=True, slots=True)
class DeletePlan:
    """What ``request_delete`` decided: a dry-run impact, or an accepted operation."""

    group_uuid: UUID
    group_name: str
    impact: Impact
    operation_uuid: UUID | None
    dry_run: bool


def request_delete(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | UUID,
    release_units: bool,
    dry_run: bool = False,
    precondition: Precondition | None = None,
    policy: DeletePolicy = STANDARD,
    now: datetime,
    retention_seconds: int = 0,
    permanent: bool = False,
) -> DeletePlan:
    """Phase 1 of a delete, or its dry run, with the guards ``policy`` applies to the
    caller (``deletion.policy``).

    Dry run: the impact and blockers, nothing changed. Otherwise: the subtree is hidden
    and the operation accepted, or a DeleteRefused names every blocker and the caller's
    rollback leaves everything as it was. With ``retention_seconds`` (the installation's
    ``GROUPD_RETENTION_SECONDS``) the subtree goes to the recycle bin for that long,
    unless an admin asks for a ``permanent`` delete; with 0 it is removed at once.
    """
    actor.require("editor")
    to_bin = recycle_bin.goes_to_bin(
        actor, permanent=permanent, retention_seconds=retention_seconds
    )
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    root = lock_live_group(uow, tenant_id=actor.tenant_id, group_uuid=key)
    check_version(root, precondition)
    if dry_run:
        impact = measure_impact(
            uow,
            tenant_id=actor.tenant_id,
            path=root.path,
            release_units=release_units,
            policy=policy,
        )
        return DeletePlan(root.uuid, root.name, impact, None, True)
    operation = operations.accept(
        uow,
        actor=actor,
        kind=DELETE_KIND,
        target_uuid=root.uuid,
        target_name=root.name,
        params={"releaseConsumedUnits": release_units, "path": root.path},
        now=now,
    )
    _mark_subtree(
        uow,
        tenant_id=actor.tenant_id,
        path=root.path,
        operation_id=operation.id,
        state="deleted" if to_bin else "deleting",
    )
    in_tree = subtree_filter(tenant_id=actor.tenant_id, path=None, operation_id=operation.id)
    # Only the groups are counted here: phase 1 stays short however many objects the
    # subtree holds. The worker counts the rest (progress totals) beside its chunks.
    impact = Impact(release_units=release_units)
    impact.groups, flags = survey_groups(uow, in_tree=in_tree)
    blockers = find_blockers(session_uow=uow, in_tree=in_tree, flags=flags, policy=policy)
    if blockers:
        raise refusal(blockers, root.name)
    progress = Progress()
    progress.groups.total = impact.group_total
    operation.progress = progress.to_record()
    if to_bin:
        operation.params = {**operation.params, "bin": True}
        recycle_bin.open_entry(
            uow,
            actor=actor,
            root=root,
            operation=operation,
            release_units=release_units,
            retention_seconds=retention_seconds,
            now=now,
        )
    else:
        # A subtree binned earlier inside this one is purged first (its own operation).
        recycle_bin.purge_inside(
            uow, actor=actor, tenant_id=actor.tenant_id, path=root.path, now=now
        )
    audit.record_event(
        uow,
        actor=actor,
        action="group.delete.accepted",
        target_type="group",
        target_uuid=root.uuid,
        target_name=root.name,
        outcome="accepted",
        counts={"groups": impact.groups, "releaseConsumedUnits": release_units},
        detail=f"operation {operation.uuid}",
        now=now,
        # The subtree has vanished from every read: its root as it was, for subscribers.
        event_data={
            "group": group_document(
                find_group_view(uow, tenant_id=actor.tenant_id, group_id=root.id)
            ),
            "operationId": str(operation.uuid),
        },
    )
    return DeletePlan(root.uuid, root.name, impact, operation.uuid, False)


def _mark_subtree(
    uow: UnitOfWork, *, tenant_id: int, path: str, operation_id: int, state: str
) -> None:
    mark = (
        update(Group)
        .where(in_subtree(path, tenant_id=tenant_id), Group.state == LIVE)
        .values(state=state, operation_id=operation_id)
        .execution_options(synchronize_session=False)
    )
    # Under READ COMMITTED an UPDATE that waited for a row lock does not see the rows the
    # lock holder added: a create's child under a parent it held, a subtree a move put
    # under a new parent it held (and a create under that subtree, which a second
    # statement can meet the same way). A statement with a fresh snapshot sees them, so
    # mark until one finds nothing: then every live group of the range is marked and
    # locked here, and creates and moves arriving later find their parent gone (404).
    while uow.session.execute(mark).rowcount:  # type: ignore[attr-defined]
        pass
