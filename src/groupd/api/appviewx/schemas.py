"""AppViewX wire types: the envelope every answer uses, and the ``payload`` bodies.

Requests refuse unknown fields: an AppViewX client that sends, say, ``roles`` expects them
applied, and groupd has no roles to apply, so it says so instead of ignoring them.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec


class Envelope(msgspec.Struct, rename="camel", kw_only=True):
    """``{"response", "message", "appStatusCode", "tags", "headers"}``, in that order."""

    response: Any = None
    message: str | None = None
    app_status_code: str | None = None
    tags: dict[str, Any] | None = None
    headers: dict[str, Any] | None = None


class LoginResult(msgspec.Struct, rename="camel", kw_only=True):
    status: str
    app_status_code: str | None = None
    status_description: str | None = None
    session_id: str | None = None
    available_login_attempt_count: int | None = None


class In(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


# The fields AppViewX's own codes name when missing (ACCT_USERGROUP_001, ACCT_US_015) stay
# optional in the types, so that the server answers with those codes; the document marks
# them required (``OPENAPI_RULES``), which is what the server enforces.
def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


class UserGroupAdd(In):
    name: str | None = None
    description: str | None = None

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "required": ["name"],
        "properties": {
            "name": _ref("Name"),
            "description": {"anyOf": [_ref("Description"), {"type": "null"}]},
        },
    }


class UserGroupAddBody(In):
    payload: UserGroupAdd | None = None

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "required": ["payload"],
        "properties": {"payload": _ref("UserGroupAdd")},
    }


class UserGroupSearch(In, rename="camel"):
    start_index: int = 1
    max_size: int = 50
    sort_column: str = "name"
    sort_order: str = "asc"
    filter_value: str | None = None

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "properties": {
            "startIndex": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000},
            "maxSize": {"type": "integer", "minimum": 1, "maximum": 1000},
            "sortColumn": {"enum": ["name", "_id", "description"]},
            "sortOrder": {"enum": ["asc", "desc", "ASC", "DESC"]},
            "filterValue": {"anyOf": [{"type": "string", "maxLength": 255}, {"type": "null"}]},
        }
    }


class UserGroupSearchBody(In):
    payload: UserGroupSearch | None = None


class UserGroupAssignment(In, rename="camel"):
    login_name: str | None = None
    assign_user_groups: list[str] = []
    unassign_user_groups: list[str] | None = None
    # AppViewX's 2020 guide spells it with a capital A; both are accepted, not together.
    un_assign_user_groups: list[str] | None = None

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "required": ["loginName"],
        "properties": {
            "loginName": _ref("Name"),
            "assignUserGroups": {"type": "array", "items": _ref("Name"), "maxItems": 1000},
            "unassignUserGroups": {
                "anyOf": [
                    {"type": "array", "items": _ref("Name"), "maxItems": 1000},
                    {"type": "null"},
                ]
            },
        },
        "not": {"required": ["unAssignUserGroups"]},
    }


class UserGroupAssignmentBody(In):
    payload: UserGroupAssignment | None = None

    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "required": ["payload"],
        "properties": {"payload": _ref("UserGroupAssignment")},
    }


class ServiceTokenPayload(In):
    grant_type: str | None = None


class ServiceTokenBody(In):
    payload: ServiceTokenPayload | None = None
    grant_type: str | None = None


class UserGroupItem(msgspec.Struct, rename={"id": "_id"}, kw_only=True):
    name: str
    description: str
    state: str
    id: str


class RecordRange(msgspec.Struct, kw_only=True):
    start: int
    end: int


class UserGroupSearchResult(msgspec.Struct, rename="camel", kw_only=True):
    data: list[UserGroupItem]
    total_records: int
    obtained_records: int
    obtained_record_range: RecordRange
