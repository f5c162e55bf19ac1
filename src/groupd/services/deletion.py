"""Deleting a subtree: guards, impact, the two phases, and the operation record.

Phase 1 (``request_delete``) is one short transaction: lock the root, mark every group of
the subtree ``deleting`` (from then on no read shows them and nothing can be created
under them), check the guards over that locked set, write the operation and the audit
event. A refusal raises, and the caller's unit of work rolls all of it back.

Phase 2 (``run_delete_chunk``, driven by the worker) removes rows in chunks of groups,
deepest first, each chunk its own transaction that also records progress on the
operation: a crash between chunks loses nothing and repeats nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    and_,
    bindparam,
    case,
    delete,
    func,
    literal,
    null,
    or_,
    select,
    true,
    union,
    union_all,
    update,
)
from sqlalchemy.orm import aliased

from groupd.errors import DeleteRefused, InvalidInput, NotFound
from groupd.services import audit
from groupd.services.common import (
    MAX_KEY,
    Actor,
    Precondition,
    new_uuid,
    parse_uuid,
    system_actor,
)
from groupd.services.groups import check_version, lock_live_group
from groupd.store.db import UnitOfWork
from groupd.store.keys import in_keys
from groupd.store.models import (
    LIVE,
    Activation,
    DirectoryObject,
    Group,
    Licence,
    Membership,
    Operation,
)
from groupd.store.prepared import Prepared
from groupd.store.tree import in_subtree
from groupd.store.types import BigIntKey, UTCDateTime

log = logging.getLogger("groupd.deletion")
BLOCKERS_SHOWN = 100
DELETE_KIND = "delete_group"
# ESET's "no linked entity" value; a group carrying it links nothing.
UNSPECIFIED_ENTITY = "GROUP_ENTITY_TYPE_UNSPECIFIED"


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a delete is refused: the rule and the group that trips it."""

    rule: str
    group_uuid: UUID
    group_name: str
    linked_entity_type: str | None = None
    active_members: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule,
            "groupId": str(self.group_uuid),
            "groupName": self.group_name,
        }
        if self.linked_entity_type is not None:
            out["linkedEntityType"] = self.linked_entity_type
        if self.active_members is not None:
            out["activeMembers"] = self.active_members
        return out


@dataclass(frozen=True, slots=True)
class LicenceImpact:
    licence_uuid: UUID
    product: str
    unit_kind: str
    activations: int
    units: int


@dataclass(slots=True)
class Impact:
    """What a delete takes: counted over the whole subtree with set-based queries."""

    groups: dict[str, int] = field(default_factory=dict)
    devices: int = 0
    users: int = 0
    memberships: int = 0
    activations: int = 0
    licences: list[LicenceImpact] = field(default_factory=list)
    blockers: list[Blocker] = field(default_factory=list)
    release_units: bool = False

    @property
    def group_total(self) -> int:
        return sum(self.groups.values())

    @property
    def units(self) -> int:
        return sum(item.units for item in self.licences)

    def as_dict(self) -> dict[str, Any]:
        return {
            "groups": {"total": self.group_total, **self.groups},
            "objects": {"devices": self.devices, "users": self.users},
            "memberships": self.memberships,
            "activations": self.activations,
            "releaseConsumedUnits": self.release_units,
            "units": {
                "released" if self.release_units else "keptConsumed": self.units,
                "byLicence": [
                    {
                        "licenceId": str(item.licence_uuid),
                        "product": item.product,
                        "unitKind": item.unit_kind,
                        "activations": item.activations,
                        "units": item.units,
                        "action": "release" if self.release_units else "keep",
                    }
                    for item in self.licences
                ],
            },
            "blockers": [b.as_dict() for b in self.blockers],
        }


def _groups_filter(*, tenant_id: int, path: str | None, operation_id: int | None) -> Any:
    """The subtree: a live path range (dry run) or the groups an operation marked."""
    if operation_id is not None:
        return and_(Group.operation_id == operation_id, Group.tenant_id == tenant_id)
    assert path is not None
    return and_(in_subtree(path, tenant_id=tenant_id), Group.state == LIVE)


def measure_impact(
    uow: UnitOfWork,
    *,
    tenant_id: int,
    path: str | None = None,
    operation_id: int | None = None,
    release_units: bool,
) -> Impact:
    """Count what the subtree holds and find every blocker.

    One statement counts everything (``_count_contents``); the blockers' details are
    looked up only when it saw a protected or linked group, and the active members
    through the memberships of the subtree's user groups.
    """
    in_tree = _groups_filter(tenant_id=tenant_id, path=path, operation_id=operation_id)
    impact = Impact(release_units=release_units)
    flags = _count_contents(uow, impact=impact, in_tree=in_tree)
    impact.blockers = find_blockers(session_uow=uow, in_tree=in_tree, flags=flags)
    return impact


