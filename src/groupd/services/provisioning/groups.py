"""Provisioned groups: user groups as an identity provider sees them (SCIM Groups).

``displayName`` is the group's name (unique among the tenant's user groups), members are
memberships of live users. Membership changes are set-based: a change naming a thousand
users is a few statements, whatever its size (decision 0053).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import aliased

from groupd.errors import InvalidInput, NotFound
from groupd.services import audit, deletion, groups
from groupd.services.common import Actor, Precondition, parse_uuid
from groupd.services.provisioning.filters import Condition
from groupd.services.provisioning.users import clean_external_id
from groupd.store.db import UnitOfWork
from groupd.store.members import add_memberships, live_member_keys
from groupd.store.models import LIVE, DirectoryObject, Group, Membership
from groupd.values import clean_name

Home = aliased(Group)
MAX_COUNT = 1000
START_MAX = 2**31
MEMBERS_MAX = 10_000  # one request's members (Entra sends a few, Okta up to hundreds)
UNSET: Any = groups.GroupChanges.unset()


@dataclass(frozen=True, slots=True)
class Member:
    """A member as a group lists it."""

    uuid: uuid.UUID
    display: str


@dataclass(frozen=True, slots=True)
class ProvisionedGroup:
    """A user group as a provider reads it; ``members`` is None when not asked for."""

    id: int
    uuid: uuid.UUID
    display_name: str
    external_id: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    members: list[Member] | None


@dataclass(frozen=True, slots=True)
class GroupPage:
    items: list[ProvisionedGroup]
    total: int
    start_index: int


@dataclass(slots=True)
class MemberChange:
    """What a provider asks of a group's members, applied in this order: ``replace``
    (the whole set; None: no replacement), then ``remove_all``, ``remove`` and ``add``."""

    replace: list[uuid.UUID] | None = None
    remove_all: bool = False
    remove: list[uuid.UUID] | None = None
    add: list[uuid.UUID] | None = None

    def empty(self) -> bool:
        return self.replace is None and not self.remove_all and not self.remove and not self.add


_COLUMNS = (
    Group.id,
    Group.uuid,
    Group.name,
    Group.external_id,
    Group.version,
    Group.created_at,
    Group.updated_at,
)


def _user_groups(tenant_id: int) -> Any:
    return select(*_COLUMNS).where(
        Group.tenant_id == tenant_id, Group.kind == "user", Group.state == LIVE
    )


def _members_of(uow: UnitOfWork, keys: Sequence[int]) -> dict[int, list[Member]]:
    found: dict[int, list[Member]] = {key: [] for key in keys}
    if not keys:
        return found
    rows = uow.session.execute(
        select(Membership.group_id, DirectoryObject.uuid, DirectoryObject.name)
        .join(DirectoryObject, DirectoryObject.id == Membership.object_id)
        .join(Home, Home.id == DirectoryObject.home_group_id)
        .where(Membership.group_id.in_(keys), Home.state == LIVE)
        .order_by(Membership.group_id, DirectoryObject.id)
    )
    for group_key, member_uuid, name in rows:
        found[group_key].append(Member(member_uuid, name))
    return found


def _views(
    uow: UnitOfWork, rows: Sequence[Sequence[Any]], *, with_members: bool
) -> list[ProvisionedGroup]:
    members = _members_of(uow, [row[0] for row in rows]) if with_members else {}
    return [
        ProvisionedGroup(
            id=key,
            uuid=group_uuid,
            display_name=name,
            external_id=external,
            version=version,
            created_at=created,
            updated_at=updated,
            members=members[key] if with_members else None,
        )
        for key, group_uuid, name, external, version, created, updated in rows
    ]


def get_group(
    uow: UnitOfWork, *, actor: Actor, group_id: str | uuid.UUID, with_members: bool = True
) -> ProvisionedGroup:
    """One live user group of the actor's tenant, with its members unless told not."""
    key = group_id if isinstance(group_id, uuid.UUID) else parse_uuid(group_id, what="group")
    row = uow.session.execute(_user_groups(actor.tenant_id).where(Group.uuid == key)).one_or_none()
    if row is None:
        raise NotFound(f"no group '{group_id}'")
    return _views(uow, [row], with_members=with_members)[0]


