"""Memberships: users in user groups. Deleting a group removes memberships, not users."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.exc import IntegrityError

from groupd.errors import Conflict, InvalidInput, NotFound
from groupd.services import audit
from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    parse_uuid,
)
from groupd.services.objects import ObjectView, _live_query, _view, get_object
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, DirectoryObject, Group, Membership, table_of
from groupd.store.prepared import Prepared


@dataclass(frozen=True, slots=True)
class MembershipView:
    group_uuid: uuid.UUID
    group_name: str
    object_uuid: uuid.UUID


@dataclass(frozen=True, slots=True)
class _UserGroup:
    id: int
    uuid: uuid.UUID
    name: str


def _user_group_query() -> Any:
    return select(Group.id, Group.uuid, Group.name, Group.kind).where(
        Group.uuid == bindparam("uuid"),
        Group.tenant_id == bindparam("tenant_id"),
        Group.state == LIVE,
    )


_FIND_GROUP = Prepared(_user_group_query())
# Adding or removing a member locks the group, so a concurrent delete sees it.
_LOCK_GROUP = Prepared(_user_group_query().with_for_update())
_IS_MEMBER = Prepared(
    select(Membership.group_id).where(
        Membership.group_id == bindparam("group_id"), Membership.object_id == bindparam("object_id")
    )
)
_ADD = Prepared(
    insert(table_of(Membership)), column_keys=["group_id", "object_id", "tenant_id", "created_at"]
)
_REMOVE = Prepared(
    delete(Membership).where(
        Membership.group_id == bindparam("group_id"), Membership.object_id == bindparam("object_id")
    )
)


def _user_group(
    uow: UnitOfWork, *, actor: Actor, group_id: str | uuid.UUID, lock: bool
) -> _UserGroup:
    key = group_id if isinstance(group_id, uuid.UUID) else parse_uuid(group_id, what="group")
    found = (_LOCK_GROUP if lock else _FIND_GROUP).one_or_none(
        uow, {"uuid": key, "tenant_id": actor.tenant_id}
    )
    if found is None:
        raise NotFound(f"no group '{group_id}'")
    group_key, group_uuid, name, kind = found
    if kind != "user":
        raise InvalidInput(
            f"'{name}' is a {kind} group; members belong to user groups", field="groupId"
        )
    return _UserGroup(group_key, group_uuid, name)


def add_member(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | uuid.UUID,
    object_id: str | uuid.UUID,
    now: datetime,
    login_name: str | None = None,
) -> bool:
    """Make a user a member of a user group, recorded as ``membership.add``. Returns False
    (and records nothing) when it already was.

    ``login_name``: the caller named the user by login name and the group by its name;
    the event then names them so (see ``_record``).
    """
    group = _user_group(uow, actor=actor, group_id=group_id, lock=True)
    user = get_object(uow, actor=actor, object_id=object_id)
    if user.kind != "user":
        raise InvalidInput("only users can be members of user groups", field="objectId")
    pair = {"group_id": group.id, "object_id": user.id}
    # The group is locked (PostgreSQL) or the database is (SQLite): nobody adds the same
    # membership between this check and the insert.
    if _IS_MEMBER.one_or_none(uow, pair) is not None:
        return False
    try:
        _ADD.execute(uow, {**pair, "tenant_id": actor.tenant_id, "created_at": now})
    except IntegrityError:
        # Only a concurrent change of the user (its home deleted meanwhile) gets here;
        # the transaction is spoilt, so the request ends.
        raise Conflict(
            "the user or the group changed while the membership was being added; try again",
            code="concurrent_change",
        ) from None
    _record(uow, actor, "membership.add", group, object_id, user.uuid, login_name, now)
    return True


def remove_member(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | uuid.UUID,
    object_id: str | uuid.UUID,
    now: datetime,
    login_name: str | None = None,
) -> None:
    """End a membership, recorded as ``membership.remove``; the user stays.

    ``login_name`` as for ``add_member``.
    """
    group = _user_group(uow, actor=actor, group_id=group_id, lock=True)
    user = get_object(uow, actor=actor, object_id=object_id)
    if _REMOVE.execute(uow, {"group_id": group.id, "object_id": user.id}) == 0:
        raise NotFound(f"'{user.name}' is not a member of '{group.name}'")
    _record(uow, actor, "membership.remove", group, object_id, user.uuid, login_name, now)


def _record(
    uow: UnitOfWork,
    actor: Actor,
    action: str,
    group: _UserGroup,
    object_id: str | uuid.UUID,
    member_uuid: uuid.UUID,
    login_name: str | None,
    now: datetime,
) -> None:
    # Callers that address groups by name (user-group APIs) see the group's name and the
    # user's login name in their events; callers by id, the member's id as they gave it.
    named = login_name is not None
    audit.record_event(
        uow,
        actor=actor,
        action=action,
        target_type="group",
        target_uuid=group.uuid,
        target_name=group.name if named else None,
        outcome="succeeded",
        detail=f"member '{login_name}'" if named else f"member {object_id}",
        now=now,
        event_data={"groupId": str(group.uuid), "memberId": str(member_uuid)},
    )


def list_members(
    uow: UnitOfWork, *, actor: Actor, group_id: str, limit: int = 50, cursor: str | None = None
) -> Page:
    """The live users who are members of a user group."""
    check_limit(limit)
    group = _user_group(uow, actor=actor, group_id=group_id, lock=False)
    rows = uow.session.execute(
        _live_query(actor.tenant_id)
        .join(Membership, Membership.object_id == DirectoryObject.id)
        .where(Membership.group_id == group.id, DirectoryObject.id > decode_cursor(cursor))
        .order_by(DirectoryObject.id)
        .limit(limit + 1)
    ).all()
    items: list[ObjectView] = [_view(row) for row in rows[:limit]]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


def list_memberships(uow: UnitOfWork, *, actor: Actor, object_id: str) -> list[MembershipView]:
    """The live user groups a user belongs to."""
    user = get_object(uow, actor=actor, object_id=object_id)
    rows = uow.session.execute(
        select(Group.uuid, Group.name)
        .join(Membership, Membership.group_id == Group.id)
        .where(
            Membership.object_id == user.id,
            Group.state == LIVE,
            Group.tenant_id == actor.tenant_id,
        )
        .order_by(Group.name)
    ).all()
    return [MembershipView(row.uuid, row.name, user.uuid) for row in rows]
