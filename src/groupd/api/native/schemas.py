"""Native wire types (lowerCamelCase). Requests refuse unknown fields."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import UNSET, UnsetType

Scalar = str | int | float | bool | None


class In(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    pass


class Out(msgspec.Struct, rename="camel", kw_only=True):
    pass


# groups ---------------------------------------------------------------------------
class LinkedEntity(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    type: str
    ref: str | None = None


class GroupCreate(In):
    name: str
    parent_id: str | None = None
    kind: str = "static"
    description: str | None = None
    value_type: str | None = None
    values: list[str] | None = None
    linked_entity: LinkedEntity | None = None
    agent_id: str | None = None


class GroupBatchItem(GroupCreate, kw_only=True):
    id: str | None = None


class GroupBatch(In):
    groups: list[GroupBatchItem]


class GroupUpdate(In):
    name: str | UnsetType = UNSET
    description: str | UnsetType = UNSET
    values: list[str] | UnsetType = UNSET
    linked_entity: LinkedEntity | None | UnsetType = UNSET


class GroupMove(In):
    parent_id: str


class GroupOut(Out):
    id: str
    parent_id: str | None
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
    units: int = 1
    license_id: str | None = None
    product: str | None = None


class ObjectCreate(In):
    kind: str
    name: str
    home_group_id: str
    login_name: str | None = None
    status: str | None = None
    attributes: dict[str, Scalar] = {}
    id: str | None = None
    activations: list[ActivationIn] = []


class ObjectBatch(In):
    objects: list[ObjectCreate]


class ObjectUpdate(In):
    name: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    attributes: dict[str, Scalar] | UnsetType = UNSET


class ObjectMove(In):
    group_id: str


class ObjectOut(Out):
    id: str
    kind: str
    name: str
    home_group_id: str
    login_name: str | None
    status: str | None
    attributes: dict[str, Any]


class ObjectPage(Out):
    items: list[ObjectOut]
    next_cursor: str | None


class ObjectBatchOut(Out):
    items: list[ObjectOut]


class MembershipOut(Out):
    group_id: str
    group_name: str
    object_id: str


class MembershipList(Out):
    items: list[MembershipOut]


# licences -------------------------------------------------------------------------
class LicenseCreate(In):
    product: str
    unit_kind: str
    total_units: int


class LicenseOut(Out):
    id: str
    product: str
    unit_kind: str
    total_units: int
    used_units: int


class LicensePage(Out):
    items: list[LicenseOut]
    next_cursor: str | None


class ActivationCreate(In):
    object_id: str
    units: int = 1


class ActivationOut(Out):
    id: str
    license_id: str
    object_id: str
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


class DeletePreview(Out):
    dry_run: bool
    group: TargetOut
    impact: dict[str, Any]


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
    grant_type: str
    username: str | None = None
    password: str | None = None
    refresh_token: str | None = None


class TokenOut(Out):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int


class ApiTokenCreate(In):
    ttl_seconds: int | None = None
    label: str | None = None


class ApiTokenOut(Out):
    token: str
    expires_at: str


class AccountCreate(In):
    username: str
    role: str
    password: str


class AccountOut(Out):
    id: str
    username: str
    role: str
    active: bool


class AccountList(Out):
    items: list[AccountOut]
