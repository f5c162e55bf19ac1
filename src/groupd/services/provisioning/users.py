"""Provisioned users: user objects as an identity provider sees them (SCIM Users).

``userName`` is the login name (unique per tenant, compared ignoring case), ``active``
the status; the provider's ``externalId``, display name, e-mail values and the rest of
its profile are kept beside (decision 0051). Every live user of the tenant is visible,
whoever made it, so a provider can match the users that exist before it creates any.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import aliased

from groupd.errors import Conflict, InvalidInput, NotFound
from groupd.services import audit, objects
from groupd.services.common import Actor, Precondition, parse_uuid
from groupd.services.provisioning.filters import Condition
from groupd.services.provisioning.home import provisioning_home
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Activation, DirectoryObject, Group, Membership
from groupd.store.user_counts import count_live_users, count_users_into, user_moves
from groupd.values import NAME_MAX, clean_name

Home = aliased(Group)
EMAILS_MAX = 15  # kept; 15 of the longest fit objects.email_keys
MAX_COUNT = 1000
START_MAX = 2**31


@dataclass(frozen=True, slots=True)
class ProvisionedUser:
    """A user as a provider reads it."""

    id: int
    uuid: uuid.UUID
    user_name: str
    active: bool
    external_id: str | None
    display_name: str | None
    profile: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class UserSpec:
    """What a provider says a user is (a create, or a whole replacement)."""

    user_name: str
    active: bool = True
    external_id: str | None = None
    display_name: str | None = None
    emails: list[str] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class UserPage:
    """One page of a query (1-based ``start_index``) and the number of matches."""

    items: list[ProvisionedUser]
    total: int
    start_index: int


_COLUMNS = (
    DirectoryObject.id,
    DirectoryObject.uuid,
    DirectoryObject.login_name,
    DirectoryObject.status,
    DirectoryObject.external_id,
    DirectoryObject.display_name,
    DirectoryObject.profile,
    DirectoryObject.version,
    DirectoryObject.created_at,
    DirectoryObject.updated_at,
)


def _view(row: Sequence[Any]) -> ProvisionedUser:
    key, user_uuid, login, status, external, display, profile, version, created, updated = row
    return ProvisionedUser(
        id=key,
        uuid=user_uuid,
        user_name=login,
        active=status == "active",
        external_id=external,
        display_name=display,
        profile=profile or {},
        version=version,
        created_at=created,
        updated_at=updated,
    )


def _live_users(tenant_id: int, *columns: Any) -> Any:
    """Live users of the tenant (an object is live while its home is).

    The live homes are a set the query reads once, not a join per user: counting a
    tenant's users is then one scan of the index on objects' homes (decision 0051)."""
    live_homes = select(Home.id).where(
        Home.tenant_id == tenant_id, Home.kind == "static", Home.state == LIVE
    )
    return select(*(columns or _COLUMNS)).where(
        DirectoryObject.tenant_id == tenant_id,
        DirectoryObject.kind == "user",
        DirectoryObject.home_group_id.in_(live_homes),
    )


def get_user(uow: UnitOfWork, *, actor: Actor, user_id: str | uuid.UUID) -> ProvisionedUser:
    """One live user of the actor's tenant."""
    key = user_id if isinstance(user_id, uuid.UUID) else parse_uuid(user_id, what="user")
    row = uow.session.execute(
        _live_users(actor.tenant_id).where(DirectoryObject.uuid == key)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no user '{user_id}'")
    return _view(row)


def query_users(
    uow: UnitOfWork,
    *,
    actor: Actor,
    condition: Condition | None,
    start_index: int = 1,
    count: int = 100,
) -> UserPage:
    """The live users matching ``condition`` (a filter as SQL), in creation order, from
    the ``start_index``-th (1-based) on, at most ``count``; and how many match in all."""
    count = max(0, min(count, MAX_COUNT))
    start_index = min(max(1, start_index), START_MAX)  # past any tenant; SQL offsets are 64-bit
    query = _live_users(actor.tenant_id)
    if condition is None:
        # The kept counts of the live homes, not a count of every user (decision 0055).
        total = count_live_users(uow, tenant_id=actor.tenant_id)
    else:
        query = query.where(condition)
        counted = _live_users(actor.tenant_id, func.count()).where(condition)
        total = int(uow.session.execute(counted).scalar_one())
    rows = (
        uow.session.execute(
            query.order_by(DirectoryObject.id).offset(start_index - 1).limit(count)
        ).all()
        if count
        else []
    )
    return UserPage([_view(row) for row in rows], total, start_index)


def email_keys(emails: Sequence[str]) -> str | None:
    """The e-mail values as ``objects.email_keys`` holds them: folded, each framed by
    newlines, so that one LIKE finds a whole value (filters.py)."""
    values = [e.strip().lower() for e in emails if e and e.strip()][:EMAILS_MAX]
    for value in values:
        if len(value) > NAME_MAX:
            raise InvalidInput(
                f"emails: at most {NAME_MAX} characters a value",
                field="emails",
                scim_type="invalidValue",
            )
    if not values:
        return None
    return "\n" + "\n".join(v.replace("\n", " ") for v in values) + "\n"


def clean_external_id(value: str | None) -> str | None:
    """A provider's id for a resource: text of a name's rules (1-255 characters)."""
    return None if value is None else clean_name(value, field="externalId")


def _check_login_free(
    uow: UnitOfWork, *, actor: Actor, user_name: str, other_than: int | None = None
) -> None:
    query = select(DirectoryObject.id).where(
        DirectoryObject.tenant_id == actor.tenant_id,
        DirectoryObject.login_name.is_not(None),
        func.lower(DirectoryObject.login_name) == user_name.lower(),
    )
    if other_than is not None:
        query = query.where(DirectoryObject.id != other_than)
    if uow.session.execute(query.limit(1)).first() is not None:
        raise Conflict(f"a user named '{user_name}' already exists", code="login_taken")


def _columns(spec: UserSpec) -> dict[str, Any]:
    return {
        "external_id": clean_external_id(spec.external_id),
        "display_name": spec.display_name,
        "email_keys": email_keys(spec.emails),
        "profile": spec.profile,
    }


def create_user(uow: UnitOfWork, *, actor: Actor, spec: UserSpec, now: datetime) -> ProvisionedUser:
    """A new user in the tenant's provisioning home; its userName must be free (ignoring
    case). Recorded as ``object.create``."""
    actor.require("editor")
    user_name = clean_name(spec.user_name, field="userName")
    display = clean_name(spec.display_name, field="displayName") if spec.display_name else None
    _check_login_free(uow, actor=actor, user_name=user_name)
    home = provisioning_home(uow, actor=actor, now=now)
    made = objects.create_object(
        uow,
        actor=actor,
        spec=objects.ObjectSpec(
            kind="user",
            name=display or user_name,
            home_group_uuid=home,
            login_name=user_name,
            status="active" if spec.active else "inactive",
        ),
        now=now,
    )
    uow.session.execute(
        update(DirectoryObject).where(DirectoryObject.id == made.id).values(**_columns(spec))
    )
    return get_user(uow, actor=actor, user_id=made.uuid)


def _lock(
    uow: UnitOfWork,
    *,
    actor: Actor,
    user_id: str | uuid.UUID,
    precondition: Precondition | None,
) -> ProvisionedUser:
    key = user_id if isinstance(user_id, uuid.UUID) else parse_uuid(user_id, what="user")
    row = uow.session.execute(
        _live_users(actor.tenant_id).where(DirectoryObject.uuid == key).with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound(f"no user '{user_id}'")
    user = _view(row)
    if precondition is not None:
        # Checked against the locked row: the check and the change are one step (0020).
        precondition.check(user.version, what="the user")
    return user


def replace_user(
    uow: UnitOfWork,
    *,
    actor: Actor,
    user_id: str | uuid.UUID,
    spec: UserSpec,
    precondition: Precondition | None,
    now: datetime,
) -> ProvisionedUser:
    """Replace what a provider keeps on a user (PUT, and a PATCH once applied): login
    name, status, ids and profile. ``active`` false is a provider's soft delete: the user
    stays, inactive. Recorded as ``object.update``."""
    actor.require("editor")
    user = _lock(uow, actor=actor, user_id=user_id, precondition=precondition)
    user_name = clean_name(spec.user_name, field="userName")
    display = clean_name(spec.display_name, field="displayName") if spec.display_name else None
    if user_name != user.user_name:
        _check_login_free(uow, actor=actor, user_name=user_name, other_than=user.id)
    uow.session.execute(
        update(DirectoryObject)
        .where(DirectoryObject.id == user.id)
        .values(
            login_name=user_name,
            name=display or user_name,
            status="active" if spec.active else "inactive",
            version=user.version + 1,
            updated_at=now,
            **_columns(spec),
        )
    )
    view = get_user(uow, actor=actor, user_id=user.uuid)
    _record(uow, actor, "object.update", view, now)
    return view


def delete_user(
    uow: UnitOfWork,
    *,
    actor: Actor,
    user_id: str | uuid.UUID,
    precondition: Precondition | None,
    now: datetime,
) -> None:
    """Remove a user a provider deleted, as the native API removes an object (decision
    0056): its memberships go, its activations stay counted, orphaned, to be released as
    any deleted object's, and its userName is free at once for the provider's next
    create. Recorded as ``object.delete``."""
    actor.require("editor")
    user = _lock(uow, actor=actor, user_id=user_id, precondition=precondition)
    session = uow.session
    session.execute(
        update(Activation)
        .where(Activation.object_id == user.id, Activation.tenant_id == actor.tenant_id)
        .values(object_id=None, orphaned_at=now)
    )
    session.execute(delete(Membership).where(Membership.object_id == user.id))
    home = session.execute(
        delete(DirectoryObject)
        .where(DirectoryObject.id == user.id)
        .returning(DirectoryObject.home_group_id)
    ).scalar_one()
    count_users_into(uow, tenant_id=actor.tenant_id, changes=user_moves([home], []))
    _record(uow, actor, "object.delete", user, now)


def _record(
    uow: UnitOfWork, actor: Actor, action: str, user: ProvisionedUser, now: datetime
) -> None:
    audit.record_event(
        uow,
        actor=actor,
        action=action,
        target_type="user",
        target_uuid=user.uuid,
        target_name=user.user_name,
        outcome="succeeded",
        now=now,
    )
