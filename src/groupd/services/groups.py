"""Groups: the containment tree, user groups and typed policy groups."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from groupd.errors import Conflict, InvalidInput, NotFound, ValuesDoNotFit
from groupd.services import audit
from groupd.services.common import (
    Actor,
    Precondition,
    new_uuid,
    parse_uuid,
)
from groupd.services.group_views import (  # re-exported: callers read groups here
    GroupText as GroupText,
)
from groupd.services.group_views import (
    GroupView as GroupView,
)
from groupd.services.group_views import (
    LinkedEntity as LinkedEntity,
)
from groupd.services.group_views import (
    check_version as check_version,
)
from groupd.services.group_views import (
    find_group_view as find_group_view,
)
from groupd.services.group_views import (
    get_group as get_group,
)
from groupd.services.group_views import (
    get_group_by_name as get_group_by_name,
)
from groupd.services.group_views import (
    get_group_text as get_group_text,
)
from groupd.services.group_views import (
    list_groups as list_groups,
)
from groupd.services.group_views import (
    lock_live_group as lock_live_group,
)
from groupd.store.db import UnitOfWork
from groupd.store.ids import allocate_ids
from groupd.store.models import GROUP_KINDS, LIVE, Group, table_of
from groupd.store.prepared import Prepared
from groupd.store.tree import child_path, in_subtree
from groupd.values import clean_description, clean_name, parse_values

ROOT_NAME = "All"
LOST_AND_FOUND_NAME = "Lost & found"
ADMIN_GROUP_NAME = "Admin"
BATCH_MAX = 10_000
LINKED_ENTITY_TYPE_MAX = 32


@dataclass(slots=True)
class GroupSpec:
    """What a caller gives to create a group."""

    name: str
    parent_uuid: UUID | None = None
    kind: str = "static"
    description: str | None = None
    value_type: str | None = None
    values: list[str] | None = None
    agent_id: str | None = None
    linked_entity: LinkedEntity | None = None
    uuid: UUID | None = None
    protected: bool = False


_UNSET: Any = object()


@dataclass(slots=True)
class GroupChanges:
    """A partial update: fields left UNSET are not touched; ``linked_entity=None`` clears."""

    name: Any = _UNSET
    description: Any = _UNSET
    values: Any = _UNSET
    add_values: list[str] = field(default_factory=list)
    remove_values: list[str] = field(default_factory=list)
    linked_entity: Any = _UNSET

    @staticmethod
    def unset() -> Any:
        return _UNSET


def _clean_spec(spec: GroupSpec) -> GroupSpec:
    if spec.kind not in GROUP_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(GROUP_KINDS)}", field="kind")
    spec.name = clean_name(spec.name)
    spec.description = clean_description(spec.description)
    if spec.kind == "policy":
        if spec.parent_uuid is not None:
            raise InvalidInput("policy groups have no parent", field="parentId")
        if spec.value_type is None:
            raise InvalidInput("a policy group needs a valueType", field="valueType")
        spec.values = parse_values(spec.value_type, spec.values or [])
    else:
        if spec.value_type is not None or spec.values:
            raise InvalidInput("only policy groups have a valueType and values", field="valueType")
        if spec.parent_uuid is None and spec.kind == "static":
            raise InvalidInput("a static group needs a parentId", field="parentId")
    if spec.agent_id is not None:
        spec.agent_id = clean_name(spec.agent_id, field="agentId")[:64]
    if spec.linked_entity is not None:
        spec.linked_entity = _clean_linked(spec.linked_entity)
    return spec


def _clean_linked(linked: LinkedEntity) -> LinkedEntity:
    kind = clean_name(linked.type, field="linkedEntity.type")
    if len(kind) > LINKED_ENTITY_TYPE_MAX:
        raise InvalidInput("linkedEntity.type is too long", field="linkedEntity.type")
    ref = clean_name(linked.ref, field="linkedEntity.ref") if linked.ref else None
    return LinkedEntity(kind.upper(), ref)


def _name_conflict(error: IntegrityError, names: Sequence[str]) -> Conflict:
    message = str(error.orig).lower()
    if "uuid" in message:
        return Conflict("a group with that uuid already exists", code="uuid_taken")
    shown = ", ".join(f"'{n}'" for n in names[:5])
    return Conflict(f"a group named {shown} already exists there", code="name_taken")


def _parents_query() -> Any:
    return (
        select(Group.uuid, Group.id, Group.path, Group.kind, Group.depth)
        .where(Group.tenant_id == bindparam("tenant_id"), Group.state == LIVE)
        # A shared lock: concurrent creates under one parent proceed, a delete waits.
        .with_for_update(read=True)
    )


_LOCK_PARENT = Prepared(_parents_query().where(Group.uuid == bindparam("uuid")))
_INSERT_GROUP = Prepared(
    insert(table_of(Group)),
    column_keys=[
        "id",
        "uuid",
        "tenant_id",
        "parent_id",
        "path",
        "depth",
        "kind",
        "name",
        "description",
        "value_type",
        "values",
        "agent_id",
        "linked_entity_type",
        "linked_entity_ref",
        "protected",
        "state",
        "version",
        "created_at",
        "updated_at",
    ],
)


def create_group(uow: UnitOfWork, *, actor: Actor, spec: GroupSpec, now: datetime) -> GroupView:
    """Create one group under a live parent of the same tenant and kind; recorded as
    ``group.create`` in the audit trail."""
    (view,) = _insert_groups(uow, actor=actor, specs=[spec], now=now)
    audit.record_group_change(uow, actor=actor, action="group.create", group=view, now=now)
    return view


def batch_create_groups(
    uow: UnitOfWork, *, actor: Actor, specs: list[GroupSpec], now: datetime
) -> list[GroupView]:
    """Create up to 10,000 groups in one transaction with one bulk insert; recorded as one
    ``group.batch_create`` event with the number of groups.

    A spec may name as parent a group created earlier in the same batch. Existing parents
    are locked, so nothing is created under a subtree that a delete has taken.
    """
    if not specs:
        raise InvalidInput("the batch is empty", field="groups")
    if len(specs) > BATCH_MAX:
        raise InvalidInput(f"at most {BATCH_MAX} groups per batch", field="groups")
    views = _insert_groups(uow, actor=actor, specs=specs, now=now)
    audit.record_event(
        uow,
        actor=actor,
        action="group.batch_create",
        target_type="group",
        target_uuid=None,
        target_name=None,
        outcome="succeeded",
        counts={"groups": len(views)},
        now=now,
    )
    return views


def _insert_groups(
    uow: UnitOfWork, *, actor: Actor, specs: list[GroupSpec], now: datetime
) -> list[GroupView]:
    # The insert both creates share; each records its own event.
    specs = [_clean_spec(spec) for spec in specs]
    ids = allocate_ids(uow, "groups", len(specs))
    uuids = [spec.uuid or new_uuid() for spec in specs]
    in_batch: dict[UUID, tuple[int, str, str, int]] = {}  # uuid -> id, path, kind, depth
    outside = {s.parent_uuid for s in specs if s.parent_uuid is not None} - set(uuids)
    existing: dict[UUID, tuple[int, str, str, int]] = {}
    if len(outside) == 1:  # the usual case, a single create: the hot path
        (parent_uuid,) = outside
        found = _LOCK_PARENT.all(uow, {"uuid": parent_uuid, "tenant_id": actor.tenant_id})
        existing = {row[0]: tuple(row[1:]) for row in found}
    elif outside:
        many = uow.connection.execute(
            _parents_query().where(Group.uuid.in_(outside)), {"tenant_id": actor.tenant_id}
        )
        existing = {row[0]: tuple(row[1:]) for row in many}
    if len(set(uuids)) != len(uuids):
        raise InvalidInput("the batch names the same uuid twice", field="uuid")
    rows_to_insert: list[dict[str, Any]] = []
    for index, (spec, group_id, group_uuid) in enumerate(zip(specs, ids, uuids, strict=True)):
        parent_id = None
        path = child_path(None, group_id)
        depth = 0
        if spec.parent_uuid is not None:
            parent = in_batch.get(spec.parent_uuid) or existing.get(spec.parent_uuid)
            if parent is None:
                where = f"groups[{index}].parentId" if len(specs) > 1 else "parentId"
                raise NotFound(f"no group '{spec.parent_uuid}' (named by {where})")
            parent_id, parent_path, parent_kind, parent_depth = parent
            if parent_kind != spec.kind:
                message = f"a {spec.kind} group cannot live under a {parent_kind} group"
                if spec.parent_uuid in in_batch:  # the request contradicts itself
                    raise InvalidInput(message, field="parentId")
                # an existing parent: its kind is the state that refuses
                raise Conflict(message, code="parent_kind_differs", group=str(spec.parent_uuid))
            path = child_path(parent_path, group_id)
            depth = parent_depth + 1
        in_batch[group_uuid] = (group_id, path, spec.kind, depth)
        linked = spec.linked_entity
        rows_to_insert.append(
            {
                "id": group_id,
                "uuid": group_uuid,
                "tenant_id": actor.tenant_id,
                "parent_id": parent_id,
                "path": path,
                "depth": depth,
                "kind": spec.kind,
                "name": spec.name,
                "description": spec.description or "",
                "value_type": spec.value_type,
                "values": spec.values if spec.kind == "policy" else None,
                "agent_id": spec.agent_id,
                "linked_entity_type": linked.type if linked else None,
                "linked_entity_ref": linked.ref if linked else None,
                "protected": spec.protected,
                "state": "live",
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
        )
    try:
        if len(rows_to_insert) == 1:
            # No savepoint: a conflict ends the request, and the unit rolls back whole.
            _INSERT_GROUP.execute(uow, rows_to_insert[0])
        else:
            with uow.connection.begin_nested():
                uow.connection.execute(insert(table_of(Group)), rows_to_insert)
    except IntegrityError as error:
        raise _name_conflict(error, [s.name for s in specs]) from None
    parent_uuid_by_id = {v[0]: k for k, v in in_batch.items()}
    parent_uuid_by_id.update({v[0]: k for k, v in existing.items()})
    return [
        GroupView(
            id=row["id"],
            uuid=row["uuid"],
            parent_uuid=parent_uuid_by_id.get(row["parent_id"]) if row["parent_id"] else None,
            kind=row["kind"],
            name=row["name"],
            description=row["description"],
            value_type=row["value_type"],
            values=row["values"],
            agent_id=row["agent_id"],
            linked_entity=spec.linked_entity,
            protected=row["protected"],
            version=1,
            depth=row["depth"],
            created_at=now,
            updated_at=now,
        )
        for row, spec in zip(rows_to_insert, specs, strict=True)
    ]


def _values_of(group: Group, given: list[str]) -> list[str]:
    """``given`` parsed as ``group``'s valueType; ValuesDoNotFit names both if not."""
    assert group.value_type is not None
    try:
        return parse_values(group.value_type, given)
    except InvalidInput as error:
        raise ValuesDoNotFit(
            f"{error.detail}: group '{group.name}' holds {group.value_type} values",
            field="values",
            group=str(group.uuid),
        ) from None