def query_groups(
    uow: UnitOfWork,
    *,
    actor: Actor,
    condition: Condition | None,
    start_index: int = 1,
    count: int = 100,
    with_members: bool = True,
) -> GroupPage:
    """The live user groups matching ``condition``, in creation order, one page."""
    count = max(0, min(count, MAX_COUNT))
    start_index = min(max(1, start_index), START_MAX)  # past any tenant; SQL offsets are 64-bit
    query = _user_groups(actor.tenant_id)
    if condition is not None:
        query = query.where(condition)
    total = int(
        uow.session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    )
    rows = (
        uow.session.execute(query.order_by(Group.id).offset(start_index - 1).limit(count)).all()
        if count
        else []
    )
    return GroupPage(_views(uow, rows, with_members=with_members), total, start_index)


def create_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    display_name: str,
    external_id: str | None,
    members: Collection[uuid.UUID],
    now: datetime,
) -> ProvisionedGroup:
    """A new user group with its members; its name must be free among the tenant's
    user groups. Recorded as ``group.create`` and one ``membership.add`` with the count."""
    actor.require("editor")
    made = groups.create_group(
        uow,
        actor=actor,
        spec=groups.GroupSpec(name=display_name, kind="user"),
        now=now,
    )
    uow.session.execute(
        update(Group).where(Group.id == made.id).values(external_id=clean_external_id(external_id))
    )
    if members:
        _add(uow, actor=actor, group_key=made.id, users=_resolve(uow, actor, members), now=now)
        _record(uow, actor, made.uuid, made.name, {"added": len(set(members))}, now)
    return get_group(uow, actor=actor, group_id=made.uuid)


def _lock(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | uuid.UUID,
    precondition: Precondition | None,
) -> ProvisionedGroup:
    key = group_id if isinstance(group_id, uuid.UUID) else parse_uuid(group_id, what="group")
    # Locked: a concurrent delete waits, then sees the members this change leaves.
    row = uow.session.execute(
        _user_groups(actor.tenant_id).where(Group.uuid == key).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(f"no group '{group_id}'")
    group = _views(uow, [row], with_members=False)[0]
    if precondition is not None:
        # Checked against the locked row: the check and the change are one step (0020).
        precondition.check(group.version, what="the group")
    return group


def update_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | uuid.UUID,
    display_name: str | None,
    external_id: Any,
    members: MemberChange,
    precondition: Precondition | None,
    now: datetime,
) -> ProvisionedGroup:
    """Rename a group, set its ``externalId`` (``UNSET`` leaves it) and change its
    members, all or nothing. Every member named must be a live user of the tenant;
    removing one that is not a member is no change."""
    actor.require("editor")
    group = _lock(uow, actor=actor, group_id=group_id, precondition=precondition)
    values: dict[str, Any] = {}
    renamed = display_name is not None and display_name != group.display_name
    if renamed:
        # The group service renames (its rules, its event); the version moves on once.
        groups.update_group(
            uow,
            actor=actor,
            group_id=group.uuid,
            changes=groups.GroupChanges(name=clean_name(display_name or "", field="displayName")),
            now=now,
        )
    if external_id is not UNSET and external_id != group.external_id:
        values["external_id"] = clean_external_id(external_id)
    counts = _change_members(uow, actor=actor, group=group, change=members, now=now)
    if renamed or values or any(counts.values()):
        values["version"] = group.version + 1
        values["updated_at"] = now
        uow.session.execute(update(Group).where(Group.id == group.id).values(**values))
    if any(counts.values()):
        _record(uow, actor, group.uuid, group.display_name, counts, now)
    return get_group(uow, actor=actor, group_id=group.uuid, with_members=False)


