"""Directory objects: devices and users, each homed in one live static group."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from groupd.errors import Conflict, InvalidInput, NotFound
from groupd.services import audit, licensing
from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    encode_cursor,
    new_uuid,
    parse_uuid,
)
from groupd.services.webhooks.documents import object_document
from groupd.store.db import UnitOfWork
from groupd.store.ids import allocate_ids
from groupd.store.models import LIVE, OBJECT_KINDS, USER_STATUSES, DirectoryObject, Group, table_of
from groupd.store.prepared import Prepared
from groupd.store.tree import subtree_bounds
from groupd.store.user_counts import count_users_into, user_moves
from groupd.values import clean_name

BATCH_MAX = 10_000
BATCH_GET_MAX = 1000
ATTRIBUTES_MAX_KEYS = 64
ATTRIBUTE_VALUE_MAX = 1024
Home = aliased(Group)
# How many objects after a cursor a recursive listing looks among first.
KEY_WINDOW = 1000


@dataclass(frozen=True, slots=True)
class ObjectView:
    id: int
    uuid: UUID
    kind: str
    name: str
    home_group_uuid: UUID
    login_name: str | None
    status: str | None
    attributes: dict[str, Any]
    version: int
    created_at: datetime
    updated_at: datetime


@dataclass(slots=True)
class ActivationSpec:
    """Units of a licence (named by uuid or by product) the new object consumes."""

    units: int = 1
    licence_uuid: UUID | None = None
    product: str | None = None


@dataclass(slots=True)
class ObjectSpec:
    kind: str
    name: str
    home_group_uuid: UUID
    login_name: str | None = None
    status: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    uuid: UUID | None = None
    activations: list[ActivationSpec] = field(default_factory=list)


_COLUMNS = (
    DirectoryObject.id,
    DirectoryObject.uuid,
    DirectoryObject.kind,
    DirectoryObject.name,
    Home.uuid.label("home_uuid"),
    DirectoryObject.login_name,
    DirectoryObject.status,
    DirectoryObject.attributes,
    DirectoryObject.version,
    DirectoryObject.created_at,
    DirectoryObject.updated_at,
)


def _view(row: Sequence[Any]) -> ObjectView:
    # Positional, in the order of _COLUMNS: rows of Core queries and of prepared ones.
    (
        key,
        object_uuid,
        kind,
        name,
        home_uuid,
        login_name,
        status,
        attributes,
        version,
        created_at,
        updated_at,
    ) = row
    return ObjectView(
        id=key,
        uuid=object_uuid,
        kind=kind,
        name=name,
        home_group_uuid=home_uuid,
        login_name=login_name,
        status=status,
        attributes=attributes or {},
        version=version,
        created_at=created_at,
        updated_at=updated_at,
    )


def _live_query(tenant_id: int) -> Any:
    # An object is visible only while its home is live: a delete hides it at once.
    return (
        select(*_COLUMNS)
        .join(Home, Home.id == DirectoryObject.home_group_id)
        .where(DirectoryObject.tenant_id == tenant_id, Home.state == LIVE)
    )


_GET_LIVE_OBJECT = Prepared(
    select(*_COLUMNS)
    .join(Home, Home.id == DirectoryObject.home_group_id)
    .where(
        DirectoryObject.uuid == bindparam("uuid"),
        DirectoryObject.tenant_id == bindparam("tenant_id"),
        Home.state == LIVE,
    )
)


def get_object(uow: UnitOfWork, *, actor: Actor, object_id: str | UUID) -> ObjectView:
    """One live object of the actor's tenant."""
    key = object_id if isinstance(object_id, UUID) else parse_uuid(object_id, what="object")
    row = _GET_LIVE_OBJECT.one_or_none(uow, {"uuid": key, "tenant_id": actor.tenant_id})
    if row is None:
        raise NotFound(f"no object '{object_id}'")
    return _view(row)