def update_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | UUID,
    changes: GroupChanges,
    precondition: Precondition | None = None,
    now: datetime,
) -> GroupView:
    """Change name, description, values or linked entity; bumps the version (ETag)."""
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    group = lock_live_group(uow, tenant_id=actor.tenant_id, group_uuid=key)
    check_version(group, precondition)
    values: dict[str, Any] = {}
    if changes.name is not _UNSET:
        if group.protected:
            raise Conflict(
                f"'{group.name}' is a built-in group and keeps its name",
                code="protected_group",
                group=str(group.uuid),
            )
        values["name"] = clean_name(changes.name)
    if changes.description is not _UNSET:
        values["description"] = clean_description(changes.description)
    new_values = group.values
    if changes.values is not _UNSET or changes.add_values or changes.remove_values:
        if group.kind != "policy" or group.value_type is None:
            raise Conflict(
                f"only policy groups have values; '{group.name}' is a {group.kind} group",
                code="not_a_policy_group",
                group=str(group.uuid),
            )
        base = group.values or []
        if changes.values is not _UNSET:
            base = _values_of(group, changes.values or [])
        added = _values_of(group, changes.add_values)
        # Removing a value that is not there is ignored; removals are compared normalised
        # where they parse, verbatim where they do not.
        removed = set()
        for raw in changes.remove_values:
            try:
                removed.update(parse_values(group.value_type, [raw]))
            except InvalidInput:
                removed.add(raw)
        merged = dict.fromkeys([*base, *added])
        new_values = [v for v in merged if v not in removed]
        values["values"] = new_values
    if changes.linked_entity is not _UNSET:
        linked = changes.linked_entity
        if linked is None:
            values["linked_entity_type"] = None
            values["linked_entity_ref"] = None
        else:
            linked = _clean_linked(linked)
            values["linked_entity_type"] = linked.type
            values["linked_entity_ref"] = linked.ref
    if values:
        values["version"] = group.version + 1
        values["updated_at"] = now
        try:
            with uow.session.begin_nested():
                uow.session.execute(update(Group).where(Group.id == group.id).values(**values))
        except IntegrityError:
            raise Conflict(
                f"a group named '{values.get('name')}' already exists there", code="name_taken"
            ) from None
    view = find_group_view(uow, tenant_id=actor.tenant_id, group_id=group.id)
    audit.record_group_change(uow, actor=actor, action="group.update", group=view, now=now)
    return view


