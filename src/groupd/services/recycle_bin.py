"""The recycle bin: what a delete puts there, listing it, restoring it, purging it.

A delete hides its subtree at once (phase 1 marks its groups ``deleted``) and opens a bin
entry; its operation then counts what the subtree holds and, when asked, gives the units
its activations hold back to their licences. The activations stay as they are, and
remember their units. The rows stay until the entry's ``purge_at``: then, or when an
admin asks, a purge operation removes them (phase 2 of a delete, as before the bin). A
restore brings the whole subtree back with the same ids and takes the units again, in
one transaction, or names every conflict and changes nothing (docs/decisions/0030).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from groupd.errors import Conflict, InvalidInput, NotFound, RestoreConflict
from groupd.services import audit
from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    new_uuid,
    parse_uuid,
    system_actor,
)
from groupd.store import recycle_bin as bin_store
from groupd.store.db import UnitOfWork
from groupd.store.models import (
    LIVE,
    BinEntry,
    DirectoryObject,
    Group,
    Licence,
    Membership,
    Operation,
)
from groupd.store.tree import child_path, in_subtree
from groupd.values import clean_name

RESTORE_KIND = "restore_group"
PURGE_KIND = "purge_group"
COUNTED = ("groups", "devices", "users", "memberships", "activations")
PURGES_PER_PASS = 100


# views -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BinUnits:
    """Units of one licence that the subtree's activations held when it was deleted."""

    licence_uuid: UUID
    product: str
    unit_kind: str
    activations: int
    units: int


@dataclass(frozen=True, slots=True)
class BinEntryView:
    """A subtree in the bin, as the API shows it; ``uuid`` is its root's own id."""

    uuid: UUID
    name: str
    kind: str
    parent_uuid: UUID | None
    path_names: list[str]
    deleted_at: datetime
    deleted_by: str
    purge_at: datetime
    counts: dict[str, int]
    release_units: bool
    units: list[BinUnits]
    operation_uuid: UUID
    restoring: bool


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


@dataclass(frozen=True, slots=True)
class Accepted:
    """An operation accepted for a bin entry (a restore or a purge)."""

    operation_uuid: UUID
    group_uuid: UUID


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an operation run here ended: its answer's status and body."""

    status: int
    body: dict[str, Any]
    progress: dict[str, Any]


Parent = aliased(Group)


def _entry_units(entry: BinEntry) -> list[BinUnits]:
    return [
        BinUnits(
            UUID(item["licenceId"]),
            item["product"],
            item["unitKind"],
            int(item["activations"]),
            int(item["units"]),
        )
        for item in entry.units
    ]


def _view(entry: BinEntry, group: Group, parent_uuid: UUID | None) -> BinEntryView:
    return BinEntryView(
        uuid=entry.group_uuid,
        name=group.name,
        kind=group.kind,
        parent_uuid=parent_uuid,
        path_names=list(entry.path_names),
        deleted_at=entry.deleted_at,
        deleted_by=entry.deleted_by,
        purge_at=entry.purge_at,
        counts={kind: int(entry.counts.get(kind, 0)) for kind in COUNTED},
        release_units=entry.release_units,
        units=_entry_units(entry),
        operation_uuid=entry.operation_uuid,
        restoring=entry.restore_operation_id is not None,
    )


def _entries_query(tenant_id: int) -> Any:
    return (
        select(BinEntry, Group, Parent.uuid)
        .join(Group, Group.id == BinEntry.group_id)
        .outerjoin(Parent, Parent.id == Group.parent_id)
        .where(BinEntry.tenant_id == tenant_id, BinEntry.purging.is_(False))
    )


def list_entries(
    uow: UnitOfWork, *, actor: Actor, limit: int = 50, cursor: str | None = None
) -> Page:
    """The tenant's bin, newest first, a page at a time (keyset on the entry's key)."""
    check_limit(limit)
    after = decode_cursor(cursor)
    query = _entries_query(actor.tenant_id)
    if after:
        query = query.where(BinEntry.id < after)
    rows = uow.session.execute(query.order_by(BinEntry.id.desc()).limit(limit + 1)).all()
    items = [_view(entry, group, parent) for entry, group, parent in rows[:limit]]
    last_key = rows[limit - 1][0].id if len(rows) > limit else None
    return Page(items, encode_cursor(last_key) if last_key is not None else None)