def get_user_by_login(uow: UnitOfWork, *, actor: Actor, login_name: str) -> ObjectView:
    row = uow.session.execute(
        _live_query(actor.tenant_id).where(DirectoryObject.login_name == login_name)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no user with login name '{login_name}'")
    return _view(row)


def list_objects(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | UUID | None,
    recursive: bool = False,
    kind: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """Objects homed in a group, or anywhere in its subtree, or (``group_id`` None) in
    the whole tenant; keyset pages by key."""
    check_limit(limit)
    after = decode_cursor(cursor)
    query = _live_query(actor.tenant_id).where(DirectoryObject.id > after)
    if group_id is not None:
        query = query.where(_homes(uow, actor=actor, group_id=group_id, recursive=recursive))
    if kind is not None:
        if kind not in OBJECT_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(OBJECT_KINDS)}", field="kind")
        query = query.where(DirectoryObject.kind == kind)
    rows: Sequence[Any] = []
    if recursive and group_id is not None:
        # A big subtree holds most of the objects just after the cursor: look among
        # those first, by key, before walking the whole subtree's index and sorting it
        # (docs/decisions/0043). A window that gives a full page gives the right one.
        window = (
            select(DirectoryObject.id)
            .where(DirectoryObject.id > after)
            .order_by(DirectoryObject.id)
            # Written into the statement, so that SQLite's planner knows the window
            # is small (as a parameter, it builds a Bloom filter over the subtree).
            .limit(literal_column(str(KEY_WINDOW)))
            .subquery("key_window")
        )
        rows = uow.session.execute(
            query.join(window, window.c.id == DirectoryObject.id)
            .order_by(DirectoryObject.id)
            .limit(limit + 1)
        ).all()
    if len(rows) <= limit:
        rows = uow.session.execute(query.order_by(DirectoryObject.id).limit(limit + 1)).all()
    items = [_view(r) for r in rows[:limit]]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


def _homes(uow: UnitOfWork, *, actor: Actor, group_id: str | UUID, recursive: bool) -> Any:
    """The condition on an object's home: the live group ``group_id``, or its subtree."""
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    group = uow.session.execute(
        select(Group.id, Group.path).where(
            Group.uuid == key, Group.tenant_id == actor.tenant_id, Group.state == LIVE
        )
    ).one_or_none()
    if group is None:
        raise NotFound(f"no group '{group_id}'")
    if recursive:
        return _home_in_subtree(group.path, actor.tenant_id)
    return DirectoryObject.home_group_id == group.id


def get_objects(
    uow: UnitOfWork, *, actor: Actor, object_ids: Sequence[UUID], kind: str | None = None
) -> list[ObjectView]:
    """Live objects by id, in the order asked, all or nothing (Google AIP-231's batch
    get): NotFound names every id that is missing or not of ``kind``."""
    if len(object_ids) > BATCH_GET_MAX:
        raise InvalidInput(f"at most {BATCH_GET_MAX} ids per call", field="ids")
    wanted = list(dict.fromkeys(object_ids))
    rows = uow.session.execute(
        _live_query(actor.tenant_id).where(DirectoryObject.uuid.in_(wanted))
    ).all()
    found = {view.uuid: view for view in map(_view, rows) if kind is None or view.kind == kind}
    missing = [str(key) for key in wanted if key not in found]
    if missing:
        raise NotFound(f"no {kind or 'object'} '{', '.join(missing)}'", missing=missing)
    return [found[key] for key in object_ids]


def _home_in_subtree(path: str, tenant_id: int) -> Any:
    low, high = subtree_bounds(path)
    return (Home.tenant_id == tenant_id) & (Home.path >= low) & (Home.path < high)


def _clean_object(spec: ObjectSpec) -> ObjectSpec:
    if spec.kind not in OBJECT_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(OBJECT_KINDS)}", field="kind")
    spec.name = clean_name(spec.name)
    if spec.kind == "user":
        if not spec.login_name:
            raise InvalidInput("a user needs a loginName", field="loginName")
        spec.login_name = clean_name(spec.login_name, field="loginName")
        spec.status = spec.status or "active"
        if spec.status not in USER_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(USER_STATUSES)}", field="status")
    else:
        if spec.login_name is not None or spec.status is not None:
            raise InvalidInput("only users have a loginName and a status", field="loginName")
    if len(spec.attributes) > ATTRIBUTES_MAX_KEYS:
        raise InvalidInput(
            f"at most {ATTRIBUTES_MAX_KEYS} attributes per object", field="attributes"
        )
    for name, value in spec.attributes.items():
        clean_name(name, field="attributes key")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise InvalidInput(
                f"attributes: '{name}' is outside the 64-bit integer range", field="attributes"
            )
        if isinstance(value, str) and len(value) > ATTRIBUTE_VALUE_MAX:
            raise InvalidInput(
                f"attribute '{name}' is longer than {ATTRIBUTE_VALUE_MAX} characters",
                field="attributes",
            )
    for activation in spec.activations:
        if activation.units < 1:
            raise InvalidInput("an activation consumes at least one unit", field="units")
    return spec


