"""Restoring a subtree from the recycle bin: every conflict found at once, then the whole
subtree back in one transaction, or nothing (docs/decisions/0030).

A restore is accepted as an operation (``accept_restore``: the conflicts are checked then,
for a quick 409) and run by a worker (``run_restore``), which checks them again under the
locks it takes: a name taken or units consumed since is a 409 result, nothing changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from groupd.errors import Conflict, InvalidInput, RestoreConflict
from groupd.services import audit, operations, recycle_bin
from groupd.services.common import Actor
from groupd.services.progress import Progress
from groupd.store import recycle_bin as bin_store
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, BinEntry, DirectoryObject, Group, Membership, Operation
from groupd.store.tree import child_path
from groupd.values import clean_name

RESTORE_KIND = recycle_bin.RESTORE_KIND


@dataclass(frozen=True, slots=True)
class Conflicts:
    """Every reason a restore cannot go ahead, found at once (empty: it can)."""

    items: list[dict[str, Any]]

    def error(self, name: str) -> RestoreConflict:
        kinds = sorted({item["kind"] for item in self.items})
        return RestoreConflict(
            f"cannot restore '{name}': {', '.join(kinds)} (see conflicts)",
            conflicts=self.items,
        )


# restoring ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RestoreTarget:
    """Where the root goes back to: its parent (None for a root) and name."""

    parent: Group | None
    name: str


def _target(
    uow: UnitOfWork,
    *,
    tenant_id: int,
    root: Group,
    parent_uuid: UUID | None,
    name: str | None,
    conflicts: list[dict[str, Any]],
) -> RestoreTarget:
    new_name = clean_name(name) if name is not None else root.name
    if parent_uuid is None and root.parent_id is None:
        return RestoreTarget(None, new_name)
    query = select(Group).where(Group.tenant_id == tenant_id)
    if parent_uuid is not None:
        query = query.where(Group.uuid == parent_uuid)
    else:
        query = query.where(Group.id == root.parent_id)
    parent = uow.session.execute(query.with_for_update()).scalar_one_or_none()
    if parent is None or parent.state != "live":
        gone: dict[str, Any] = {"kind": "parent_gone"}
        if parent_uuid is not None:
            gone["parentId"] = str(parent_uuid)
            gone["detail"] = "the given parent is not a live group: give another parentId"
        else:
            gone["parentId"] = str(parent.uuid) if parent is not None else None
            gone["detail"] = "the original parent is not live: give parentId"
        conflicts.append(gone)
        return RestoreTarget(None, new_name)
    if parent.kind != root.kind:
        raise InvalidInput(
            f"a {root.kind} group cannot live under a {parent.kind} group", field="parentId"
        )
    return RestoreTarget(parent, new_name)


def find_conflicts(
    uow: UnitOfWork,
    *,
    entry: BinEntry,
    root: Group,
    parent_uuid: UUID | None = None,
    name: str | None = None,
) -> tuple[RestoreTarget, Conflicts]:
    """Every reason the subtree cannot come back now, in a few set-based queries:
    its parent is not live, a live group holds the root's name among its new siblings or
    the name of one of its user or policy groups, a licence lacks the units to take back.
    Locks the parent and the licences, so that what it found holds until commit."""
    items: list[dict[str, Any]] = []
    target = _target(
        uow,
        tenant_id=entry.tenant_id,
        root=root,
        parent_uuid=parent_uuid,
        name=name,
        conflicts=items,
    )
    session = uow.session
    if target.parent is not None:
        sibling = session.execute(
            select(Group.uuid).where(
                Group.tenant_id == entry.tenant_id,
                Group.parent_id == target.parent.id,
                Group.name == target.name,
                Group.state == LIVE,
            )
        ).first()
        if sibling is not None:
            items.append(_name_taken(root.uuid, target.name, root.kind, sibling[0]))
    binned = aliased(Group)
    # The root with the name it comes back with; the rest of the subtree as it was.
    taken = session.execute(
        select(binned.uuid, binned.id, binned.kind, binned.name, Group.uuid)
        .join(
            Group,
            (Group.tenant_id == binned.tenant_id)
            & (Group.kind == binned.kind)
            & (Group.state == LIVE),
        )
        .where(
            binned.operation_id == entry.operation_id,
            binned.tenant_id == entry.tenant_id,
            binned.state == "deleted",
            binned.kind.in_(("user", "policy")),
            Group.name == _restored_name(binned, root=root, name=target.name),
        )
        .order_by(binned.depth, binned.id)
    ).all()
    for binned_uuid, _key, kind, binned_group_name, holder in taken:
        shown = target.name if binned_uuid == root.uuid else binned_group_name
        items.append(_name_taken(binned_uuid, shown, kind, holder))
    if entry.released:
        wanted = {int(item["key"]): int(item["units"]) for item in entry.units}
        for licence in bin_store.lock_licences(uow, licence_ids=list(wanted)):
            free = licence.total_units - licence.used_units
            needed = wanted[licence.id]
            if needed > free:
                items.append(
                    {
                        "kind": "units_unavailable",
                        "licenceId": str(licence.uuid),
                        "product": licence.product,
                        "needed": needed,
                        "free": free,
                    }
                )
    return target, Conflicts(items)


def _restored_name(binned: Any, *, root: Group, name: str) -> Any:
    return case((binned.id == root.id, name), else_=binned.name)


def _name_taken(group_uuid: UUID, name: str, kind: str, holder: UUID) -> dict[str, Any]:
    return {
        "kind": "name_taken",
        "groupId": str(group_uuid),
        "groupKind": kind,
        "name": name,
        "takenBy": str(holder),
    }


@dataclass(frozen=True, slots=True)
class Restored:
    """What a restore brought back."""

    group_uuid: UUID
    counts: dict[str, int]
    units_taken: int
    memberships_not_restored: int

    def as_result(self) -> dict[str, Any]:
        return {
            "groupId": str(self.group_uuid),
            "restored": self.counts,
            "unitsTaken": self.units_taken,
            "membershipsToGroupsNotLive": self.memberships_not_restored,
        }


def restore(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | UUID,
    parent_uuid: UUID | None = None,
    name: str | None = None,
    now: datetime,
) -> Restored:
    """Bring a subtree back from the bin: the same rows, live again, the units its delete
    gave back consumed again; or RestoreConflict naming every conflict, nothing changed.

    One transaction (docs/decisions/0030): the groups come back with one UPDATE (and a
    second one rewriting paths when ``parent_uuid`` moves the root), the activations and
    the licences with one UPDATE each. A live name taken between the check and the
    UPDATE (a create racing this restore) is caught by the unique indexes, and the
    conflicts are looked for again."""
    actor.require("editor")
    entry, root, _parent = recycle_bin.find_entry(
        uow, tenant_id=actor.tenant_id, group_id=group_id, lock=True
    )
    return _restore_entry(
        uow, actor=actor, entry=entry, root=root, parent_uuid=parent_uuid, name=name, now=now
    )


def _restore_entry(
    uow: UnitOfWork,
    *,
    actor: Actor,
    entry: BinEntry,
    root: Group,
    parent_uuid: UUID | None,
    name: str | None,
    now: datetime,
) -> Restored:
    target, conflicts = find_conflicts(
        uow, entry=entry, root=root, parent_uuid=parent_uuid, name=name
    )
    if conflicts.items:
        raise conflicts.error(root.name)
    session = uow.session
    not_live = _memberships_to_groups_not_live(uow, entry=entry)
    taken = 0
    try:
        with session.begin_nested():
            if entry.released:
                taken_back = {int(item["key"]): int(item["units"]) for item in entry.units}
                bin_store.add_used_units(uow, taken_back)
                taken = sum(taken_back.values())
            _put_back(uow, entry=entry, root=root, target=target, now=now)
    except IntegrityError:
        # A live group took a name after the check (a create racing this restore).
        _target_again, again = find_conflicts(
            uow, entry=entry, root=root, parent_uuid=parent_uuid, name=name
        )
        if not again.items:
            again = Conflicts(
                [{"kind": "name_taken", "groupId": str(root.uuid), "name": target.name}]
            )
        raise again.error(root.name) from None
    counts = {kind: int(entry.counts.get(kind, 0)) for kind in recycle_bin.COUNTED}
    session.execute(delete(BinEntry).where(BinEntry.id == entry.id))
    result = Restored(root.uuid, counts, taken, not_live)
    audit.record_event(
        uow,
        actor=actor,
        action="group.restore",
        target_type="group",
        target_uuid=root.uuid,
        target_name=target.name,
        outcome="succeeded",
        counts=result.as_result(),
        now=now,
    )
    return result


def _put_back(
    uow: UnitOfWork, *, entry: BinEntry, root: Group, target: RestoreTarget, now: datetime
) -> None:
    session = uow.session
    if target.parent is not None and target.parent.id != root.parent_id:
        bin_store.rewrite_subtree_paths(
            uow,
            tenant_id=entry.tenant_id,
            old_prefix=root.path,
            new_prefix=child_path(target.parent.path, root.id),
            depth_shift=target.parent.depth + 1 - root.depth,
        )
    changes: dict[str, Any] = {}
    if target.parent is not None and target.parent.id != root.parent_id:
        changes["parent_id"] = target.parent.id
    if target.name != root.name:
        changes["name"] = target.name
    if changes:
        session.execute(
            update(Group)
            .where(Group.id == root.id)
            .values(**changes, version=Group.version + 1, updated_at=now)
            .execution_options(synchronize_session=False)
        )
    session.execute(
        update(Group)
        .where(
            Group.operation_id == entry.operation_id,
            Group.tenant_id == entry.tenant_id,
            Group.state == "deleted",
        )
        .values(state="live", operation_id=None)
        .execution_options(synchronize_session=False)
    )


def _memberships_to_groups_not_live(uow: UnitOfWork, *, entry: BinEntry) -> int:
    """Memberships of the subtree's users in user groups that are not live (in the bin
    themselves, or being removed): they come back with those groups, not with this.

    Read in the restore's write, so only its users' are looked at: a subtree the entry
    says holds none (nothing adds a user to a hidden group) is not read at all, and
    devices are passed over in the index instead of probed in the memberships."""
    if recycle_bin.is_counted(entry) and not int(entry.counts.get("users", 0)):
        return 0
    home = aliased(Group)
    of_group = aliased(Group)
    return int(
        uow.session.execute(
            select(func.count())
            .select_from(Membership)
            .join(DirectoryObject, DirectoryObject.id == Membership.object_id)
            .join(home, home.id == DirectoryObject.home_group_id)
            .join(of_group, of_group.id == Membership.group_id)
            .where(
                home.operation_id == entry.operation_id,
                home.tenant_id == entry.tenant_id,
                DirectoryObject.kind == "user",
                of_group.state != LIVE,
                of_group.operation_id != entry.operation_id,
            )
        ).scalar_one()
    )


# a restore as an operation -------------------------------------------------------------
def accept_restore(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | UUID,
    parent_uuid: UUID | None = None,
    name: str | None = None,
    now: datetime,
) -> recycle_bin.Accepted:
    """Check a restore now (RestoreConflict names every conflict at once) and accept it
    as an operation, which the worker runs (``run_restore``): a client waits for it as
    for a delete."""
    actor.require("editor")
    entry, root, _parent = recycle_bin.find_entry(
        uow, tenant_id=actor.tenant_id, group_id=group_id, lock=True
    )
    if entry.restore_operation_id is not None:
        raise Conflict(f"a restore of '{root.name}' is already under way", code="restore_pending")
    recycle_bin.refuse_while_binning(uow, entry=entry, root=root)
    _target, conflicts = find_conflicts(
        uow, entry=entry, root=root, parent_uuid=parent_uuid, name=name
    )
    if conflicts.items:
        raise conflicts.error(root.name)
    operation = operations.accept(
        uow,
        actor=actor,
        kind=RESTORE_KIND,
        target_uuid=root.uuid,
        target_name=root.name,
        params={
            "parentId": str(parent_uuid) if parent_uuid is not None else None,
            "name": name,
        },
        now=now,
    )
    # Progress per kind from the start: what the restore brings back, none of it yet.
    progress = Progress()
    for kind in recycle_bin.COUNTED:
        progress.tally(kind).total = int(entry.counts.get(kind, 0))
    operation.progress = progress.to_record()
    entry.restore_operation_id = operation.id
    return recycle_bin.Accepted(operation.uuid, root.uuid)


def run_restore(uow: UnitOfWork, *, operation: Operation, now: datetime) -> recycle_bin.Outcome:
    """The accepted restore ``operation``, whole, in the caller's transaction. A conflict
    that arose since it was accepted ends it with a 409 answer, nothing changed."""
    entry = uow.session.execute(
        select(BinEntry).where(BinEntry.restore_operation_id == operation.id).with_for_update()
    ).scalar_one_or_none()
    if entry is None:
        body = {"code": "not_found", "detail": f"'{operation.target_name}' is no longer in the bin"}
        return recycle_bin.Outcome(404, body, Progress())
    root = uow.session.get(Group, entry.group_id)
    assert root is not None
    actor = recycle_bin.operation_actor(operation)
    params = operation.params or {}
    parent = params.get("parentId")
    try:
        with uow.session.begin_nested():
            restored = _restore_entry(
                uow,
                actor=actor,
                entry=entry,
                root=root,
                parent_uuid=UUID(parent) if parent else None,
                name=params.get("name"),
                now=now,
            )
    except RestoreConflict as refused:
        entry.restore_operation_id = None
        body = {"code": refused.code, "detail": refused.detail, **refused.extra}
        return recycle_bin.Outcome(409, body, Progress())
    progress = recycle_bin.done_progress(restored.counts)
    return recycle_bin.Outcome(200, restored.as_result(), progress)