@dataclass(frozen=True, slots=True)
class _GuardFlags:
    """Whether any group of the subtree is protected or linked (from a pass over them)."""

    protected: bool
    linked: bool


def _linked(group: Any) -> ColumnElement[bool]:
    return and_(
        group.linked_entity_type.is_not(None),
        group.linked_entity_type != UNSPECIFIED_ENTITY,
    )


def _survey_groups(uow: UnitOfWork, *, in_tree: Any) -> tuple[dict[str, int], _GuardFlags]:
    """Groups of the subtree by kind, and whether a protected or linked one is among them,
    in one pass over the subtree."""
    rows = uow.session.execute(
        select(
            Group.kind,
            func.count(),
            func.sum(case((Group.protected.is_(True), 1), else_=0)),
            func.sum(case((_linked(Group), 1), else_=0)),
        )
        .where(in_tree)
        .group_by(Group.kind)
    ).all()
    kinds = {kind: int(count) for kind, count, _protected, _linked_count in rows}
    flags = _GuardFlags(protected=any(row[2] for row in rows), linked=any(row[3] for row in rows))
    return kinds, flags


def _count_contents(uow: UnitOfWork, *, impact: Impact, in_tree: Any) -> _GuardFlags:
    """Groups by kind, objects by kind, activations per licence and memberships, in one
    statement whose cost follows the subtree, not the tenant.

    The subtree's groups (a path range, or the operation's marked groups) are read once,
    and its objects once (an index-only range of ``ix_objects_home_group_id_tenant_id_id_kind``
    per group); both are common table expressions shared by the aggregates.
    Memberships are the union of two key sets, each found through an index (the
    subtree's user groups by ``group_id``, the users homed in it by ``object_id``): a
    membership on both sides counts once, as with an OR, without testing every
    membership of the tenant against both. Returns which guards need a closer look.
    """
    subtree = (
        select(
            Group.id,
            Group.kind,
            Group.protected.label("protected"),
            _linked(Group).label("linked"),
        )
        .where(in_tree)
        .cte("subtree")
    )
    # Joins, not IN: both sides are unique (group ids, object ids), and an IN over a
    # common table expression makes PostgreSQL de-duplicate it first (a hash of 500,000
    # object ids, spilled to disk, for a 100,000-group subtree).
    homed = (
        select(DirectoryObject.id, DirectoryObject.kind)
        .join(subtree, DirectoryObject.home_group_id == subtree.c.id)
        .cte("homed")
    )
    member_keys = union(
        select(Membership.group_id, Membership.object_id).join(
            subtree, Membership.group_id == subtree.c.id
        ),
        select(Membership.group_id, Membership.object_id).join(
            homed, Membership.object_id == homed.c.id
        ),
    ).subquery("member_keys")
    no_kind = null().cast(String)
    no_key = null().cast(BigIntKey)

    def tally(what: str, source: Any, *, where: Any = None) -> Any:
        query = select(literal(what), no_kind, no_key, func.count(), literal(0)).select_from(source)
        return query if where is None else query.where(where)

    statement = union_all(
        select(
            literal("groups").label("what"),
            subtree.c.kind.label("kind"),
            no_key.label("licence_id"),
            func.count().label("rows"),
            literal(0).label("units"),
        ).group_by(subtree.c.kind),
        tally("protected", subtree, where=subtree.c.protected.is_(True)),
        tally("linked", subtree, where=subtree.c.linked),
        select(literal("objects"), homed.c.kind, no_key, func.count(), literal(0)).group_by(
            homed.c.kind
        ),
        select(
            literal("activations"),
            no_kind,
            Activation.licence_id,
            func.count(),
            func.coalesce(func.sum(Activation.units), 0),
        )
        .join(homed, Activation.object_id == homed.c.id)
        .group_by(Activation.licence_id),
        tally("memberships", member_keys),
    )
    counted: dict[str, int] = {}
    charged: dict[int, tuple[int, int]] = {}
    for what, kind, licence_id, rows, units in uow.session.execute(statement):
        if what == "groups":
            impact.groups[kind] = int(rows)
        elif what == "objects":
            if kind == "device":
                impact.devices = int(rows)
            else:
                impact.users = int(rows)
        elif what == "activations":
            charged[int(licence_id)] = (int(rows), int(units))
        else:
            counted[what] = int(rows)
    impact.memberships = counted["memberships"]
    if charged:
        for licence in uow.session.execute(
            select(Licence.id, Licence.uuid, Licence.product, Licence.unit_kind)
            .where(Licence.id.in_(charged))
            .order_by(Licence.product)
        ):
            activations, units = charged[licence.id]
            impact.licences.append(
                LicenceImpact(licence.uuid, licence.product, licence.unit_kind, activations, units)
            )
    impact.activations = sum(item.activations for item in impact.licences)
    return _GuardFlags(protected=counted["protected"] > 0, linked=counted["linked"] > 0)


