"""Reading groups: the view every API shows, lookups by id and by name, listings, and
the locked lookup every change of a group starts from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID

from sqlalchemy import bindparam, select
from sqlalchemy.orm import aliased

from groupd.errors import InvalidInput, NotFound
from groupd.services.common import (
    Actor,
    Page,
    Precondition,
    check_limit,
    decode_cursor,
    encode_cursor,
    parse_uuid,
    parse_uuid_field,
)
from groupd.store.db import UnitOfWork
from groupd.store.models import GROUP_KINDS, LIVE, Group
from groupd.store.prepared import Prepared
from groupd.store.tree import ancestor_ids

Parent = aliased(Group)


@dataclass(frozen=True, slots=True)
class LinkedEntity:
    type: str
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class GroupView:
    """A live group as every API shows it."""

    id: int
    uuid: UUID
    parent_uuid: UUID | None
    kind: str
    name: str
    description: str
    value_type: str | None
    values: list[str] | None
    agent_id: str | None
    linked_entity: LinkedEntity | None
    protected: bool
    version: int
    depth: int
    created_at: datetime
    updated_at: datetime


_VIEW_COLUMNS = (
    Group.id,
    Group.uuid,
    Parent.uuid.label("parent_uuid"),
    Group.kind,
    Group.name,
    Group.description,
    Group.value_type,
    Group.values,
    Group.agent_id,
    Group.linked_entity_type,
    Group.linked_entity_ref,
    Group.protected,
    Group.version,
    Group.depth,
    Group.created_at,
    Group.updated_at,
)


def _view(row: Sequence[Any]) -> GroupView:
    # Positional unpacking: by-name access on thousands of rows per page is measurable.
    (
        key,
        group_uuid,
        parent_uuid,
        kind,
        name,
        description,
        value_type,
        values,
        agent_id,
        linked_type,
        linked_ref,
        protected,
        version,
        depth,
        created_at,
        updated_at,
    ) = row
    return GroupView(
        key,
        group_uuid,
        parent_uuid,
        kind,
        name,
        description,
        value_type,
        values,
        agent_id,
        LinkedEntity(linked_type, linked_ref) if linked_type else None,
        protected,
        version,
        depth,
        created_at,
        updated_at,
    )


def _view_query() -> Any:
    return select(*_VIEW_COLUMNS).outerjoin(Parent, Parent.id == Group.parent_id)


def lock_live_group(uow: UnitOfWork, *, tenant_id: int, group_uuid: UUID) -> Group:
    """The live group, row-locked for the rest of the transaction, or NotFound."""
    group = uow.session.execute(
        select(Group)
        .where(Group.uuid == group_uuid, Group.tenant_id == tenant_id, Group.state == LIVE)
        .with_for_update()
    ).scalar_one_or_none()
    if group is None:
        raise NotFound(f"no group '{group_uuid}'")
    return group


def check_version(group: Group, precondition: Precondition | None) -> None:
    """Raise PreconditionFailed when the request's conditions do not hold for ``group``."""
    if precondition is not None:
        precondition.check(group.version, what=f"group '{group.uuid}'")


def find_group_view(uow: UnitOfWork, *, tenant_id: int, group_id: int) -> GroupView:
    row = uow.session.execute(_view_query().where(Group.id == group_id)).one_or_none()
    if row is None or row.id is None:
        raise NotFound(f"no group with key {group_id}")
    return _view(row)


_GET_LIVE_GROUP = Prepared(
    _view_query().where(
        Group.uuid == bindparam("group_uuid"),
        Group.tenant_id == bindparam("tenant_id"),
        Group.state == LIVE,
    )
)


class GroupText(NamedTuple):
    """A live group as ``GroupView`` has it, its uuids and times already the APIs' text:
    the hot read of one group, written out as it comes (decision 0075)."""

    id: int
    uuid: str
    parent_uuid: str | None
    kind: str
    name: str
    description: str
    value_type: str | None
    values: list[str] | None
    agent_id: str | None
    linked_type: str | None
    linked_ref: str | None
    protected: bool
    version: int
    depth: int
    created_at: str
    updated_at: str


_GET_LIVE_GROUP_TEXT = Prepared(_GET_LIVE_GROUP.statement, as_text=True)


def get_group_text(uow: UnitOfWork, *, actor: Actor, group_id: str) -> GroupText:
    """``get_group`` for a face that writes the group straight out."""
    key = parse_uuid(group_id, what="group")
    row = _GET_LIVE_GROUP_TEXT.one_or_none(uow, {"group_uuid": key, "tenant_id": actor.tenant_id})
    if row is None:
        raise NotFound(f"no group '{group_id}'")
    return GroupText(*row)


def get_group(uow: UnitOfWork, *, actor: Actor, group_id: str | UUID) -> GroupView:
    """One live group of the actor's tenant."""
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    # The hot read: a prepared statement on the raw connection.
    row = _GET_LIVE_GROUP.one_or_none(uow, {"group_uuid": key, "tenant_id": actor.tenant_id})
    if row is None:
        raise NotFound(f"no group '{group_id}'")
    return _view(row)


