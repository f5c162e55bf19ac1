"""Translations the ESET handlers share: ids, paging, linked entities, rendering."""

from __future__ import annotations

import uuid

from groupd.api.eset import schemas as s
from groupd.api.http import ApiRequest
from groupd.errors import InvalidInput, NotFound
from groupd.services import groups
from groupd.services.common import Actor, decode_cursor, parse_uuid_field
from groupd.services.licensing import ObjectProduct
from groupd.services.objects import ObjectView
from groupd.store.db import UnitOfWork

LINKED_ENTITY_TYPES = ("CUSTOMER", "MSP", "SITE", "HOUSEHOLD")
# ESET's "no linked entity": the core stores no linked entity for it.
UNSPECIFIED_ENTITY = "GROUP_ENTITY_TYPE_UNSPECIFIED"
_ENUM_PREFIX = "GROUP_ENTITY_TYPE_"
PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 1000


def path_uuid(req: ApiRequest, name: str) -> uuid.UUID:
    """A UUID path parameter; a malformed one is ESET's "invalid argument" (400)."""
    return parse_uuid_field(req.path_params[name], field=name)


def linked_entity(value: str) -> groups.LinkedEntity | None:
    """``linkedEntityType`` to the core's linked entity; UNSPECIFIED links nothing.

    Both the short names and the protobuf-style ``GROUP_ENTITY_TYPE_CUSTOMER`` are read.
    """
    if value == UNSPECIFIED_ENTITY:
        return None
    short = value.removeprefix(_ENUM_PREFIX)
    if short not in LINKED_ENTITY_TYPES:
        raise InvalidInput(
            f"group.linkedEntityType must be one of {UNSPECIFIED_ENTITY}, "
            f"{', '.join(LINKED_ENTITY_TYPES)}; not '{value}'",
            field="linkedEntity.type",
        )
    return groups.LinkedEntity(short)


def linked_entity_type(view: groups.GroupView) -> str:
    return view.linked_entity.type if view.linked_entity else UNSPECIFIED_ENTITY


def static_group(uow: UnitOfWork, *, actor: Actor, group_uuid: uuid.UUID) -> groups.GroupView:
    """The group if ESET can see it: ESET's groups are the core's static groups."""
    view = groups.get_group(uow, actor=actor, group_id=group_uuid)
    if view.kind != "static":
        raise NotFound(f"no group '{group_uuid}'")
    return view


def page_size(req: ApiRequest) -> int:
    """``pageSize``: unset or 0 means 50; above 1000 is lowered to 1000; below 0 is 400."""
    size = req.query_int("pageSize", 0, minimum=0)
    if size == 0:
        return PAGE_SIZE_DEFAULT
    return min(size, PAGE_SIZE_MAX)


def page_token(req: ApiRequest) -> str | None:
    """``pageToken``: empty means the first page; anything else must be one of ours."""
    token = req.query_str("pageToken") or None
    decode_cursor(token, field="pageToken")
    return token


def group(view: groups.GroupView) -> s.EsetGroup:
    return s.EsetGroup(
        uuid=str(view.uuid),
        display_name=view.name,
        description=view.description,
        linked_entity_type=linked_entity_type(view),
        parent_group_uuid=str(view.parent_uuid) if view.parent_uuid else None,
        owner_uuid=view.agent_id,
    )


def device_group(view: groups.GroupView) -> s.EsetDeviceGroup:
    return s.EsetDeviceGroup(
        uuid=str(view.uuid),
        display_name=view.name,
        linked_entity_type=linked_entity_type(view),
        # groupd has no security groups: every group is a plain device group
        is_security_group=False,
        etag=view.etag,
        parent_group_uuid=str(view.parent_uuid) if view.parent_uuid else None,
    )


def device(view: ObjectView, products: list[ObjectProduct]) -> s.EsetDevice:
    return s.EsetDevice(
        uuid=str(view.uuid),
        display_name=view.name,
        group_uuid=str(view.home_group_uuid),
        active_products=[s.EsetActiveProduct(product=p.product, units=p.units) for p in products],
    )
