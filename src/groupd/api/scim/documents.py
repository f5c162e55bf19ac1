"""What the OpenAPI document says about SCIM requests (decision 0059).

The handlers read bodies as JSON objects and leave validation to ``scim2-models``, whose
rules (RFC 7643's schemas, served at ``/Schemas``) are wider than JSON Schema can say
simply. These types document only: the attributes groupd keeps and the forms of PATCH
and filter the providers send, so that every request the document allows is one the
server takes (decision 0022). Anything else RFC 7643 allows is taken too, undocumented.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import UNSET, Meta, UnsetType

from groupd.api.text_rules import Name

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_URN = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
NAME: dict[str, Any] = {"x-groupd-text": "Name"}  # text_rules: 1-255 visible characters
# A SCIM string in a filter: no quote, backslash or control character.
_STRING = r'"[ !#-\[\]-~]{0,64}"'
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_ATTRIBUTE = r"[A-Za-z][A-Za-z0-9_-]{0,30}(\.[A-Za-z][A-Za-z0-9_-]{0,30})?"
ATTRIBUTES = f"^{_ATTRIBUTE}(,{_ATTRIBUTE}){{0,9}}$"
MEMBERS_MAX = 1000  # documented; a request may name up to 10,000 (provisioning.groups)
EMAILS_MAX = 15  # provisioning.users keeps as many
EMAIL = "^[a-z][a-z0-9]{0,30}@[a-z][a-z0-9]{0,30}\\.(com|org|net)$"


def _schemas(core: str, *others: str) -> Any:
    urn = Annotated[str, Meta(extra_json_schema={"enum": [core, *others]})]
    return Annotated[
        list[urn],
        Meta(min_length=1, extra_json_schema={"contains": {"const": core}, "uniqueItems": True}),
    ]


def _filter(comparisons: list[str]) -> str:
    one = "(" + "|".join(comparisons) + ")"
    return f"^{one}( (and|or) {one}){{0,3}}$"


_TEXT_OPERATORS = "(eq|ne|co|sw|ew|gt|ge|lt|le)"
USER_FILTER = _filter(
    [
        f"(userName|externalId|displayName) {_TEXT_OPERATORS} {_STRING}",
        # scim2-models checks an address compared for equality as an address.
        f'emails(\\.value)? (eq|ne) "{EMAIL[1:-1]}"',
        f"emails(\\.value)? (co|sw|ew) {_STRING}",
        "active (eq|ne) (true|false)",
        f"id (eq|ne) {_STRING}",
        "(userName|externalId|displayName|emails|active|id) pr",
    ]
)
GROUP_FILTER = _filter(
    [
        f"(displayName|externalId) {_TEXT_OPERATORS} {_STRING}",
        f"(id (eq|ne)|members(\\.value)? eq) {_STRING}",
        "(displayName|externalId|members|id) pr",
    ]
)


class Email(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    # scim2-models checks an address's form (email-validator): the document names a
    # plain subset of the addresses it takes; ``primary`` (at most one) is left out.
    value: Annotated[str, Meta(pattern=EMAIL)]
    type: Annotated[str, Meta(extra_json_schema={"enum": ["work", "home", "other"]})] | (
        UnsetType
    ) = UNSET


class PersonName(msgspec.Struct, rename="camel", forbid_unknown_fields=True, omit_defaults=True):
    formatted: Name | UnsetType = UNSET
    family_name: Name | UnsetType = UNSET
    given_name: Name | UnsetType = UNSET


class ScimUserIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A User as created or replaced (RFC 7643 §4.1): what groupd keeps in columns, and
    ``name``; the rest of RFC 7643's User (and its enterprise extension) is kept as sent."""

    schemas: _schemas(USER_URN, ENTERPRISE_URN)  # type: ignore[valid-type]
    user_name: Name
    external_id: Name | UnsetType = UNSET
    display_name: Name | UnsetType = UNSET
    active: bool | UnsetType = UNSET
    name: PersonName | UnsetType = UNSET
    emails: Annotated[list[Email], Meta(max_length=EMAILS_MAX)] | UnsetType = UNSET


