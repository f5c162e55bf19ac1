"""Memberships: users in user groups. Deleting a group removes memberships, not users."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from groupd.errors import InvalidInput, NotFound
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
from groupd.store.models import LIVE, DirectoryObject, Group, Membership


@dataclass(frozen=True, slots=True)
class MembershipView:
    group_uuid: uuid.UUID
    group_name: str
    object_uuid: uuid.UUID


def _user_group(uow: UnitOfWork, *, actor: Actor, group_id: str | uuid.UUID, lock: bool) -> Group:
    key = group_id if isinstance(group_id, uuid.UUID) else parse_uuid(group_id, what="group")
    query = select(Group).where(
        Group.uuid == key, Group.tenant_id == actor.tenant_id, Group.state == LIVE
    )
    # Adding or removing a member locks the group, so a concurrent delete sees it.
    group = uow.session.execute(query.with_for_update() if lock else query).scalar_one_or_none()
    if group is None:
        raise NotFound(f"no group '{group_id}'")
    if group.kind != "user":
        raise InvalidInput(
            f"'{group.name}' is a {group.kind} group; members belong to user groups",
            field="groupId",
        )
    return group


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
    exists = uow.session.execute(
        select(Membership.group_id).where(
            Membership.group_id == group.id, Membership.object_id == user.id
        )
    ).first()
    if exists:
        return False
    try:
        with uow.session.begin_nested():
            uow.session.add(
                Membership(
                    group_id=group.id, object_id=user.id, tenant_id=actor.tenant_id, created_at=now
                )
            )
            uow.session.flush()
    except IntegrityError:
        return False
    _record(uow, actor, "membership.add", group, object_id, login_name, now)
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
    result = uow.session.execute(
        delete(Membership).where(Membership.group_id == group.id, Membership.object_id == user.id)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound(f"'{user.name}' is not a member of '{group.name}'")
    _record(uow, actor, "membership.remove", group, object_id, login_name, now)


def _record(
    uow: UnitOfWork,
    actor: Actor,
    action: str,
    group: Group,
    object_id: str | uuid.UUID,
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