def find_blockers(
    *, session_uow: UnitOfWork, in_tree: Any, flags: _GuardFlags | None = None
) -> list[Blocker]:
    """Every guard, as set-based queries over the subtree: protected groups, linked
    entities, and user groups with active members.

    With ``flags`` from a pass that already looked at every group of the subtree, the
    protected and linked queries run only when that pass saw such a group.
    """
    session = session_uow.session
    blockers: list[Blocker] = []
    if flags is None or flags.protected:
        for row in session.execute(
            select(Group.uuid, Group.name)
            .where(in_tree, Group.protected.is_(True))
            .order_by(Group.depth, Group.id)
            .limit(BLOCKERS_SHOWN)
        ):
            blockers.append(Blocker("protected_group", row.uuid, row.name))
    if flags is None or flags.linked:
        for linked in session.execute(
            select(Group.uuid, Group.name, Group.linked_entity_type)
            .where(in_tree, _linked(Group))
            .order_by(Group.depth, Group.id)
            .limit(BLOCKERS_SHOWN)
        ):
            blockers.append(
                Blocker(
                    "linked_entity",
                    linked.uuid,
                    linked.name,
                    linked_entity_type=linked.linked_entity_type,
                )
            )
    member_home = Group.__table__.alias("member_home")
    active_query = (
        select(Group.uuid, Group.name, func.count())
        .join(Membership, Membership.group_id == Group.id)
        .join(DirectoryObject, DirectoryObject.id == Membership.object_id)
        .join(member_home, member_home.c.id == DirectoryObject.home_group_id)
        .where(
            in_tree,
            Group.kind == "user",
            DirectoryObject.status == "active",
            member_home.c.state == LIVE,
        )
        .group_by(Group.id, Group.uuid, Group.name)
        .order_by(Group.id)
        .limit(BLOCKERS_SHOWN)
    )
    for group_uuid, group_name, active in session.execute(active_query):
        blockers.append(
            Blocker("active_members", group_uuid, group_name, active_members=int(active))
        )
    return blockers


def refusal(blockers: list[Blocker], group_name: str) -> DeleteRefused:
    """The error for a refused delete: the first rule gives the code, all are listed."""
    first = blockers[0].rule
    if first == "protected_group":
        names = ", ".join(f"'{b.group_name}'" for b in blockers if b.rule == first)
        detail = f"the subtree holds built-in group(s) {names}, which are never deleted"
    elif first == "linked_entity":
        names = ", ".join(
            f"'{b.group_name}' ({b.linked_entity_type})" for b in blockers if b.rule == first
        )
        detail = f"the subtree holds group(s) linked to an entity: {names}"
    else:
        names = ", ".join(
            f"'{b.group_name}' ({b.active_members} active)" for b in blockers if b.rule == first
        )
        detail = f"the subtree holds user group(s) with active members: {names}"
    return DeleteRefused(
        f"cannot delete '{group_name}': {detail}",
        code=first,
        blockers=[b.as_dict() for b in blockers],
    )


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
    now: datetime,
) -> DeletePlan:
    """Phase 1 of a delete, or its dry run.

    Dry run: the impact and blockers, nothing changed. Otherwise: the subtree is marked
    ``deleting`` and the operation accepted, or a DeleteRefused names every blocker and
    the caller's rollback leaves everything as it was.
    """
    actor.require("editor")
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    root = lock_live_group(uow, tenant_id=actor.tenant_id, group_uuid=key)
    check_version(root, precondition)
    if dry_run:
        impact = measure_impact(
            uow, tenant_id=actor.tenant_id, path=root.path, release_units=release_units
        )
        return DeletePlan(root.uuid, root.name, impact, None, True)
    session = uow.session
    operation = Operation(
        uuid=new_uuid(),
        tenant_id=actor.tenant_id,
        kind=DELETE_KIND,
        target_uuid=root.uuid,
        target_name=root.name,
        params={"releaseConsumedUnits": release_units, "path": root.path},
        state="accepted",
        progress={},
        actor=actor.username,
        request_id=actor.request_id or "",
        source=actor.source,
        attempts=0,
        created_at=now,
    )
    session.add(operation)
    session.flush()
    _mark_subtree(uow, tenant_id=actor.tenant_id, path=root.path, operation_id=operation.id)
    in_tree = _groups_filter(tenant_id=actor.tenant_id, path=None, operation_id=operation.id)
    # Only the groups are counted here: phase 1 stays short however many objects the
    # subtree holds. The worker counts the rest (progress totals) before its first chunk.
    impact = Impact(release_units=release_units)
    impact.groups, flags = _survey_groups(uow, in_tree=in_tree)
    blockers = find_blockers(session_uow=uow, in_tree=in_tree, flags=flags)
    if blockers:
        raise refusal(blockers, root.name)
    operation.progress = {"groups": {"done": 0, "total": impact.group_total}, "chunks": 0}
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
    )
    return DeletePlan(root.uuid, root.name, impact, operation.uuid, False)


