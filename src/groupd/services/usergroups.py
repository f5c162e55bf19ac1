"""User groups addressed by name: create, search, membership by login name, delete.

APIs that name user groups (AppViewX; any later one) use these. The rules stay those of
``groups``, ``memberships`` and ``deletion``: a user group's name is unique in its tenant,
only users are members, the built-in "Admin" group and groups with active members are
never deleted.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select

from groupd.errors import InvalidInput, NotFound
from groupd.services import deletion, groups, memberships, objects
from groupd.services.common import MAX_PAGE, Actor
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group, Membership

MAX_OFFSET = 1_000_000_000
SORT_COLUMNS = ("name", "description", "createdAt")
NAMES_MAX = 1000


@dataclass(frozen=True, slots=True)
class UserGroupSummary:
    """A user group as a search lists it."""

    uuid: uuid.UUID
    name: str
    description: str
    protected: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class UserGroupPage:
    """One page of a search, with the number of matches over every page."""

    items: list[UserGroupSummary]
    total: int
    offset: int


@dataclass(frozen=True, slots=True)
class MembershipChange:
    """What an assign/unassign call changed (names, in the order asked)."""

    user_uuid: uuid.UUID
    login_name: str
    assigned: list[str]
    unassigned: list[str]


def _require_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise InvalidInput(
            "a user group name is required", code="usergroup_name_missing", field="name"
        )
    return name


def get_user_group(uow: UnitOfWork, *, actor: Actor, name: str | None) -> groups.GroupView:
    """The live user group of the actor's tenant called ``name``."""
    name = _require_name(name)
    try:
        return groups.get_group_by_name(uow, actor=actor, kind="user", name=name)
    except NotFound:
        raise NotFound(
            f"no user group named '{name}'", code="usergroup_not_found", names=[name]
        ) from None


def create_user_group(
    uow: UnitOfWork, *, actor: Actor, name: str | None, description: str | None, now: datetime
) -> groups.GroupView:
    """A new user group without a parent; its name must be free in the tenant."""
    actor.require("editor")
    return groups.create_group(
        uow,
        actor=actor,
        spec=groups.GroupSpec(name=_require_name(name), kind="user", description=description),
        now=now,
    )


def search_user_groups(
    uow: UnitOfWork,
    *,
    actor: Actor,
    filter_value: str | None = None,
    sort_by: str = "name",
    descending: bool = False,
    offset: int = 0,
    limit: int = 50,
) -> UserGroupPage:
    """Live user groups whose name or description contains ``filter_value`` (ignoring
    case), sorted, one offset page at a time, with the total number of matches.

    Offset paging, not keyset: the callers' protocol counts records from a start index.
    The tenant's user groups are few enough (they are named one by one) for that.
    """
    if sort_by not in SORT_COLUMNS:
        raise InvalidInput(
            f"sort column must be one of {', '.join(SORT_COLUMNS)}", field="sortColumn"
        )
    if not 0 <= offset <= MAX_OFFSET:
        raise InvalidInput(f"the start of a page is between 0 and {MAX_OFFSET}", field="offset")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"a page holds 1 to {MAX_PAGE} records", field="limit")
    conditions: list[Any] = [
        Group.tenant_id == actor.tenant_id,
        Group.kind == "user",
        Group.state == LIVE,
    ]
    if filter_value:
        needle = filter_value.lower()
        conditions.append(
            or_(
                func.lower(Group.name).contains(needle, autoescape=True),
                func.lower(Group.description).contains(needle, autoescape=True),
            )
        )
    total = int(
        uow.session.execute(select(func.count()).select_from(Group).where(*conditions)).scalar_one()
    )
    column = {"name": Group.name, "description": Group.description, "createdAt": Group.created_at}[
        sort_by
    ]
    # The id breaks ties, so equal descriptions still page without repeats or gaps.
    order = (column.desc(), Group.id.desc()) if descending else (column.asc(), Group.id.asc())
    rows = uow.session.execute(
        select(Group.uuid, Group.name, Group.description, Group.protected, Group.created_at)
        .where(*conditions)
        .order_by(*order)
        .offset(offset)
        .limit(limit)
    ).all()
    items = [
        UserGroupSummary(r.uuid, r.name, r.description, r.protected, r.created_at) for r in rows
    ]
    return UserGroupPage(items, total, offset)


