"""ESET Connect wire types (lowerCamelCase, as the vendor's gRPC gateway writes them).

Requests refuse unknown fields, as a gRPC gateway that does not discard them does.
Optional answer fields that have no value are left out (``nextPageToken`` on the last
page, ``parentGroupUuid`` of the root, ``ownerUuid`` when none was given).
"""

from __future__ import annotations

import msgspec


class In(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class Out(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


# groups ------------------------------------------------------------------------------
class EsetGroupIn(In):
    display_name: str
    parent_group_uuid: str
    description: str = ""
    linked_entity_type: str = "GROUP_ENTITY_TYPE_UNSPECIFIED"
    uuid: str | None = None
    owner_uuid: str | None = None


class EsetCreateGroupRequest(In):
    group: EsetGroupIn


class EsetMoveGroupRequest(In):
    new_parent_uuid: str


class EsetRenameGroupRequest(In):
    display_name: str


class EsetGroup(Out):
    uuid: str
    display_name: str
    description: str
    linked_entity_type: str
    parent_group_uuid: str | None = None
    owner_uuid: str | None = None


class EsetGroupResponse(Out):
    group: EsetGroup


class EsetDeleteGroupResponse(Out):
    """Empty: ``{}``."""


# device management -------------------------------------------------------------------
class EsetDeviceGroup(Out):
    uuid: str
    display_name: str
    linked_entity_type: str
    is_security_group: bool
    etag: str
    parent_group_uuid: str | None = None


class EsetDeviceGroupPage(Out):
    device_groups: list[EsetDeviceGroup]
    next_page_token: str | None = None


class EsetActiveProduct(Out):
    product: str
    units: int


class EsetDevice(Out):
    uuid: str
    display_name: str
    group_uuid: str
    active_products: list[EsetActiveProduct]


class EsetDevicePage(Out):
    devices: list[EsetDevice]
    total_size: int
    next_page_token: str | None = None


class EsetDeviceResponse(Out):
    device: EsetDevice


class EsetDeviceList(Out):
    devices: list[EsetDevice]


class EsetMoveDeviceRequest(In):
    new_parent_uuid: str


class EsetRenameDeviceRequest(In):
    display_name: str


class EsetActiveProductIn(In):
    product: str
    units: int = 1


class EsetDeviceIn(In):
    display_name: str
    group_uuid: str
    uuid: str | None = None
    # A product name alone consumes one unit; the object form says how many.
    active_products: list[str | EsetActiveProductIn] = msgspec.field(default_factory=list)


class EsetBatchImportRequest(In):
    devices: list[EsetDeviceIn]


class EsetBatchImportResponse(Out):
    devices: list[EsetDevice]


# oauth -------------------------------------------------------------------------------
class EsetToken(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