def create_object(uow: UnitOfWork, *, actor: Actor, spec: ObjectSpec, now: datetime) -> ObjectView:
    """Create one device or user in a live static group; recorded as ``object.create``."""
    (view,) = _insert_objects(uow, actor=actor, specs=[spec], now=now)
    _record(uow, actor, "object.create", view, now)
    return view


def import_objects(
    uow: UnitOfWork,
    *,
    actor: Actor,
    specs: list[ObjectSpec],
    now: datetime,
    max_batch: int = BATCH_MAX,
) -> list[ObjectView]:
    """Create up to ``max_batch`` objects, with their activations, in bulk statements;
    recorded as one ``object.batch_import`` event with the number of objects.

    Home groups are share-locked (a concurrent delete waits); licences are locked and
    charged once per licence for the whole batch.
    """
    if not specs:
        raise InvalidInput("the batch is empty", field="objects")
    if len(specs) > max_batch:
        raise InvalidInput(f"at most {max_batch} objects per batch", field="objects")
    views = _insert_objects(uow, actor=actor, specs=specs, now=now)
    audit.record_event(
        uow,
        actor=actor,
        action="object.batch_import",
        target_type="object",
        target_uuid=None,
        target_name=None,
        outcome="succeeded",
        counts={"objects": len(views)},
        now=now,
    )
    return views


def _record(uow: UnitOfWork, actor: Actor, action: str, view: ObjectView, now: datetime) -> None:
    audit.record_event(
        uow,
        actor=actor,
        action=action,
        target_type=view.kind,
        target_uuid=view.uuid,
        target_name=view.name,
        outcome="succeeded",
        now=now,
        event_data={"object": object_document(view)},
    )


def _insert_objects(
    uow: UnitOfWork, *, actor: Actor, specs: list[ObjectSpec], now: datetime
) -> list[ObjectView]:
    # The insert both creates share; each records its own event.
    specs = [_clean_object(spec) for spec in specs]
    session = uow.session
    home_uuids = {spec.home_group_uuid for spec in specs}
    homes = {
        row.uuid: row
        for row in session.execute(
            select(Group.uuid, Group.id, Group.kind)
            .where(
                Group.uuid.in_(home_uuids),
                Group.tenant_id == actor.tenant_id,
                Group.state == LIVE,
            )
            .with_for_update(read=True)
        )
    }
    for spec in specs:
        home = homes.get(spec.home_group_uuid)
        if home is None:
            raise NotFound(f"no group '{spec.home_group_uuid}'")
        if home.kind != "static":
            raise Conflict(
                f"objects live in static groups; '{spec.home_group_uuid}' is a {home.kind} group",
                code="not_a_static_group",
                group=str(spec.home_group_uuid),
            )
    ids = allocate_ids(uow, "objects", len(specs))
    uuids = [spec.uuid or new_uuid() for spec in specs]
    if len(set(uuids)) != len(uuids):
        raise InvalidInput("the batch names the same uuid twice", field="uuid")
    rows = [
        {
            "id": object_id,
            "uuid": object_uuid,
            "tenant_id": actor.tenant_id,
            "kind": spec.kind,
            "name": spec.name,
            "home_group_id": homes[spec.home_group_uuid].id,
            "login_name": spec.login_name,
            "status": spec.status,
            "member_key": object_id if spec.kind == "user" else None,
            "attributes": spec.attributes,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for spec, object_id, object_uuid in zip(specs, ids, uuids, strict=True)
    ]
    try:
        with session.begin_nested():
            session.connection().execute(insert(table_of(DirectoryObject)), rows)
    except IntegrityError as error:
        message = str(error.orig).lower()
        if "login" in message:
            raise Conflict(
                "a user with that loginName already exists", code="login_taken"
            ) from None
        raise Conflict("an object with that uuid already exists", code="uuid_taken") from None
    count_users_into(
        uow,
        tenant_id=actor.tenant_id,
        changes=Counter(row["home_group_id"] for row in rows if row["kind"] == "user"),
    )
    wanted = [
        (object_id, object_uuid, spec.name, activation)
        for spec, object_id, object_uuid in zip(specs, ids, uuids, strict=True)
        for activation in spec.activations
    ]
    if wanted:
        licensing.activate_many(uow, actor=actor, wanted=wanted, now=now)
    return [
        ObjectView(
            id=row["id"],
            uuid=row["uuid"],
            kind=row["kind"],
            name=row["name"],
            home_group_uuid=spec.home_group_uuid,
            login_name=row["login_name"],
            status=row["status"],
            attributes=row["attributes"],
            version=1,
            created_at=now,
            updated_at=now,
        )
        for row, spec in zip(rows, specs, strict=True)
    ]


def _lock_live_object(uow: UnitOfWork, *, actor: Actor, object_id: str | UUID) -> DirectoryObject:
    key = object_id if isinstance(object_id, UUID) else parse_uuid(object_id, what="object")
    obj = uow.session.execute(
        select(DirectoryObject)
        .join(Home, Home.id == DirectoryObject.home_group_id)
        .where(
            DirectoryObject.uuid == key,
            DirectoryObject.tenant_id == actor.tenant_id,
            Home.state == LIVE,
        )
        .with_for_update(of=DirectoryObject)
    ).scalar_one_or_none()
    if obj is None:
        raise NotFound(f"no object '{object_id}'")
    return obj


_UNSET: Any = object()


def update_object(
    uow: UnitOfWork,
    *,
    actor: Actor,
    object_id: str | UUID,
    name: Any = _UNSET,
    status: Any = _UNSET,
    attributes: Any = _UNSET,
    now: datetime,
) -> ObjectView:
    """Rename, set a user's status, or replace attributes; recorded as ``object.update``."""
    obj = _lock_live_object(uow, actor=actor, object_id=object_id)
    changes: dict[str, Any] = {}
    if name is not _UNSET:
        changes["name"] = clean_name(name)
    if status is not _UNSET:
        if obj.kind != "user":
            raise Conflict("only users have a status; the object is a device", code="not_a_user")
        if status not in USER_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(USER_STATUSES)}", field="status")
        changes["status"] = status
    if attributes is not _UNSET:
        spec = ObjectSpec(
            kind="device", name="x", home_group_uuid=uuid.uuid4(), attributes=attributes or {}
        )
        changes["attributes"] = _clean_object(spec).attributes
    if changes:
        changes["version"] = obj.version + 1
        changes["updated_at"] = now
        uow.session.execute(
            update(DirectoryObject).where(DirectoryObject.id == obj.id).values(**changes)
        )
    view = get_object(uow, actor=actor, object_id=obj.uuid)
    _record(uow, actor, "object.update", view, now)
    return view