def _clean_names(names: Sequence[str], *, field: str) -> list[str]:
    if len(names) > NAMES_MAX:
        raise InvalidInput(f"{field} names at most {NAMES_MAX} user groups", field=field)
    for name in names:
        if not name.strip():
            raise InvalidInput(
                f"{field} holds an empty user group name",
                code="usergroup_name_missing",
                field=field,
            )
    return list(dict.fromkeys(names))


def update_user_memberships(
    uow: UnitOfWork,
    *,
    actor: Actor,
    login_name: str | None,
    assign: Sequence[str],
    unassign: Sequence[str],
    now: datetime,
) -> MembershipChange:
    """Make the user with ``login_name`` a member of the ``assign`` groups and no longer
    a member of the ``unassign`` groups, all named.

    All or nothing: an unknown user or group changes nothing, and the error lists every
    unknown name. Assigning a group the user is already in, or unassigning one it is not
    in, is no change. The groups are row-locked first, so a delete of one of them either
    sees the new member (and refuses) or has already hidden the group (404 here).
    """
    actor.require("editor")
    if login_name is None or not login_name.strip():
        raise InvalidInput("a login name is required", code="login_name_missing", field="loginName")
    to_assign = _clean_names(assign, field="assign")
    to_unassign = _clean_names(unassign, field="unassign")
    both = sorted(set(to_assign) & set(to_unassign))
    if both:
        raise InvalidInput(
            "a user group cannot be assigned and unassigned in one call: "
            + ", ".join(f"'{n}'" for n in both),
            code="conflicting_assignment",
            names=both,
        )
    try:
        user = objects.get_user_by_login(uow, actor=actor, login_name=login_name)
    except NotFound:
        raise NotFound(
            f"no user with login name '{login_name}'", code="user_not_found", loginName=login_name
        ) from None
    wanted = [*to_assign, *to_unassign]
    found: dict[str, tuple[int, uuid.UUID]] = {}
    if wanted:
        rows = uow.session.execute(
            select(Group.id, Group.uuid, Group.name)
            .where(
                Group.tenant_id == actor.tenant_id,
                Group.kind == "user",
                Group.state == LIVE,
                Group.name.in_(wanted),
            )
            # One lock order (by key) for every caller: two calls cannot deadlock.
            .order_by(Group.id)
            .with_for_update()
        ).all()
        found = {row.name: (row.id, row.uuid) for row in rows}
    missing = [name for name in wanted if name not in found]
    if missing:
        raise NotFound(
            "no user group named " + ", ".join(f"'{n}'" for n in missing),
            code="usergroup_not_found",
            names=missing,
        )
    current = (
        set(
            uow.session.execute(
                select(Membership.group_id).where(
                    Membership.object_id == user.id,
                    Membership.group_id.in_([key for key, _ in found.values()]),
                )
            ).scalars()
        )
        if found
        else set()
    )
    assigned: list[str] = []
    unassigned: list[str] = []
    for name in to_assign:
        key, group_uuid = found[name]
        if key not in current and memberships.add_member(
            uow,
            actor=actor,
            group_id=group_uuid,
            object_id=user.uuid,
            now=now,
            login_name=login_name,
        ):
            assigned.append(name)
    for name in to_unassign:
        key, group_uuid = found[name]
        if key in current:
            memberships.remove_member(
                uow,
                actor=actor,
                group_id=group_uuid,
                object_id=user.uuid,
                now=now,
                login_name=login_name,
            )
            unassigned.append(name)
    return MembershipChange(user.uuid, login_name, assigned, unassigned)


def request_user_group_delete(
    uow: UnitOfWork, *, actor: Actor, name: str | None, now: datetime, retention_seconds: int = 0
) -> deletion.DeletePlan:
    """Phase 1 of deleting the user group called ``name`` (and any user groups under it).

    The guards are the delete's own: the built-in "Admin" group and groups with active
    members are refused (inactive members do not count); the memberships go, the users
    stay. With ``retention_seconds`` the group waits in the recycle bin that long.
    """
    actor.require("editor")
    view = get_user_group(uow, actor=actor, name=name)
    try:
        return deletion.request_delete(
            uow,
            actor=actor,
            group_id=view.uuid,
            release_units=False,
            now=now,
            retention_seconds=retention_seconds,
        )
    except NotFound:
        # Deleted by someone else between the lookup and the lock: the same answer.
        raise NotFound(
            f"no user group named '{view.name}'",
            code="usergroup_not_found",
            names=[view.name],
        ) from None