def move_group(
    uow: UnitOfWork,
    *,
    actor: Actor,
    group_id: str | UUID,
    new_parent_id: str | UUID,
    precondition: Precondition | None = None,
    now: datetime,
) -> GroupView:
    """Move a subtree under a new parent: two set-based statements, whatever its size.

    One UPDATE rewrites the path prefix and depth of every group of the subtree (an index
    range scan); one sets the root's parent.
    """
    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    parent_key = (
        new_parent_id
        if isinstance(new_parent_id, UUID)
        else parse_uuid(new_parent_id, what="group")
    )
    group = lock_live_group(uow, tenant_id=actor.tenant_id, group_uuid=key)
    check_version(group, precondition)
    if group.parent_id is None:
        raise Conflict(
            f"'{group.name}' is a root and cannot move",
            code="protected_group",
            group=str(group.uuid),
        )
    if group.protected:
        raise Conflict(
            f"'{group.name}' is a built-in group and stays where it is",
            code="protected_group",
            group=str(group.uuid),
        )
    parent = lock_live_group(uow, tenant_id=actor.tenant_id, group_uuid=parent_key)
    if parent.path.startswith(group.path):
        raise Conflict(
            "a group cannot move under itself or its own descendants",
            code="move_into_self",
            group=str(parent.uuid),
        )
    if parent.kind != group.kind:
        raise Conflict(
            f"a {group.kind} group cannot live under a {parent.kind} group",
            code="parent_kind_differs",
            group=str(parent.uuid),
        )
    if parent.id != group.parent_id:
        _move_subtree(uow, actor=actor, group=group, parent=parent, now=now)
    # A move to the current parent changes nothing, but is answered and recorded as a move.
    view = find_group_view(uow, tenant_id=actor.tenant_id, group_id=group.id)
    audit.record_group_change(uow, actor=actor, action="group.move", group=view, now=now)
    return view


def _move_subtree(
    uow: UnitOfWork, *, actor: Actor, group: Group, parent: Group, now: datetime
) -> None:
    old_prefix = group.path
    new_prefix = child_path(parent.path, group.id)
    depth_shift = parent.depth + 1 - group.depth
    session = uow.session
    try:
        with session.begin_nested():
            move_paths = (
                update(Group)
                .where(in_subtree(old_prefix, tenant_id=actor.tenant_id))
                .values(
                    path=new_prefix + func.substr(Group.path, len(old_prefix) + 1),
                    depth=Group.depth + depth_shift,
                )
                .execution_options(synchronize_session=False)
            )
            # Under READ COMMITTED a child created under the subtree while this statement
            # waited for its parent's lock is not in its snapshot: repeat until none is left.
            while session.execute(move_paths).rowcount:  # type: ignore[attr-defined]
                pass
            session.execute(
                update(Group)
                .where(Group.id == group.id)
                .values(parent_id=parent.id, version=Group.version + 1, updated_at=now)
                .execution_options(synchronize_session=False)
            )
    except IntegrityError:
        raise Conflict(
            f"a group named '{group.name}' already exists under the new parent",
            code="name_taken",
        ) from None