UNSET = _UNSET


def move_object(
    uow: UnitOfWork,
    *,
    actor: Actor,
    object_id: str | UUID,
    group_id: str | UUID,
    now: datetime,
) -> ObjectView:
    """Re-home an object in another live static group of the tenant; recorded as
    ``object.move``."""
    obj = _lock_live_object(uow, actor=actor, object_id=object_id)
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    home = uow.session.execute(
        select(Group.id, Group.kind)
        .where(Group.uuid == key, Group.tenant_id == actor.tenant_id, Group.state == LIVE)
        .with_for_update(read=True)
    ).one_or_none()
    if home is None:
        raise NotFound(f"no group '{group_id}'")
    if home.kind != "static":
        raise Conflict(
            f"objects live in static groups; '{key}' is a {home.kind} group",
            code="not_a_static_group",
            group=str(key),
        )
    if obj.kind == "user":
        moved = user_moves([obj.home_group_id], [home.id])
        count_users_into(uow, tenant_id=actor.tenant_id, changes=moved)
    uow.session.execute(
        update(DirectoryObject)
        .where(DirectoryObject.id == obj.id)
        .values(home_group_id=home.id, version=obj.version + 1, updated_at=now)
    )
    view = get_object(uow, actor=actor, object_id=obj.uuid)
    _record(uow, actor, "object.move", view, now)
    return view


def count_objects(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | uuid.UUID | None,
    recursive: bool = False,
    kind: str | None = None,
) -> int:
    """How many live objects a group homes (or its whole subtree, or the tenant with
    ``group_id`` None): one aggregate query, the total that paged listings report
    beside their pages."""
    query = (
        select(func.count())
        .select_from(DirectoryObject)
        .join(Home, Home.id == DirectoryObject.home_group_id)
        .where(DirectoryObject.tenant_id == actor.tenant_id, Home.state == LIVE)
    )
    if group_id is not None:
        query = query.where(_homes(uow, actor=actor, group_id=group_id, recursive=recursive))
    if kind is not None:
        if kind not in OBJECT_KINDS:
            raise InvalidInput(f"kind must be one of {', '.join(OBJECT_KINDS)}", field="kind")
        query = query.where(DirectoryObject.kind == kind)
    return int(uow.session.execute(query).scalar_one())