def get_group_by_name(uow: UnitOfWork, *, actor: Actor, kind: str, name: str) -> GroupView:
    """A live user or policy group by its tenant-unique name."""
    row = uow.session.execute(
        _view_query().where(
            Group.tenant_id == actor.tenant_id,
            Group.kind == kind,
            Group.name == name,
            Group.state == LIVE,
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no {kind} group named '{name}'")
    return _view(row)


def list_groups(
    uow: UnitOfWork,
    *,
    actor: Actor,
    parent_id: str | None = None,
    kind: str | None = None,
    name: str | None = None,
    agent_id: str | None = None,
    value_types: Sequence[str] | None = None,
    name_contains: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
    as_text: bool = False,
) -> Page:
    """Live groups of the tenant, filtered, in key order, one page at a time (keyset).

    ``as_text``: the usual page (a group's children) holds ``GroupText`` items, read as
    the APIs write them (decision 0075); any other page holds ``GroupView`` items."""
    check_limit(limit)
    after = decode_cursor(cursor)
    parent: int | None = None
    if parent_id is not None:
        parent_key = parse_uuid_field(parent_id, field="parentId")
        found = _LIVE_KEY.one_or_none(uow, {"uuid": parent_key, "tenant_id": actor.tenant_id})
        if found is None:
            raise NotFound(f"no group '{parent_id}'")
        (parent,) = found
        if kind is name is agent_id is None and not name_contains and not value_types:
            # The usual page, a group's children: a prepared statement.
            statement = _CHILDREN_PAGE_TEXT if as_text else _CHILDREN_PAGE
            children = statement.all(
                uow,
                {
                    "tenant_id": actor.tenant_id,
                    "after": after,
                    "parent": parent,
                    "limit": limit + 1,
                },
            )
            if as_text:
                texts = [GroupText(*row) for row in children[:limit]]
                more = len(children) > limit
                return Page(texts, encode_cursor(texts[-1].id) if more else None)
            return _page(children, limit)
    # Built only off the fast path: writing a select() costs more than running one.
    query = _view_query().where(
        Group.tenant_id == actor.tenant_id, Group.state == LIVE, Group.id > after
    )
    if parent is not None:
        query = query.where(Group.parent_id == parent)
    if kind is not None:
        if kind not in GROUP_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(GROUP_KINDS)}", field="kind")
        query = query.where(Group.kind == kind)
    if name is not None:
        query = query.where(Group.name == name)
    if name_contains:
        query = query.where(Group.name.contains(name_contains, autoescape=True))
    if agent_id is not None:
        query = query.where(Group.agent_id == agent_id)
    if value_types:
        query = query.where(Group.value_type.in_(list(value_types)))
    return _page(uow.connection.execute(query.order_by(Group.id).limit(limit + 1)).all(), limit)


def _page(rows: Sequence[Sequence[Any]], limit: int) -> Page:
    """A page of ``limit`` groups from ``limit + 1`` rows (one more says there is more)."""
    items = [_view(row) for row in rows[:limit]]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


_LIVE_KEY = Prepared(
    select(Group.id).where(
        Group.uuid == bindparam("uuid"),
        Group.tenant_id == bindparam("tenant_id"),
        Group.state == LIVE,
    )
)
_CHILDREN_PAGE = Prepared(
    _view_query()
    .where(
        Group.tenant_id == bindparam("tenant_id"),
        Group.state == LIVE,
        Group.id > bindparam("after"),
        Group.parent_id == bindparam("parent"),
    )
    .order_by(Group.id)
    .limit(bindparam("limit"))
)
_CHILDREN_PAGE_TEXT = Prepared(_CHILDREN_PAGE.statement, as_text=True)


def get_root(uow: UnitOfWork, *, actor: Actor) -> GroupView:
    """The tenant's root static group, "All"."""
    row = uow.session.execute(
        _view_query().where(
            Group.tenant_id == actor.tenant_id,
            Group.parent_id.is_(None),
            Group.kind == "static",
            Group.state == LIVE,
        )
    ).one_or_none()
    if row is None:
        raise NotFound("the tenant has no root group")
    return _view(row)


@dataclass(frozen=True, slots=True)
class Crumb:
    """One group on the way from the tenant's root to a group: its id and name."""

    uuid: UUID
    name: str


def list_ancestors(uow: UnitOfWork, *, actor: Actor, group: GroupView) -> list[Crumb]:
    """The live groups above ``group``, root first (its breadcrumbs): one query on the
    keys its materialized path already holds."""
    if group.parent_uuid is None:
        return []
    (path,) = uow.session.execute(select(Group.path).where(Group.id == group.id)).one()
    keys = ancestor_ids(path)[:-1]
    rows = uow.session.execute(
        select(Group.uuid, Group.name)
        .where(Group.tenant_id == actor.tenant_id, Group.id.in_(keys), Group.state == LIVE)
        .order_by(Group.depth)
    ).all()
    return [Crumb(row.uuid, row.name) for row in rows]
