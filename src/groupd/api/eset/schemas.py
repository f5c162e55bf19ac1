"""ESET Connect wire types (lowerCamelCase, as the vendor's gRPC gateway writes them).

Requests refuse unknown fields, as a gRPC gateway that does not discard them does.
Optional answer fields that have no value are left out (``nextPageToken`` on the last
page, ``parentGroupUuid`` of the root, ``ownerUuid`` when none was given).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from groupd.api.text_rules import Description, Name

Uuid = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uuid"})]
ENTITY_TYPES = ["CUSTOMER", "MSP", "SITE", "HOUSEHOLD"]
LinkedEntityType = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={
            "enum": [
                "GROUP_ENTITY_TYPE_UNSPECIFIED",
                *ENTITY_TYPES,
                *[f"GROUP_ENTITY_TYPE_{name}" for name in ENTITY_TYPES],
            ]
        }
    ),
]
IMPORT_MAX = 1000


class In(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class Out(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


# groups ------------------------------------------------------------------------------
class EsetGroupIn(In):
    display_name: Name
    parent_group_uuid: Uuid
    description: Description = ""
    linked_entity_type: LinkedEntityType = "GROUP_ENTITY_TYPE_UNSPECIFIED"
    uuid: Uuid | None = None
    owner_uuid: Uuid | None = None


class EsetCreateGroupRequest(In):
    group: EsetGroupIn


class EsetMoveGroupRequest(In):
    new_parent_uuid: Uuid


class EsetRenameGroupRequest(In):
    display_name: Name


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
    new_parent_uuid: Uuid


class EsetRenameDeviceRequest(In):
    display_name: Name


class EsetActiveProductIn(In):
    product: Name
    units: Annotated[
        int, msgspec.Meta(extra_json_schema={"minimum": 1, "maximum": 1_000_000_000})
    ] = 1


class EsetDeviceIn(In):
    display_name: Name
    group_uuid: Uuid
    uuid: Uuid | None = None
    # A product name alone consumes one unit; the object form says how many.
    active_products: list[Name | EsetActiveProductIn] = msgspec.field(default_factory=list)


class EsetBatchImportRequest(In):
    devices: Annotated[
        list[EsetDeviceIn], msgspec.Meta(extra_json_schema={"minItems": 1, "maxItems": IMPORT_MAX})
    ]


class EsetBatchImportResponse(Out):
    devices: list[EsetDevice]


# oauth -------------------------------------------------------------------------------
class EsetToken(msgspec.Struct, kw_only=True):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


NON_EMPTY = {"type": "string", "minLength": 1}
# RFC 6749 §4.3.2 and §6: the fields each grant needs.
TOKEN_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"enum": ["password", "refresh_token"]},
        "username": NON_EMPTY,
        "password": NON_EMPTY,
        "refresh_token": NON_EMPTY,
    },
    "if": {"properties": {"grant_type": {"const": "password"}}},
    "then": {"required": ["username", "password"]},
    "else": {"required": ["refresh_token"]},
}
