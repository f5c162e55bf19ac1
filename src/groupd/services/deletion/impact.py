"""What a delete takes, and the guards that refuse it.

``measure_impact`` counts a subtree's contents with set-based queries whose cost follows
the subtree, not the tenant; ``find_blockers`` finds every group that forbids the delete:
a protected group, a group linked to an entity, a user group with active members.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ColumnElement,
    and_,
    case,
    func,
    select,
    true,
)

from groupd.errors import DeleteRefused
from groupd.services.deletion.policy import STANDARD, DeletePolicy
from groupd.store.db import UnitOfWork
from groupd.store.models import (
    GROUP_KINDS,
    LIVE,
    OBJECT_KINDS,
    Activation,
    DirectoryObject,
    Group,
    Licence,
    Membership,
)
from groupd.store.tree import in_subtree

BLOCKERS_SHOWN = 100


@dataclass(frozen=True, slots=True)
class Blocker:
    """One reason a delete is refused: the rule and the group that trips it."""

    rule: str
    group_uuid: UUID
    group_name: str
    linked_entity_type: str | None = None
    active_members: int | None = None


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


def subtree_filter(*, tenant_id: int, path: str | None, operation_id: int | None) -> Any:
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
    policy: DeletePolicy = STANDARD,
) -> Impact:
    """Count what the subtree holds and find every blocker.

    A few set-based statements count everything (``_count_contents``); the blockers'
    details are looked up only when they saw a protected or linked group, and the active
    members only when the subtree holds a user group.
    """
    in_tree = subtree_filter(tenant_id=tenant_id, path=path, operation_id=operation_id)
    impact = Impact(release_units=release_units)
    flags = _count_contents(uow, impact=impact, in_tree=in_tree)
    impact.blockers = find_blockers(session_uow=uow, in_tree=in_tree, flags=flags, policy=policy)
    return impact


@dataclass(frozen=True, slots=True)
class GuardFlags:
    """Whether any group of the subtree is protected or linked, and whether it holds a
    user group (from a pass over them)."""

    protected: bool
    linked: bool
    user_groups: bool = True


def _linked(group: Any) -> ColumnElement[bool]:
    return group.linked_entity_type.is_not(None)  # type: ignore[no-any-return]


def survey_groups(uow: UnitOfWork, *, in_tree: Any) -> tuple[dict[str, int], GuardFlags]:
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
    flags = GuardFlags(
        protected=any(row[2] for row in rows),
        linked=any(row[3] for row in rows),
        user_groups="user" in kinds,
    )
    return kinds, flags


def _count_contents(uow: UnitOfWork, *, impact: Impact, in_tree: Any) -> GuardFlags:
    """Groups by kind, objects by kind, memberships and activations per licence, with
    work that follows the subtree (docs/decisions/0043).

    Each aggregate reaches the subtree's objects as ``home_group_id IN (the subtree's
    group ids)``: SQLite lists the ids once and seeks the objects' index for each, so no
    group row is looked up between index entries; PostgreSQL hashes them (a semi-join).
    Kinds are counted by conditional sums over a fixed set, so no aggregate sorts a
    million rows. Memberships are those of the subtree's user groups plus those of its
    users in user groups outside it (``_count_outside_memberships``, only when it homes
    users: devices are never members). Activations per licence follow
    (``_count_activations``). Returns which guards need a closer look.
    """

    def tally(condition: ColumnElement[bool], label: str) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0).label(label)

    groups = (
        select(
            *(tally(Group.kind == kind, f"groups_{kind}") for kind in GROUP_KINDS),
            tally(Group.protected.is_(True), "protected"),
            tally(_linked(Group), "linked"),
        )
        .where(in_tree)
        .subquery("group_tally")
    )
    homed = (
        select(*(tally(DirectoryObject.kind == kind, f"objects_{kind}") for kind in OBJECT_KINDS))
        .where(DirectoryObject.home_group_id.in_(_group_ids(in_tree)))
        .subquery("object_tally")
    )
    members = (
        select(func.count().label("members_inside"))
        .where(Membership.group_id.in_(_group_ids(in_tree).where(Group.kind == "user")))
        .subquery("member_tally")
    )
    row = (
        uow.session.execute(
            select(groups, homed, members)
            .select_from(groups)
            .join(homed, true())
            .join(members, true())
        )
        .mappings()
        .one()
    )
    impact.groups = {
        kind: int(row[f"groups_{kind}"]) for kind in GROUP_KINDS if row[f"groups_{kind}"]
    }
    impact.devices = int(row["objects_device"])
    impact.users = int(row["objects_user"])
    impact.memberships = int(row["members_inside"])
    if impact.users:
        impact.memberships += _count_outside_memberships(uow, in_tree=in_tree)
    if impact.devices or impact.users:
        _count_activations(uow, impact=impact, in_tree=in_tree)
    return GuardFlags(
        protected=row["protected"] > 0,
        linked=row["linked"] > 0,
        user_groups=bool(row["groups_user"]),
    )


def _group_ids(in_tree: Any) -> Any:
    return select(Group.id).where(in_tree)


def _count_outside_memberships(uow: UnitOfWork, *, in_tree: Any) -> int:
    """Memberships of the users homed in the subtree in user groups outside it (those
    inside are counted from the groups' side)."""
    inside = select(Group.id).where(Group.id == Membership.group_id, in_tree)
    return int(
        uow.session.execute(
            select(func.count())
            .select_from(DirectoryObject)
            .join(Membership, Membership.object_id == DirectoryObject.id)
            .where(
                DirectoryObject.home_group_id.in_(_group_ids(in_tree)),
                DirectoryObject.kind == "user",
                ~inside.exists(),
            )
        ).scalar_one()
    )


def _count_activations(uow: UnitOfWork, *, impact: Impact, in_tree: Any) -> None:
    """Activations and units per licence of the objects homed in the subtree: each
    homed object's activations by ``object_id``."""
    query = (
        select(
            Activation.licence_id,
            func.count(),
            func.coalesce(func.sum(Activation.units), 0),
        )
        .join(DirectoryObject, DirectoryObject.id == Activation.object_id)
        .where(DirectoryObject.home_group_id.in_(_group_ids(in_tree)))
        .group_by(Activation.licence_id)
    )
    charged = {
        int(licence_id): (int(rows), int(units))
        for licence_id, rows, units in uow.session.execute(query)
    }
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


def find_blockers(
    *,
    session_uow: UnitOfWork,
    in_tree: Any,
    flags: GuardFlags | None = None,
    policy: DeletePolicy = STANDARD,
) -> list[Blocker]:
    """Every guard the caller's ``policy`` applies, as set-based queries over the
    subtree: protected groups, linked entities, and user groups with active members.

    With ``flags`` from a pass that already looked at every group of the subtree, the
    protected, linked and active-member queries run only when that pass saw such a group
    (a user group, for the last).
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
    if not policy.refuse_active_members or (flags is not None and not flags.user_groups):
        return blockers
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
        blockers=blockers,
    )