def _find_entry(
    uow: UnitOfWork, *, tenant_id: int, group_id: str | UUID, lock: bool = False
) -> tuple[BinEntry, Group, UUID | None]:
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="deleted group")
    query = _entries_query(tenant_id).where(BinEntry.group_uuid == key)
    if lock:
        query = query.with_for_update(of=BinEntry)
    row = uow.session.execute(query).one_or_none()
    if row is None:
        raise NotFound(f"no deleted group '{group_id}'")
    return row[0], row[1], row[2]


def get_entry(uow: UnitOfWork, *, actor: Actor, group_id: str | UUID) -> BinEntryView:
    """One subtree of the tenant's bin, by its root's id; another tenant's is NotFound."""
    entry, group, parent = _find_entry(uow, tenant_id=actor.tenant_id, group_id=group_id)
    return _view(entry, group, parent)


# putting a subtree in the bin ---------------------------------------------------------
def goes_to_bin(actor: Actor, *, permanent: bool, retention_seconds: int) -> bool:
    """Whether a delete puts its subtree in the bin: every delete does while retention
    is on, but one an admin asks to be ``permanent``."""
    if permanent:
        actor.require("admin")
        return False
    return retention_seconds > 0


def open_entry(
    uow: UnitOfWork,
    *,
    actor: Actor,
    root: Group,
    operation: Operation,
    release_units: bool,
    retention_seconds: int,
    now: datetime,
) -> None:
    """Phase 1 of a delete to the bin: the entry of ``root``'s subtree, whose groups the
    caller has just marked ``deleted`` for ``operation``. Its counts come later, from the
    operation (``settle_binned_delete``)."""
    ancestors = [int(part) for part in root.path.strip("/").split("/")]
    names = dict(
        uow.session.execute(select(Group.id, Group.name).where(Group.id.in_(ancestors))).all()
    )
    uow.session.add(
        BinEntry(
            tenant_id=actor.tenant_id,
            group_id=root.id,
            group_uuid=root.uuid,
            operation_id=operation.id,
            operation_uuid=operation.uuid,
            path_names=[names[key] for key in ancestors if key in names],
            release_units=release_units,
            released=False,
            purging=False,
            counts={},
            units=[],
            deleted_at=now,
            deleted_by=actor.username,
            purge_at=now + timedelta(seconds=retention_seconds),
        )
    )
    uow.session.flush()


@dataclass(frozen=True, slots=True)
class Settled:
    """What a delete to the bin did once its operation ran."""

    counts: dict[str, int]
    units_released: int
    units_kept: int
    purge_at: datetime


def settle_binned_delete(
    uow: UnitOfWork,
    *,
    operation_id: int,
    counts: dict[str, int],
    licences: list[BinUnits],
    now: datetime,
) -> Settled:
    """The work of a delete to the bin after phase 1, in one transaction: the entry gets
    what the subtree holds (``counts`` and ``licences``, measured over its groups), and
    with ``releaseConsumedUnits`` the units its activations hold go back to their
    licences, one UPDATE per licence. The activations are left as they are."""
    entry = uow.session.execute(
        select(BinEntry).where(BinEntry.operation_id == operation_id).with_for_update()
    ).scalar_one()
    keys = _licence_keys(uow, [item.licence_uuid for item in licences])
    if entry.release_units and not entry.released:
        bin_store.add_used_units(uow, {keys[item.licence_uuid]: -item.units for item in licences})
        entry.released = True
    entry.counts = dict(counts)
    entry.units = [
        {
            "key": keys[item.licence_uuid],
            "licenceId": str(item.licence_uuid),
            "product": item.product,
            "unitKind": item.unit_kind,
            "activations": item.activations,
            "units": item.units,
        }
        for item in licences
    ]
    total = sum(item.units for item in licences)
    released = total if entry.release_units else 0
    return Settled(dict(counts), released, total - released, entry.purge_at)


def run_binned_delete(
    uow: UnitOfWork, *, operation: Operation, counts: dict[str, int], licences: list[BinUnits],
    now: datetime,
) -> Outcome:
    """A delete to the bin after phase 1, whole, in the caller's transaction: the units
    given back when asked, the entry's counts. ``counts`` and ``licences`` are what the
    subtree holds (the delete's impact, measured over its marked groups)."""
    settled = settle_binned_delete(
        uow, operation_id=operation.id, counts=counts, licences=licences, now=now
    )
    progress: dict[str, Any] = {
        kind: {"done": n, "total": n} for kind, n in settled.counts.items()
    }
    progress["unitsReleased"] = settled.units_released
    progress["unitsKeptConsumed"] = settled.units_kept
    body = {
        "operationId": str(operation.uuid),
        "groupId": str(operation.target_uuid),
        "binned": settled.counts,
        "releaseConsumedUnits": bool((operation.params or {}).get("releaseConsumedUnits")),
        "unitsReleased": settled.units_released,
        "unitsKeptConsumed": settled.units_kept,
        "purgeAt": settled.purge_at.isoformat().replace("+00:00", "Z"),
    }
    return Outcome(200, body, progress)