class Member(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    value: Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
    type: Annotated[str, Meta(extra_json_schema={"enum": ["User"]})] | UnsetType = UNSET


Members = Annotated[list[Member], Meta(max_length=MEMBERS_MAX)]


class ScimGroupIn(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A Group as created or replaced (RFC 7643 §4.2); members are users' ids."""

    schemas: _schemas(GROUP_URN)  # type: ignore[valid-type]
    display_name: Name
    external_id: Name | UnsetType = UNSET
    members: Members | UnsetType = UNSET


def _operation(op: list[str], path: dict[str, Any] | None, value: Any = None) -> dict[str, Any]:
    properties: dict[str, Any] = {"op": {"enum": op}}
    required = ["op"]
    if path is not None:
        properties["path"] = path
        required.append("path")
    if value is not None:
        properties["value"] = value
        required.append("value")
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }


SET = ["add", "replace", "Add", "Replace"]
REMOVE = ["remove", "Remove"]
_MEMBER_VALUES = {
    "type": "array",
    "maxItems": MEMBERS_MAX,
    "items": {"$ref": "#/components/schemas/Member"},
}
USER_OPERATIONS: list[dict[str, Any]] = [
    _operation(SET, {"enum": ["active"]}, {"type": "boolean"}),
    _operation(
        SET, {"enum": ["displayName", "externalId", "name.givenName", "name.familyName"]}, NAME
    ),
    _operation(SET, {"enum": ["userName"]}, NAME),
    _operation(REMOVE, {"enum": ["displayName", "externalId", "name", "emails", "active"]}),
    _operation(
        SET,
        None,
        {
            "type": "object",
            "minProperties": 1,
            "properties": {"active": {"type": "boolean"}, "displayName": NAME},
            "additionalProperties": False,
        },
    ),
]
GROUP_OPERATIONS: list[dict[str, Any]] = [
    _operation([*SET, *REMOVE], {"enum": ["members"]}, _MEMBER_VALUES),
    _operation(REMOVE, {"enum": ["members", "externalId"]}),
    _operation(REMOVE, {"type": "string", "pattern": f'^members\\[value eq "{_UUID}"\\]$'}),
    _operation(SET, {"enum": ["displayName", "externalId"]}, NAME),
    _operation(
        SET,
        None,
        {
            "type": "object",
            "minProperties": 1,
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "displayName": NAME,
                "externalId": NAME,
            },
            "additionalProperties": False,
        },
    ),
]


def _patch(operations: list[dict[str, Any]]) -> Any:
    operation = Annotated[dict[str, Any], Meta(extra_json_schema={"anyOf": operations})]
    return Annotated[list[operation], Meta(min_length=1, max_length=20)]


class ScimUserPatch(
    msgspec.Struct,
    rename={"schemas": "schemas", "operations": "Operations"},
    forbid_unknown_fields=True,
):
    """A PATCH of a User (RFC 7644 §3.5.2) in the forms Okta and Entra send."""

    schemas: _schemas(PATCH_URN)  # type: ignore[valid-type]
    operations: _patch(USER_OPERATIONS)  # type: ignore[valid-type]


class ScimGroupPatch(
    msgspec.Struct,
    rename={"schemas": "schemas", "operations": "Operations"},
    forbid_unknown_fields=True,
):
    """A PATCH of a Group and its members (RFC 7644 §3.5.2) in the forms Okta and Entra
    send (decision 0053)."""

    schemas: _schemas(PATCH_URN)  # type: ignore[valid-type]
    operations: _patch(GROUP_OPERATIONS)  # type: ignore[valid-type]


Attributes = Annotated[list[Annotated[str, Meta(pattern=f"^{_ATTRIBUTE}$")]], Meta(max_length=10)]


class ScimUserSearch(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A query of Users in a body (RFC 7644 §3.4.3)."""

    schemas: _schemas(SEARCH_URN)  # type: ignore[valid-type]
    filter: Annotated[str, Meta(pattern=USER_FILTER)] | UnsetType = UNSET
    start_index: int | UnsetType = UNSET
    count: int | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET
    excluded_attributes: Attributes | UnsetType = UNSET


class ScimGroupSearch(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """A query of Groups in a body (RFC 7644 §3.4.3)."""

    schemas: _schemas(SEARCH_URN)  # type: ignore[valid-type]
    filter: Annotated[str, Meta(pattern=GROUP_FILTER)] | UnsetType = UNSET
    start_index: int | UnsetType = UNSET
    count: int | UnsetType = UNSET
    attributes: Attributes | UnsetType = UNSET
    excluded_attributes: Attributes | UnsetType = UNSET
