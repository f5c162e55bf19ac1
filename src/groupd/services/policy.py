"""Policy groups addressed the way policy engines address them: by an opaque group id,
by owning agent, by value type.

Policy groups are the core's ``kind="policy"`` groups; this module adds what a policy API
needs on top of ``services.groups``: a stable public id of the form
``<key>_<64 hex>``, resolving such an id back to a group of the caller's tenant, listing
an agent's groups whole, and create/update/delete use cases that record their audit
events. The OAA dialect is its first user; nothing here knows HTTP or OAA's wire names.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from groupd.errors import InvalidInput, NotFound
from groupd.services import deletion, groups
from groupd.services.common import MAX_PAGE, Actor
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group
from groupd.values import parse_values

POLICY = "policy"
SHOWN_VALUE_MAX = 64
# The key is a database integer (at most 19 digits); the digest is SHA-256 in lower hex.
_GROUP_ID = re.compile(r"([1-9][0-9]{0,18})_([0-9a-f]{64})")


def uuid_digest(group_uuid: uuid.UUID) -> str:
    """SHA-256, in lower-case hex, of the group UUID's canonical text form."""
    return hashlib.sha256(str(group_uuid).encode("ascii")).hexdigest()


def make_group_id(view: groups.GroupView) -> str:
    """The public id of a policy group: ``<internal key>_<sha256 hex of its UUID>``.

    Both parts are fixed when the group is created, so the id is stable for the group's
    life. The digest binds the id to this very group: on SQLite a key can be used again
    after a delete, and the old id then still names nothing, because the new group has
    another UUID.
    """
    return f"{view.id}_{uuid_digest(view.uuid)}"


def resolve_group_id(uow: UnitOfWork, *, actor: Actor, group_id: str) -> groups.GroupView:
    """The live policy group of the actor's tenant that ``group_id`` names, or NotFound.

    Both parts must match: the key finds the row, the digest must be its UUID's, and the
    row must be a live policy group of the caller's tenant. A malformed id names nothing
    that exists, so it is NotFound as well.
    """
    match = _GROUP_ID.fullmatch(group_id.strip().lower())
    if match is None:
        raise NotFound(f"no policy group '{group_id}'")
    key, digest = int(match.group(1)), match.group(2)
    row = uow.session.execute(
        select(Group.uuid).where(
            Group.id == key,
            Group.tenant_id == actor.tenant_id,
            Group.kind == POLICY,
            Group.state == LIVE,
        )
    ).one_or_none()
    if row is None or not hmac.compare_digest(uuid_digest(row.uuid), digest):
        raise NotFound(f"no policy group '{group_id}'")
    return groups.get_group(uow, actor=actor, group_id=row.uuid)


def parse_policy_values(value_type: str, values: list[str], *, field: str) -> list[str]:
    """Each value parsed and normalised for ``value_type`` (see ``groupd.values``).

    A bad value is InvalidInput naming the field, the value's position and the value
    itself, so a client sending hundreds of values learns which one to fix.
    """
    parse_values(value_type, [])  # an unknown type is the caller's error, not a value's
    parsed: dict[str, None] = {}
    for index, raw in enumerate(values):
        try:
            parsed.update(dict.fromkeys(parse_values(value_type, [raw])))
        except InvalidInput as error:
            shown = raw if len(raw) <= SHOWN_VALUE_MAX else raw[:SHOWN_VALUE_MAX] + "..."
            named = repr(shown) in error.detail  # most parsers already quote the value
            where = f"{field}[{index}]" if named else f"{field}[{index}] {shown!r}"
            raise InvalidInput(f"{where}: {error.detail}", field=field, value=shown) from None
    return list(parsed)


def list_agent_groups(
    uow: UnitOfWork,
    *,
    actor: Actor,
    agent_id: str,
    value_types: Sequence[str] | None = None,
) -> list[groups.GroupView]:
    """Every live policy group of ``agent_id`` in the tenant, in creation order, optionally
    only those of ``value_types``. Policy APIs list an agent's groups whole, so this walks
    every page of ``list_groups``."""
    items: list[groups.GroupView] = []
    cursor: str | None = None
    while True:
        page = groups.list_groups(
            uow,
            actor=actor,
            kind=POLICY,
            agent_id=agent_id,
            value_types=value_types,
            limit=MAX_PAGE,
            cursor=cursor,
        )
        items.extend(page.items)
        if page.next_cursor is None:
            return items
        cursor = page.next_cursor


def create_policy_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    name: str,
    value_type: str,
    values: list[str],
    agent_id: str | None,
    description: str | None,
    now: datetime,
    values_field: str = "values",
) -> groups.GroupView:
    """Create a flat policy group whose values are validated for ``value_type`` (a bad one
    is named in the error, under ``values_field``, the caller's name for the field); a
    taken name is Conflict(code="name_taken"). The audit event commits with the group."""
    values = parse_policy_values(value_type, values, field=values_field)
    return groups.create_group(
        uow,
        actor=actor,
        spec=groups.GroupSpec(
            name=name,
            kind=POLICY,
            value_type=value_type,
            values=values,
            agent_id=agent_id,
            description=description,
        ),
        now=now,
    )


def update_policy_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group: groups.GroupView,
    name: str | None = None,
    description: str | None = None,
    add_values: list[str] | None = None,
    remove_values: list[str] | None = None,
    now: datetime,
    add_field: str = "add_values",
) -> groups.GroupView:
    """Rename, describe, add and remove values of a policy group (``None``: leave as is).

    Added values are validated for the group's type (a bad one is named in the error,
    under ``add_field``); removing a value that is not there is ignored. The audit event
    commits with the change.
    """
    added = parse_policy_values(group.value_type or "", add_values or [], field=add_field)
    changes = groups.GroupChanges(add_values=added, remove_values=list(remove_values or []))
    if name is not None:
        changes.name = name
    if description is not None:
        changes.description = description
    return groups.update_group(uow, actor=actor, group_id=group.uuid, changes=changes, now=now)


@dataclass(frozen=True, slots=True)
class PolicyDelete:
    """An accepted delete of a policy group: the group as it was, and its operation."""

    group: groups.GroupView
    operation_uuid: uuid.UUID


def request_policy_delete(
    uow: UnitOfWork, *, actor: Actor, group_id: str, now: datetime, retention_seconds: int = 0
) -> PolicyDelete:
    """Phase 1 of deleting the policy group ``group_id`` names (see services.deletion).

    From the commit of the caller's unit of work the group is gone from every read and its
    name is free; the worker removes the row. Policy groups hold no objects, so there are
    no units to release. With ``retention_seconds`` it waits in the recycle bin that long.
    """
    view = resolve_group_id(uow, actor=actor, group_id=group_id)
    plan = deletion.request_delete(
        uow,
        actor=actor,
        group_id=view.uuid,
        release_units=False,
        now=now,
        retention_seconds=retention_seconds,
    )
    assert plan.operation_uuid is not None  # not a dry run
    return PolicyDelete(view, plan.operation_uuid)