def _licence_keys(uow: UnitOfWork, uuids: list[UUID]) -> dict[UUID, int]:
    if not uuids:
        return {}
    rows = uow.session.execute(select(Licence.uuid, Licence.id).where(Licence.uuid.in_(uuids)))
    return {licence_uuid: int(key) for licence_uuid, key in rows}


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
    entry, root, _parent = _find_entry(
        uow, tenant_id=actor.tenant_id, group_id=group_id, lock=True
    )
    return _restore_entry(uow, actor=actor, entry=entry, root=root, parent_uuid=parent_uuid,
                          name=name, now=now)


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
    target, conflicts = find_conflicts(uow, entry=entry, root=root, parent_uuid=parent_uuid,
                                       name=name)
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
            again = Conflicts([{"kind": "name_taken", "groupId": str(root.uuid), "name": target.name}])
        raise again.error(root.name) from None
    counts = {kind: int(entry.counts.get(kind, 0)) for kind in COUNTED}
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
    themselves, or being removed): they come back with those groups, not with this."""
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
) -> Accepted:
    """Check a restore now (RestoreConflict names every conflict at once) and accept it
    as an operation, which the worker runs (``run_restore``): a client waits for it as
    for a delete."""
    actor.require("editor")
    entry, root, _parent = _find_entry(
        uow, tenant_id=actor.tenant_id, group_id=group_id, lock=True
    )
    if entry.restore_operation_id is not None:
        raise Conflict(f"a restore of '{root.name}' is already under way", code="restore_pending")
    _target, conflicts = find_conflicts(uow, entry=entry, root=root, parent_uuid=parent_uuid,
                                        name=name)
    if conflicts.items:
        raise conflicts.error(root.name)
    operation = _new_operation(
        uow,
        actor=actor,
        kind=RESTORE_KIND,
        root=root,
        params={
            "parentId": str(parent_uuid) if parent_uuid is not None else None,
            "name": name,
        },
        now=now,
    )
    entry.restore_operation_id = operation.id
    return Accepted(operation.uuid, root.uuid)


def _new_operation(
    uow: UnitOfWork, *, actor: Actor, kind: str, root: Group, params: dict[str, Any], now: datetime
) -> Operation:
    operation = Operation(
        uuid=new_uuid(),
        tenant_id=actor.tenant_id,
        kind=kind,
        target_uuid=root.uuid,
        target_name=root.name,
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


def run_restore(uow: UnitOfWork, *, operation: Operation, now: datetime) -> Outcome:
    """The accepted restore ``operation``, whole, in the caller's transaction. A conflict
    that arose since it was accepted ends it with a 409 answer, nothing changed."""
    entry = uow.session.execute(
        select(BinEntry).where(BinEntry.restore_operation_id == operation.id).with_for_update()
    ).scalar_one_or_none()
    if entry is None:
        body = {"code": "not_found", "detail": f"'{operation.target_name}' is no longer in the bin"}
        return Outcome(404, body, {})
    root = uow.session.get(Group, entry.group_id)
    assert root is not None
    actor = _operation_actor(operation)
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
        return Outcome(409, body, {})
    progress = {kind: {"done": n, "total": n} for kind, n in restored.counts.items()}
    progress["unitsTaken"] = restored.units_taken
    return Outcome(200, restored.as_result(), progress)


def finish_operation(
    uow: UnitOfWork,
    *,
    operation: Operation,
    outcome: Outcome,
    action: str | None,
    now: datetime,
    ttl_seconds: int,
) -> None:
    """Record how a bin operation ended, with its audit event, in the caller's transaction."""
    operation.state = "succeeded"
    operation.progress = outcome.progress
    operation.result_status = outcome.status
    operation.result_body = outcome.body
    operation.finished_at = now
    operation.expires_at = now + timedelta(seconds=ttl_seconds)
    operation.claimed_by = None
    operation.lease_until = None
    if action is None or outcome.status >= 400:
        return  # a restore records its own event; a refused one changed nothing
    audit.record_event(
        uow,
        actor=_operation_actor(operation),
        action=action,
        target_type="group",
        target_uuid=operation.target_uuid,
        target_name=operation.target_name,
        outcome="succeeded",
        counts=outcome.body,
        detail=f"operation {operation.uuid}",
        now=now,
    )