def _mark_subtree(uow: UnitOfWork, *, tenant_id: int, path: str, operation_id: int) -> None:
    mark = (
        update(Group)
        .where(in_subtree(path, tenant_id=tenant_id), Group.state == LIVE)
        .values(state="deleting", operation_id=operation_id)
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


COUNTED_KINDS = ("devices", "users", "memberships", "activations")


def _totals_known(progress: dict[str, Any]) -> bool:
    return (progress.get("devices") or {}).get("total") is not None


def needs_totals(uow: UnitOfWork, *, operation_id: int) -> bool:
    """Whether the operation's progress still lacks its totals."""
    operation = uow.session.get(Operation, operation_id)
    return (
        operation is not None
        and operation.state in ("accepted", "running")
        and (not _totals_known(operation.progress or {}))
    )


def count_totals(uow: UnitOfWork, *, operation_id: int) -> dict[str, int]:
    """What the operation removes in all, per kind: what it has removed so far and what
    is left, both as of the unit's snapshot.

    Run it in a snapshot unit (``Database.snapshot``), beside the chunks: a chunk
    removes rows and adds them to the progress in one transaction, so within one
    snapshot the two add up to the same totals whichever chunks ran before, here or
    before a restart. Counting what is left reads the whole subtree once and holds no
    lock.
    """
    operation = uow.session.get(Operation, operation_id)
    assert operation is not None
    progress = operation.progress or {}
    impact = measure_impact(
        uow,
        tenant_id=operation.tenant_id,
        operation_id=operation_id,
        release_units=bool(operation.params.get("releaseConsumedUnits")),
    )
    left = {
        "devices": impact.devices,
        "users": impact.users,
        "memberships": impact.memberships,
        "activations": impact.activations,
    }
    return {
        kind: int((progress.get(kind) or {}).get("done", 0)) + left[kind] for kind in COUNTED_KINDS
    }


def record_totals(
    uow: UnitOfWork, *, operation_id: int, worker_id: str, totals: dict[str, int]
) -> None:
    """Store the totals counted by ``count_totals``, if this worker still holds the lease
    and no other count got there first."""
    operation = uow.session.execute(
        select(Operation)
        .where(Operation.id == operation_id, Operation.claimed_by == worker_id)
        .with_for_update()
    ).scalar_one_or_none()
    if operation is None or _totals_known(operation.progress or {}):
        return
    progress = dict(operation.progress or {})
    for kind, total in totals.items():
        progress[kind] = {"done": int((progress.get(kind) or {}).get("done", 0)), "total": total}
    progress.setdefault("unitsReleased", 0)
    progress.setdefault("unitsKeptConsumed", 0)
    operation.progress = progress


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

    ``step_objects`` (SQLite, where the chunk holds the only write lock): objects are
    removed that many at a time, and the chunk ends after any of these steps once
    another writer waits (``uow.writers_waiting``): a small write waits for one step of
    the delete, not for a whole chunk. ``steps_left``, from the previous step's result,
    saves reading the bounds of a chunk cut short that way again.
    """
    uow.plan_by_index()
    session = uow.session
    renewed = session.execute(
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
        return ChunkResult(finished=False, lost_lease=True)
    operation = session.execute(select(Operation).where(Operation.id == operation_id)).scalar_one()
    release = bool(operation.params.get("releaseConsumedUnits"))
    progress = dict(operation.progress)
    chunk, adopted = _select_chunk(uow, operation_id=operation_id, chunk_groups=chunk_groups)
    if not chunk and not adopted:
        left = session.execute(
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
        progress["adopted"] = int(progress.get("adopted", 0)) + adopted
        if not chunk:
            # The groups taken along are picked, deepest first, by the next step.
            _save_progress(uow, operation_id=operation_id, progress=progress)
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
        if adopted:
            progress["adopted"] = int(progress.get("adopted", 0)) + adopted
    progress["chunks"] = int(progress.get("chunks", 0)) + 1
    _save_progress(uow, operation_id=operation_id, progress=progress)
    return ChunkResult(finished=False, steps_left=next_steps)


def _save_progress(uow: UnitOfWork, *, operation_id: int, progress: dict[str, Any]) -> None:
    uow.session.execute(
        update(Operation)
        .where(Operation.id == operation_id)
        .values(progress=progress)
        .execution_options(synchronize_session=False)
    )


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
    progress: dict[str, Any],
    now: datetime,
) -> tuple[int, bool, StepsLeft | None]:
    """Empty a chunk of groups, at most ``objects_budget`` objects of it, ``step_objects``
    at a time in key order, and remove the groups once they are empty. After each step
    but the last it stops early when another writer waits. Returns how many objects went,
    whether the groups went too, and where the chunk's next step starts when a writer
    cut it short (``StepsLeft``)."""
    session = uow.session
    # With the tenant, each group's objects are one range of the home index, and a step
    # seeks to its own part of each range instead of reading what earlier steps left.
    in_chunk = and_(
        DirectoryObject.home_group_id.in_(chunk), DirectoryObject.tenant_id == tenant_id
    )
    bounds_found = None
    if steps_left is not None and steps_left.chunk == tuple(chunk):
        bounds_found = list(steps_left.bounds), True
    elif uow.is_sqlite:
        bounds_found = _step_bounds_sorted_here(
            uow, chunk=chunk, tenant_id=tenant_id, step=step_objects, budget=objects_budget
        )
    if bounds_found is not None:
        bounds, whole = bounds_found
    else:
        bounds, whole = _step_bounds(
            uow, in_chunk=in_chunk, step=step_objects, budget=objects_budget
        )
    # Read once, not in every step: a chunk holds nothing but devices as a rule, and its
    # steps then need no count by kind and no probe of the memberships.
    devices_only = (
        session.execute(
            select(DirectoryObject.id).where(in_chunk, DirectoryObject.kind != "device").limit(1)
        ).first()
        is None
    )
    removed = 0
    for taken, (lower, upper) in enumerate(zip((None, *bounds), (*bounds, None), strict=True)):
        if devices_only and uow.is_sqlite:
            removed += _remove_devices_step(
                uow,
                chunk=chunk,
                tenant_id=tenant_id,
                first=FIRST_KEY if lower is None else lower,
                last=MAX_KEY if upper is None else upper - 1,
                release=release,
                progress=progress,
                now=now,
            )
        else:
            objects_filter = and_(
                in_chunk,
                true() if lower is None else DirectoryObject.id >= lower,
                true() if upper is None else DirectoryObject.id < upper,
            )
            removed += _remove_objects(
                uow,
                objects_filter=objects_filter,
                devices_only=devices_only,
                release=release,
                progress=progress,
                now=now,
            )
        if upper is None:
            continue
        if removed >= objects_budget:
            return removed, False, None
        if uow.writers_waiting():
            # The bounds left hold for the next step only if they reach the chunk's
            # end (it fitted the budget); otherwise that step reads them again.
            left = StepsLeft(tuple(chunk), tuple(bounds[taken + 1 :])) if whole else None
            return removed, False, left
    memberships = session.execute(
        delete(Membership)
        .where(Membership.group_id.in_(chunk))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    _bump(progress, "memberships", memberships)
    groups_removed = session.execute(
        delete(Group)
        .where(Group.id.in_(chunk), Group.operation_id == operation_id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    _bump(progress, "groups", groups_removed)
    return removed, True, None


def _step_bounds(
    uow: UnitOfWork, *, in_chunk: ColumnElement[bool], step: int, budget: int
) -> tuple[list[int], bool]:
    """Where the steps over the chunk's objects end: the ids of its objects at positions
    step, 2 x step, ... (in key order) below ``budget``, and at ``budget`` itself when it
    holds more. One read of the chunk's index entries, not one per step. Also says
    whether the chunk fits the budget (the steps then reach its end)."""
    numbered = (
        select(
            DirectoryObject.id,
            (func.row_number().over(order_by=DirectoryObject.id) - 1).label("position"),
        )
        .where(in_chunk)
        .subquery()
    )
    position = numbered.c.position
    rows = uow.session.execute(
        select(numbered.c.id, position)
        .where(
            or_(
                position == budget,
                and_(position > 0, position < budget, position % step == 0),
            )
        )
        .order_by(numbered.c.id)
    ).all()
    return [int(row.id) for row in rows], all(row.position != budget for row in rows)


# At most this many times a step's budget of a chunk's ids are sorted in Python; a chunk
# that holds more has its bounds numbered by the database (``_step_bounds``).
SORTED_HERE_PER_BUDGET = 4
_CHUNK_OBJECT_IDS = Prepared(
    select(DirectoryObject.id)
    .where(
        in_keys(DirectoryObject.home_group_id, "chunk"),
        DirectoryObject.tenant_id == bindparam("tenant_id"),
    )
    .limit(bindparam("cap", type_=Integer()))
)


def _step_bounds_sorted_here(
    uow: UnitOfWork, *, chunk: list[int], tenant_id: int, step: int, budget: int
) -> tuple[list[int], bool] | None:
    """``_step_bounds``, from the chunk's ids read in the home index's order (by group)
    and sorted here: SQLite's sort and window took twice as long for a chunk of 40,000
    objects, and longer still inside a delete once the sort no longer fitted its memory
    (docs/benchmarks.md). None when the chunk holds more than
    ``SORTED_HERE_PER_BUDGET`` budgets of objects: the database numbers them then, so the
    ids held here stay bounded."""
    cap = SORTED_HERE_PER_BUDGET * budget + 1
    ids = _CHUNK_OBJECT_IDS.column(uow, {"chunk": chunk, "tenant_id": tenant_id, "cap": cap})
    if len(ids) >= cap:
        return None
    ids.sort()
    bounds = ids[step:budget:step]
    if len(ids) > budget:
        bounds.append(ids[budget])
    return bounds, len(ids) <= budget


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
      through ``ix_groups_parent_id_tenant_id_id``; no test on the child's ``operation_id``, which
      made PostgreSQL probe the partial index on it instead (quadratic,
      docs/benchmarks.md).
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


def _bump(progress: dict[str, Any], key: str, count: int) -> None:
    # A total stays null until the count beside the chunks has stored it.
    entry = dict(progress.get(key) or {"done": 0, "total": None})
    entry["done"] = int(entry["done"]) + int(count)
    progress[key] = entry


def _remove_objects(
    uow: UnitOfWork,
    *,
    objects_filter: Any,
    devices_only: bool,
    release: bool,
    progress: dict[str, Any],
    now: datetime,
) -> int:
    """Activations (released or orphaned), memberships, then the objects themselves.
    ``devices_only``: the step takes devices alone (it says so in its filter, so an object
    of another kind is left for a later step), and the objects' ``DELETE`` counts them:
    no count by kind first, and no probe of the memberships. Returns how many objects
    went."""
    session = uow.session
    if devices_only:
        objects_filter = and_(objects_filter, DirectoryObject.kind == "device")
    object_ids = select(DirectoryObject.id).where(objects_filter).scalar_subquery()
    touched = (
        delete(Activation)
        if release
        else update(Activation).values(object_id=None, orphaned_at=now)
    )
    charged, activations = _take_activations(
        uow, touched.where(Activation.object_id.in_(object_ids))
    )
    _account_activations(
        uow, charged=charged, activations=activations, release=release, progress=progress
    )
    if devices_only:
        kinds = {"device": 0}
    else:
        kinds = dict(
            session.execute(
                select(DirectoryObject.kind, func.count())
                .where(objects_filter)
                .group_by(DirectoryObject.kind)
            ).all()
        )
    if kinds.get("user"):
        # Only users are members (invariant 4).
        user_ids = (
            select(DirectoryObject.id)
            .where(objects_filter, DirectoryObject.kind == "user")
            .scalar_subquery()
        )
        memberships = session.execute(
            delete(Membership)
            .where(Membership.object_id.in_(user_ids))
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        _bump(progress, "memberships", memberships)
    deleted = session.execute(
        delete(DirectoryObject)
        # Filtered directly: "id IN (SELECT id FROM objects ...)" is planned by PostgreSQL
        # as a scan of the whole table; this is an index range on home_group_id.
        .where(objects_filter)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if devices_only:
        kinds["device"] = int(deleted)
    _bump(progress, "devices", int(kinds.get("device", 0)))
    _bump(progress, "users", int(kinds.get("user", 0)))
    return sum(int(count) for count in kinds.values())


def _account_activations(
    uow: UnitOfWork,
    *,
    charged: dict[int, int],
    activations: int,
    release: bool,
    progress: dict[str, Any],
) -> None:
    """Give the units of released activations back to their licences, and count what
    the step took (``charged``: units per licence)."""
    units = sum(charged.values())
    if release:
        # Units go back in the same transaction that removes the activations, one UPDATE
        # per licence, in key order (concurrent chunks lock licences in the same order).
        for licence_id in sorted(charged):
            _GIVE_UNITS_BACK.execute(uow, {"licence_id": licence_id, "units": charged[licence_id]})
        progress["unitsReleased"] = int(progress.get("unitsReleased", 0)) + units
    else:
        progress["unitsKeptConsumed"] = int(progress.get("unitsKeptConsumed", 0)) + units
    _bump(progress, "activations", activations)


_GIVE_UNITS_BACK = Prepared(
    update(Licence)
    .where(Licence.id == bindparam("licence_id"))
    .values(used_units=Licence.used_units - bindparam("units", type_=Integer()))
)

# A step of a chunk of devices alone, on SQLite (where a chunk takes many steps): fixed
# statements on the driver's cursor, with the chunk's groups as one parameter. Through
# SQLAlchemy, with an expanding IN of the chunk's ids, a quarter of phase 2 was Python
# (docs/benchmarks.md). The step's objects: ids first..last of the chunk's devices.
_DEVICES_OF_STEP = and_(
    in_keys(DirectoryObject.home_group_id, "chunk"),
    DirectoryObject.tenant_id == bindparam("tenant_id"),
    DirectoryObject.id >= bindparam("first"),
    DirectoryObject.id <= bindparam("last"),
    DirectoryObject.kind == "device",
)
_ACTIVATIONS_OF_STEP = Activation.object_id.in_(select(DirectoryObject.id).where(_DEVICES_OF_STEP))
_RELEASE_STEP_ACTIVATIONS = Prepared(
    delete(Activation)
    .where(_ACTIVATIONS_OF_STEP)
    .returning(Activation.licence_id, Activation.units)
)
_ORPHAN_STEP_ACTIVATIONS = Prepared(
    update(Activation)
    .where(_ACTIVATIONS_OF_STEP)
    .values(object_id=null(), orphaned_at=bindparam("now", type_=UTCDateTime()))
    .returning(Activation.licence_id, Activation.units)
)
_DELETE_STEP_DEVICES = Prepared(delete(DirectoryObject).where(_DEVICES_OF_STEP))
FIRST_KEY = -(2**63)  # below every key: keys are 64-bit on every database


def _remove_devices_step(
    uow: UnitOfWork,
    *,
    chunk: list[int],
    tenant_id: int,
    first: int,
    last: int,
    release: bool,
    progress: dict[str, Any],
    now: datetime,
) -> int:
    """What ``_remove_objects`` does for a step of a chunk of devices alone (SQLite):
    the activations of its devices with ids ``first`` to ``last`` (released or orphaned),
    then the devices. Returns how many devices went."""
    step = {"chunk": chunk, "tenant_id": tenant_id, "first": first, "last": last}
    if release:
        rows = _RELEASE_STEP_ACTIVATIONS.all(uow, step)
    else:
        rows = _ORPHAN_STEP_ACTIVATIONS.all(uow, {**step, "now": now})
    charged: dict[int, int] = {}
    for licence_id, units in rows:
        charged[licence_id] = charged.get(licence_id, 0) + int(units)
    _account_activations(
        uow, charged=charged, activations=len(rows), release=release, progress=progress
    )
    devices = _DELETE_STEP_DEVICES.execute(uow, step)
    _bump(progress, "devices", devices)
    _bump(progress, "users", 0)
    return devices


def _take_activations(uow: UnitOfWork, statement: Any) -> tuple[dict[int, int], int]:
    """Run the DELETE or UPDATE of activations ``statement`` and say what they held: the
    units per licence and how many there were, with no separate read of the same rows.

    PostgreSQL sums them in the statement (a data-modifying WITH) and sends one row per
    licence. SQLite has no such WITH: it returns a row per activation (in process, at
    most one step's), fetched at once and summed here."""
    returning = statement.returning(Activation.licence_id, Activation.units)
    connection = uow.session.connection()
    charged: dict[int, int] = {}
    activations = 0
    if uow.is_sqlite:
        for licence_id, units in connection.execute(returning).all():
            charged[licence_id] = charged.get(licence_id, 0) + int(units)
            activations += 1
        return charged, activations
    gone = returning.cte("gone")
    summed = select(gone.c.licence_id, func.sum(gone.c.units), func.count()).group_by(
        gone.c.licence_id
    )
    for licence_id, units, count in connection.execute(summed):
        charged[licence_id] = int(units)
        activations += int(count)
    return charged, activations


def _finish(
    uow: UnitOfWork, *, operation: Operation, progress: dict[str, Any], now: datetime, ttl: int
) -> None:
    release = bool(operation.params.get("releaseConsumedUnits"))
    for kind in ("groups", *COUNTED_KINDS):
        # Finished before its totals were counted: what it removed is the total.
        entry = dict(progress.get(kind) or {"done": 0})
        if entry.get("total") is None:
            entry["total"] = int(entry.get("done", 0))
        progress[kind] = entry
    result = {
        "operationId": str(operation.uuid),
        "groupId": str(operation.target_uuid),
        "deleted": {
            "groups": progress.get("groups", {}).get("done", 0),
            "devices": progress.get("devices", {}).get("done", 0),
            "users": progress.get("users", {}).get("done", 0),
            "memberships": progress.get("memberships", {}).get("done", 0),
            "activations": progress.get("activations", {}).get("done", 0),
        },
        "releaseConsumedUnits": release,
        "unitsReleased": progress.get("unitsReleased", 0),
        "unitsKeptConsumed": progress.get("unitsKeptConsumed", 0),
    }
    uow.session.execute(
        update(Operation)
        .where(Operation.id == operation.id)
        .values(
            state="succeeded",
            progress=progress,
            result_status=200,
            result_body=result,
            finished_at=now,
            expires_at=now + timedelta(seconds=ttl),
            claimed_by=None,
            lease_until=None,
        )
        .execution_options(synchronize_session=False)
    )
    actor = Actor(
        tenant_id=operation.tenant_id,
        account_id=None,
        username=operation.actor,
        role="admin",
        request_id=operation.request_id,
        source=operation.source,
    )
    audit.record_event(
        uow,
        actor=actor,
        action="group.delete.succeeded",
        target_type="group",
        target_uuid=operation.target_uuid,
        target_name=operation.target_name,
        outcome="succeeded",
        counts=result,
        detail=f"operation {operation.uuid}",
        now=now,
    )


def release_operation(
    uow: UnitOfWork, *, operation_id: int, worker_id: str, not_before: datetime
) -> None:
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


def fail_operation(
    uow: UnitOfWork, *, operation_id: int, error: str, now: datetime, ttl: int
) -> None:
    """Record that an operation cannot finish (a bug, never a client error).

    Its groups stay marked: hidden, and kept for an operator to inspect and resume.
    """
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
        action="group.delete.failed",
        target_type="group",
        target_uuid=operation.target_uuid,
        target_name=operation.target_name,
        outcome="failed",
        detail=error,
        now=now,
    )


@dataclass(frozen=True, slots=True)
class OperationView:
    id: int
    uuid: UUID
    kind: str
    state: str
    target_uuid: UUID
    target_name: str
    params: dict[str, Any]
    progress: dict[str, Any]
    result_status: int | None
    result_body: dict[str, Any] | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    expires_at: datetime | None
    first_pending_at: datetime | None
    collected_at: datetime | None

    @property
    def done(self) -> bool:
        return self.state in ("succeeded", "failed")


def _operation_view(op: Operation) -> OperationView:
    return OperationView(
        op.id,
        op.uuid,
        op.kind,
        op.state,
        op.target_uuid,
        op.target_name,
        op.params or {},
        op.progress or {},
        op.result_status,
        op.result_body,
        op.created_at,
        op.started_at,
        op.finished_at,
        op.expires_at,
        op.first_pending_at,
        op.collected_at,
    )


def get_operation(
    uow: UnitOfWork, *, actor: Actor, operation_id: str | UUID, now: datetime
) -> OperationView:
    """An operation of the tenant; finished ones disappear once their result expires."""
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
    return _operation_view(op)


def get_operation_by_key(uow: UnitOfWork, *, operation_id: int) -> OperationView:
    op = uow.session.get(Operation, operation_id, populate_existing=True)
    if op is None:
        raise NotFound(f"no operation {operation_id}")
    return _operation_view(op)


def mark_pending(uow: UnitOfWork, *, operation_uuid: UUID, now: datetime) -> None:
    """Remember when a client was first told to come back later (ESET's 202)."""
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


def purge_expired_operations(uow: UnitOfWork, *, now: datetime) -> int:
    """Forget finished operations whose result time is over."""
    result = uow.session.execute(
        delete(Operation).where(
            Operation.state.in_(("succeeded", "failed")), Operation.expires_at <= now
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def check_flags(release_units: Any, dry_run: Any) -> None:
    for name, value in (("releaseConsumedUnits", release_units), ("dryRun", dry_run)):
        if not isinstance(value, bool):
            raise InvalidInput(f"{name} must be true or false", field=name)
