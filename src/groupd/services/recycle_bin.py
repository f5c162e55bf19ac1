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

from sqlalchemy import delete, select, update
from sqlalchemy.orm import aliased

from groupd.errors import Conflict, GroupdError, NotFound, RestoreConflict
from groupd.services import audit, operations
from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    parse_uuid,
    system_actor,
)
from groupd.services.operations import OperationView
from groupd.services.progress import Progress
from groupd.store import recycle_bin as bin_store
from groupd.store.db import UnitOfWork
from groupd.store.models import (
    BinEntry,
    Group,
    Licence,
    Operation,
)
from groupd.store.tree import in_subtree

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
class Accepted:
    """An operation accepted for a bin entry (a restore or a purge)."""

    operation_uuid: UUID
    group_uuid: UUID


@dataclass(frozen=True, slots=True)
class Outcome:
    """How an operation run here ended: its answer's status and body."""

    status: int
    body: dict[str, Any]
    progress: Progress


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


def find_entry(
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
    entry, group, parent = find_entry(uow, tenant_id=actor.tenant_id, group_id=group_id)
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
    operation (``record_contents``)."""
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


def binned_entry(uow: UnitOfWork, *, operation_id: int, lock: bool = True) -> BinEntry | None:
    """The bin entry a delete to the bin opened, row-locked unless ``lock`` is False;
    None once it has left the bin (restored, or handed to a purge)."""
    query = select(BinEntry).where(BinEntry.operation_id == operation_id)
    if lock:
        query = query.with_for_update()
    return uow.session.execute(query).scalar_one_or_none()


def is_counted(entry: BinEntry) -> bool:
    """Whether the entry has its contents yet (``record_contents``)."""
    return "groups" in entry.counts


def record_contents(
    uow: UnitOfWork, *, entry: BinEntry, counts: dict[str, int], licences: list[BinUnits]
) -> None:
    """Give ``entry`` what its subtree holds: ``counts`` per kind, and the units its
    activations hold per licence (``licences``). Nothing can change the activations of
    hidden objects, so a count taken any time after phase 1 stays exact until a restore
    or a purge (docs/decisions/0030). A second count finds it done and changes nothing."""
    if is_counted(entry):
        return
    keys = _licence_keys(uow, [item.licence_uuid for item in licences])
    entry.counts = {kind: int(counts.get(kind, 0)) for kind in COUNTED}
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


def settle_binned_delete(uow: UnitOfWork, *, entry: BinEntry) -> Settled:
    """The write of a delete to the bin after phase 1, once its entry has its contents
    (``record_contents``): with ``releaseConsumedUnits`` the units the subtree's
    activations hold go back to their licences, one UPDATE per licence. The activations
    are left as they are."""
    assert is_counted(entry)
    held = {int(item["key"]): int(item["units"]) for item in entry.units}
    if entry.release_units and not entry.released:
        bin_store.add_used_units(uow, {key: -units for key, units in held.items()})
        entry.released = True
    total = sum(held.values())
    released = total if entry.release_units else 0
    counts = {kind: int(entry.counts.get(kind, 0)) for kind in COUNTED}
    return Settled(counts, released, total - released, entry.purge_at)


def run_binned_delete(uow: UnitOfWork, *, operation: Operation, entry: BinEntry) -> Outcome:
    """A delete to the bin after phase 1, whole, in the caller's transaction: the units
    given back when asked (``settle_binned_delete``), and the operation's answer."""
    settled = settle_binned_delete(uow, entry=entry)
    progress = done_progress(settled.counts)
    progress.units_released = settled.units_released
    progress.units_kept_consumed = settled.units_kept
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


def done_progress(counts: dict[str, int]) -> Progress:
    """The progress of work done in one transaction: every kind done, all of it."""
    progress = Progress()
    for kind in COUNTED:
        progress.tally(kind).done = progress.tally(kind).total = int(counts.get(kind, 0))
    return progress


def _licence_keys(uow: UnitOfWork, uuids: list[UUID]) -> dict[UUID, int]:
    if not uuids:
        return {}
    rows = uow.session.execute(select(Licence.uuid, Licence.id).where(Licence.uuid.in_(uuids)))
    return {licence_uuid: int(key) for licence_uuid, key in rows}


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
    operations.succeed(
        uow,
        operation=operation,
        progress=outcome.progress,
        result=outcome.body,
        now=now,
        ttl=ttl_seconds,
        status=outcome.status,
    )
    if action is None or outcome.status >= 400:
        return  # a restore records its own event; a refused one changed nothing
    audit.record_event(
        uow,
        actor=operation_actor(operation),
        action=action,
        target_type="group",
        target_uuid=operation.target_uuid,
        target_name=operation.target_name,
        outcome="succeeded",
        counts=outcome.body,
        detail=f"operation {operation.uuid}",
        now=now,
    )


def refusal_of(view: OperationView) -> GroupdError | None:
    """The error a finished restore's result stands for (a conflict arisen since it was
    accepted, or its entry purged meanwhile); None when it did its work or runs still."""
    if not view.done or view.result_status in (None, 200):
        return None
    body = dict(view.result_body or {})
    detail = str(body.get("detail", ""))
    if view.result_status == 409:
        return RestoreConflict(detail, conflicts=body.get("conflicts", []))
    return NotFound(detail)


def operation_actor(operation: Operation) -> Actor:
    return Actor(
        tenant_id=operation.tenant_id,
        account_id=None,
        username=operation.actor,
        role="admin",
        request_id=operation.request_id,
        source=operation.source,
    )


def refuse_while_binning(uow: UnitOfWork, *, entry: BinEntry, root: Group) -> None:
    """Refuse to restore or purge a subtree whose delete's operation has not run yet: it
    gives the units back and records what the entry holds, and it needs the entry."""
    if not entry.purging and operations.unfinished(uow, operation_id=entry.operation_id):
        raise Conflict(
            f"the delete of '{root.name}' is still under way: wait for operation "
            f"{entry.operation_uuid}",
            code="delete_pending",
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
    operation = operations.accept(
        uow,
        actor=actor,
        kind=PURGE_KIND,
        target_uuid=root.uuid,
        target_name=root.name,
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
    entry, root, _parent = find_entry(uow, tenant_id=actor.tenant_id, group_id=group_id, lock=True)
    if entry.restore_operation_id is not None:
        raise Conflict(f"a restore of '{root.name}' is under way", code="restore_pending")
    refuse_while_binning(uow, entry=entry, root=root)
    # Those inside first: their operations come first in the workers' order, and the
    # enclosing purge's removal waits for them.
    purge_inside(uow, actor=actor, tenant_id=entry.tenant_id, path=root.path, now=now)
    operation = start_purge(uow, actor=actor, entry=entry, root=root, now=now)
    return Accepted(operation.uuid, root.uuid)


def start_due_purges(uow: UnitOfWork, *, now: datetime, limit: int = PURGES_PER_PASS) -> int:
    """Purge operations for the entries whose ``purge_at`` has passed (any tenant); an
    entry being restored waits. Entries another worker is starting are skipped."""
    due = (
        uow.session.execute(
            select(BinEntry)
            .where(
                BinEntry.purge_at <= now,
                BinEntry.restore_operation_id.is_(None),
                BinEntry.purging.is_(False),
                # Not before the delete's own operation has run (refuse_while_binning).
                ~select(Operation.id)
                .where(
                    Operation.id == BinEntry.operation_id,
                    Operation.state.in_(operations.UNFINISHED),
                )
                .exists(),
            )
            .order_by(BinEntry.purge_at, BinEntry.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
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