def _operation_actor(operation: Operation) -> Actor:
    return Actor(
        tenant_id=operation.tenant_id,
        account_id=None,
        username=operation.actor,
        role="admin",
        request_id=operation.request_id,
        source=operation.source,
    )


# purging ------------------------------------------------------------------------------
def start_purge(
    uow: UnitOfWork, *, actor: Actor, entry: BinEntry, root: Group, now: datetime
) -> Operation:
    """Hand a bin entry to the removal of its rows (phase 2 of a delete): a purge
    operation takes over its groups (marked ``deleting`` for it) and the entry, which
    leaves the bin and goes when the purge ends (``close_purged``). Whether the units
    were given back is the entry's: the purge removes such activations without touching
    the books, and orphans the others, still counted (docs/decisions/0030)."""
    operation = _new_operation(
        uow,
        actor=actor,
        kind=PURGE_KIND,
        root=root,
        params={
            "releaseConsumedUnits": False,
            "unitsReleased": entry.released,
            "path": root.path,
        },
        now=now,
    )
    uow.session.execute(
        update(Group)
        .where(
            Group.operation_id == entry.operation_id,
            Group.tenant_id == entry.tenant_id,
            Group.state == "deleted",
        )
        .values(state="deleting", operation_id=operation.id)
        .execution_options(synchronize_session=False)
    )
    entry.operation_id = operation.id
    entry.purging = True
    groups = int(entry.counts.get("groups", 0))
    operation.progress = {"groups": {"done": 0, "total": groups or None}, "chunks": 0}
    return operation


def purge_inside(uow: UnitOfWork, *, actor: Actor, tenant_id: int, path: str, now: datetime) -> int:
    """Start the purge of every entry still in the bin whose root lies under ``path``
    (a subtree binned earlier inside one being purged or deleted for good): their rows
    would keep the enclosing groups from going, whose removal waits for them."""
    rows = uow.session.execute(
        select(BinEntry, Group)
        .join(Group, Group.id == BinEntry.group_id)
        .where(
            in_subtree(path, tenant_id=tenant_id),
            Group.path != path,
            BinEntry.purging.is_(False),
        )
        .order_by(BinEntry.id)
        .with_for_update(of=BinEntry)
    ).all()
    for entry, root in rows:
        start_purge(uow, actor=actor, entry=entry, root=root, now=now)
    return len(rows)


def close_purged(uow: UnitOfWork, *, operation_id: int) -> None:
    """The purge ``operation_id`` has removed its rows: its entry goes too."""
    uow.session.execute(
        delete(BinEntry)
        .where(BinEntry.operation_id == operation_id, BinEntry.purging.is_(True))
        .execution_options(synchronize_session=False)
    )


def purge_now(uow: UnitOfWork, *, actor: Actor, group_id: str | UUID, now: datetime) -> Accepted:
    """An admin's purge of a bin entry before its time: accepted as an operation."""
    actor.require("admin")
    entry, root, _parent = _find_entry(
        uow, tenant_id=actor.tenant_id, group_id=group_id, lock=True
    )
    if entry.restore_operation_id is not None:
        raise Conflict(f"a restore of '{root.name}' is under way", code="restore_pending")
    # Those inside first: their operations come first in the workers' order, and the
    # enclosing purge's removal waits for them.
    purge_inside(uow, actor=actor, tenant_id=entry.tenant_id, path=root.path, now=now)
    operation = start_purge(uow, actor=actor, entry=entry, root=root, now=now)
    return Accepted(operation.uuid, root.uuid)


def start_due_purges(uow: UnitOfWork, *, now: datetime, limit: int = PURGES_PER_PASS) -> int:
    """Purge operations for the entries whose ``purge_at`` has passed (any tenant); an
    entry being restored waits. Entries another worker is starting are skipped."""
    due = uow.session.execute(
        select(BinEntry)
        .where(
            BinEntry.purge_at <= now,
            BinEntry.restore_operation_id.is_(None),
            BinEntry.purging.is_(False),
        )
        .order_by(BinEntry.purge_at, BinEntry.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars().all()
    started = 0
    for entry in due:
        root = uow.session.get(Group, entry.group_id)
        assert root is not None
        if entry.purging:
            continue  # started just now, inside an enclosing entry due before it
        actor = system_actor(entry.tenant_id, name="retention")
        started += purge_inside(
            uow, actor=actor, tenant_id=entry.tenant_id, path=root.path, now=now
        )
        start_purge(uow, actor=actor, entry=entry, root=root, now=now)
        started += 1
    return started
