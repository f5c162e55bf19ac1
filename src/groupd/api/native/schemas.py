"""Native wire types (lowerCamelCase). Requests refuse unknown fields."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import UNSET, UnsetType

from groupd.api.text_rules import RULE, VALUE_SCHEMAS, Description, EntityType, Name, PolicyValue

Scalar = str | int | float | bool | None

# What the document states beyond the Python types. Bounds msgspec enforces name the field
# in their 400; ``extra_json_schema`` only documents a rule the service already enforces
# with its own message (the hostile catalogue pins those messages).
Uuid = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uuid"})]
GroupKind = Literal["static", "user", "policy"]
ObjectKind = Literal["device", "user"]
UserStatus = Literal["active", "inactive"]
UnitKind = Literal["seat", "user"]
Role = Literal["admin", "editor", "viewer"]
ValueType = Annotated[
    str, msgspec.Meta(extra_json_schema={"enum": ["user_id", "string", "action", "ip", "ip_range"]})
]
GrantType = Annotated[str, msgspec.Meta(extra_json_schema={"enum": ["password", "refresh_token"]})]
Units = Annotated[int, msgspec.Meta(ge=1, le=1_000_000_000)]
TotalUnits = Annotated[int, msgspec.Meta(ge=0, le=1_000_000_000)]
TtlSeconds = Annotated[int, msgspec.Meta(ge=60, le=315_360_000)]
BATCH_MAX = 10_000
# ``services.objects``: at most 64 attributes; keys are names; values 64-bit integers,
# numbers, booleans, null or text of up to 1024 characters.
Attributes = Annotated[dict[str, Scalar], msgspec.Meta(extra_json_schema={RULE: "Attributes"})]


class In(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class Out(msgspec.Struct, rename="camel", kw_only=True):
    pass


# groups ---------------------------------------------------------------------------
class LinkedEntity(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: EntityType
    ref: Name | None = None


NO_VALUES = {"anyOf": [{"type": "null"}, {"type": "array", "maxItems": 0}]}


class GroupCreate(In):
    name: Name
    parent_id: Uuid | None = None
    kind: GroupKind = "static"
    description: Description | None = None
    value_type: ValueType | None = None
    values: list[str] | None = None
    linked_entity: LinkedEntity | None = None
    agent_id: Name | None = None

    # What ``services.groups`` requires of each kind, one variant each (faster to
    # generate test data from than ``if``/``then``): a static group has a parent; a
    # policy group has none, but a valueType and values of that type; only policy groups
    # have values.
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {
                "required": ["parentId"],
                "properties": {
                    "kind": {"const": "static"},
                    "parentId": {"type": "string"},
                    "valueType": {"type": "null"},
                    "values": NO_VALUES,
                },
            },
            {
                "required": ["kind"],
                "properties": {
                    "kind": {"const": "user"},
                    "valueType": {"type": "null"},
                    "values": NO_VALUES,
                },
            },
            *[
                {
                    "required": ["kind", "valueType"],
                    "properties": {
                        "kind": {"const": "policy"},
                        "parentId": {"type": "null"},
                        "valueType": {"const": value_type},
                        "values": {"anyOf": [{"type": "null"}, {"type": "array", "items": schema}]},
                    },
                }
                for value_type, schema in VALUE_SCHEMAS.items()
            ],
        ]
    }


class GroupBatchItem(GroupCreate, kw_only=True):
    id: Uuid | None = None


class GroupBatch(In):
    groups: Annotated[
        list[GroupBatchItem],
        msgspec.Meta(min_length=1, extra_json_schema={"maxItems": BATCH_MAX}),
    ]


class GroupUpdate(In):
    name: Name | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    values: list[PolicyValue] | UnsetType = UNSET
    linked_entity: LinkedEntity | None | UnsetType = UNSET


class GroupMove(In):
    parent_id: Uuid


class GroupOut(Out):
    id: Uuid
    parent_id: Uuid | None
    name: str
    description: str
    kind: str
    value_type: str | None
    values: list[str] | None
    linked_entity: LinkedEntity | None
    protected: bool
    agent_id: str | None
    created_at: str
    updated_at: str


class GroupPage(Out):
    items: list[GroupOut]
    next_cursor: str | None


class GroupBatchOut(Out):
    items: list[GroupOut]


# objects --------------------------------------------------------------------------
class ActivationIn(In):
    units: Units = 1
    license_id: Uuid | None = None
    product: Name | None = None

    # ``services.licensing``: an activation names its licence, or the licence's product.
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {"required": ["licenseId"], "properties": {"licenseId": {"type": "string"}}},
            {"required": ["product"], "properties": {"product": {"type": "string"}}},
        ]
    }


class ObjectCreate(In):
    kind: ObjectKind
    name: Name
    home_group_id: Uuid
    login_name: Name | None = None
    status: UserStatus | None = None
    attributes: Attributes = {}
    id: Uuid | None = None
    activations: list[ActivationIn] = []

    # ``services.objects``: a user has a loginName (and may have a status); a device
    # has neither.
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"kind": {"const": "user"}}},
        "then": {"required": ["loginName"], "properties": {"loginName": {"type": "string"}}},
        "else": {"properties": {"loginName": {"type": "null"}, "status": {"type": "null"}}},
    }


class ObjectBatch(In):
    objects: Annotated[
        list[ObjectCreate],
        msgspec.Meta(min_length=1, extra_json_schema={"maxItems": BATCH_MAX}),
    ]


class ObjectUpdate(In):
    name: Name | UnsetType = UNSET
    status: UserStatus | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET


class ObjectMove(In):
    group_id: Uuid


class ObjectOut(Out):
    id: Uuid
    kind: str
    name: str
    home_group_id: Uuid
    login_name: str | None
    status: str | None
    attributes: dict[str, Any]


class ObjectPage(Out):
    items: list[ObjectOut]
    next_cursor: str | None


class ObjectBatchOut(Out):
    items: list[ObjectOut]


class MembershipOut(Out):
    group_id: Uuid
    group_name: str
    object_id: Uuid


class MembershipList(Out):
    items: list[MembershipOut]


# licences -------------------------------------------------------------------------
class LicenseCreate(In):
    product: Name
    unit_kind: UnitKind
    total_units: TotalUnits


class LicenseOut(Out):
    id: Uuid
    product: str
    unit_kind: str
    total_units: int
    used_units: int


class LicensePage(Out):
    items: list[LicenseOut]
    next_cursor: str | None


class ActivationCreate(In):
    object_id: Uuid
    units: Units = 1


class ActivationOut(Out):
    id: Uuid
    license_id: Uuid
    object_id: Uuid
    object_name: str
    units: int
    orphaned: bool
    created_at: str


class ActivationPage(Out):
    items: list[ActivationOut]
    next_cursor: str | None


# operations, audit ----------------------------------------------------------------
class TargetOut(Out):
    id: str
    name: str


class OperationResult(Out):
    status: int
    body: dict[str, Any]


class OperationOut(Out):
    id: str
    kind: str
    state: str
    target: TargetOut
    parameters: dict[str, Any]
    progress: dict[str, Any]
    result: OperationResult | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str | None


class OperationList(Out):
    items: list[OperationOut]


class DeletePreview(Out):
    dry_run: bool
    group: TargetOut
    impact: dict[str, Any]


# the recycle bin ------------------------------------------------------------------
class RestoreBody(In):
    parent_id: Uuid | None = None
    name: str | None = None


class BinUnitsOut(Out):
    licence_id: Uuid
    product: str
    unit_kind: str
    activations: int
    units: int


class DeletedGroupOut(Out):
    id: Uuid
    name: str
    kind: str
    parent_id: Uuid | None
    path_names: list[str]
    deleted_at: str
    deleted_by: str
    purge_at: str
    counts: dict[str, int]
    release_consumed_units: bool
    units: list[BinUnitsOut]
    operation_id: Uuid
    restoring: bool


class DeletedGroupPage(Out):
    items: list[DeletedGroupOut]
    next_cursor: str | None


class AuditEventOut(Out):
    id: int
    actor: str
    action: str
    target_type: str
    target_id: str | None
    target_name: str | None
    request_id: str | None
    source: str | None
    outcome: str
    counts: dict[str, Any]
    detail: str | None
    at: str


class AuditPage(Out):
    items: list[AuditEventOut]
    next_cursor: str | None


# accounts and credentials ---------------------------------------------------------
class TokenRequest(In):
    grant_type: GrantType
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "if": {"properties": {"grantType": {"const": "password"}}},
        "then": {
            "required": ["username", "password"],
            "properties": {
                "username": {"type": "string", "minLength": 1},
                "password": {"type": "string", "minLength": 1},
            },
        },
        "else": {
            "required": ["refreshToken"],
            "properties": {"refreshToken": {"type": "string", "minLength": 1}},
        },
    }


class TokenOut(Out):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class ApiTokenCreate(In):
    ttl_seconds: TtlSeconds | None = None
    label: Name | None = None


class ApiTokenOut(Out):
    token: str
    expires_at: str


class AccountCreate(In):
    username: Name
    role: Role
    password: Annotated[str, msgspec.Meta(extra_json_schema={"minLength": 8, "maxLength": 1024})]


class AccountOut(Out):
    id: Uuid
    username: str
    role: str
    active: bool


class AccountList(Out):
    items: list[AccountOut]
