"""What an event says about a group or an object: the native API's representation, so a
subscriber reads the same fields it reads from ``GET``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from groupd.services.groups import GroupView
    from groupd.services.objects import ObjectView


def timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def group_document(view: GroupView) -> dict[str, Any]:
    """A group as ``GET /api/v1/groups/{id}`` shows it."""
    linked = view.linked_entity
    return {
        "id": str(view.uuid),
        "parentId": str(view.parent_uuid) if view.parent_uuid else None,
        "name": view.name,
        "description": view.description,
        "kind": view.kind,
        "valueType": view.value_type,
        "values": view.values,
        "linkedEntity": {"type": linked.type, "ref": linked.ref} if linked else None,
        "protected": view.protected,
        "agentId": view.agent_id,
        "createdAt": timestamp(view.created_at),
        "updatedAt": timestamp(view.updated_at),
    }


def object_document(view: ObjectView) -> dict[str, Any]:
    """An object as ``GET /api/v1/objects/{id}`` shows it."""
    return {
        "id": str(view.uuid),
        "kind": view.kind,
        "name": view.name,
        "homeGroupId": str(view.home_group_uuid),
        "loginName": view.login_name,
        "status": view.status,
        "attributes": view.attributes,
    }