def _change_members(
    uow: UnitOfWork, *, actor: Actor, group: ProvisionedGroup, change: MemberChange, now: datetime
) -> dict[str, int]:
    counts = {"added": 0, "removed": 0}
    session = uow.session
    named = [*(change.replace or []), *(change.add or [])]
    users = _resolve(uow, actor, named) if named else {}
    if change.replace is not None:
        keep = [users[u] for u in set(change.replace)]
        gone = delete(Membership).where(Membership.group_id == group.id)
        if keep:
            gone = gone.where(Membership.object_id.not_in(keep))
        counts["removed"] += _rowcount(session.execute(gone))
        counts["added"] += _add(
            uow,
            actor=actor,
            group_key=group.id,
            users={u: users[u] for u in change.replace},
            now=now,
        )
    if change.remove_all:
        counts["removed"] += _rowcount(
            session.execute(delete(Membership).where(Membership.group_id == group.id))
        )
    if change.remove:
        _check_size(change.remove)
        member_keys = select(DirectoryObject.id).where(
            DirectoryObject.tenant_id == actor.tenant_id,
            DirectoryObject.uuid.in_(set(change.remove)),
        )
        counts["removed"] += _rowcount(
            session.execute(
                delete(Membership).where(
                    Membership.group_id == group.id, Membership.object_id.in_(member_keys)
                )
            )
        )
    if change.add:
        counts["added"] += _add(
            uow, actor=actor, group_key=group.id, users={u: users[u] for u in change.add}, now=now
        )
    return counts


def _rowcount(result: Any) -> int:
    return int(result.rowcount or 0)


def _check_size(members: Collection[uuid.UUID]) -> None:
    if len(members) > MEMBERS_MAX:
        raise InvalidInput(f"at most {MEMBERS_MAX} members per request", field="members")


def _resolve(uow: UnitOfWork, actor: Actor, members: Collection[uuid.UUID]) -> dict[uuid.UUID, int]:
    """The member keys of the live users named, in one query; every one must exist."""
    wanted = set(members)
    _check_size(wanted)
    found = live_member_keys(uow, tenant_id=actor.tenant_id, uuids=wanted)
    missing = sorted(str(u) for u in wanted - found.keys())
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise NotFound(
            f"members name no user of this directory: {shown}",
            code="unknown_member",
            field="members",
        )
    return found


def _add(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_key: int,
    users: dict[uuid.UUID, int],
    now: datetime,
) -> int:
    """Insert the memberships that do not exist yet: one statement."""
    return add_memberships(
        uow,
        tenant_id=actor.tenant_id,
        group_key=group_key,
        member_keys=users.values(),
        now=now,
    )


def _record(
    uow: UnitOfWork,
    actor: Actor,
    group_uuid: uuid.UUID,
    name: str,
    counts: dict[str, int],
    now: datetime,
) -> None:
    # One event per kind of change, with its count, not one per member: the events
    # (and webhooks) of a thousand-member change are two, like a subtree delete's.
    for action, key in (("membership.remove", "removed"), ("membership.add", "added")):
        if counts.get(key):
            audit.record_event(
                uow,
                actor=actor,
                action=action,
                target_type="group",
                target_uuid=group_uuid,
                target_name=name,
                outcome="succeeded",
                counts={"members": counts[key]},
                detail=f"{counts[key]} member(s), by an identity provider (SCIM)",
                now=now,
            )


def delete_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | uuid.UUID,
    precondition: Precondition | None,
    now: datetime,
    retention_seconds: int = 0,
) -> deletion.DeletePlan:
    """Delete a user group a provider deleted, through the delete service under the
    identity provider's policy (not refused for active members; a protected group is):
    it vanishes from every read at once (to the recycle bin for ``retention_seconds``);
    the memberships go with it, the users stay."""
    actor.require("editor")
    group = _lock(uow, actor=actor, group_id=group_id, precondition=precondition)
    return deletion.request_delete(
        uow,
        actor=actor,
        group_id=group.uuid,
        release_units=False,
        policy=deletion.IDENTITY_PROVIDER,
        now=now,
        retention_seconds=retention_seconds,
    )
