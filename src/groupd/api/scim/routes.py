"""``/scim/v2``'s route table: paths, parameters and documents, without the handlers.

The handlers parse and render with ``scim2-models``, whose import is a quarter of a
server's start; they are imported on the first SCIM request, so a server that no
identity provider talks to, and every process that serves no API, never pays for it
(decision 0077).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam
from groupd.api.native.common import CONDITIONS
from groupd.api.scim import documents
from groupd.api.scim.surface import SCIM, SCIM_BASE

BASE = SCIM_BASE
Document = dict[str, Any]


def _handler(name: str) -> Callable[[ApiRequest], Any]:
    """``handlers.<name>``, imported when first called."""

    def handle(req: ApiRequest) -> Any:
        return getattr(importlib.import_module("groupd.api.scim.handlers"), name)(req)

    handle.__name__ = handle.__qualname__ = name
    return handle


def _async_handler(name: str) -> Callable[[ApiRequest], Awaitable[Response]]:
    """``handlers.<name>``, an async one, imported when first called."""

    async def handle(req: ApiRequest) -> Response:
        module = importlib.import_module("groupd.api.scim.handlers")
        return await getattr(module, name)(req)  # type: ignore[no-any-return]

    handle.__name__ = handle.__qualname__ = name
    return handle


create_group = _handler("create_group")
create_user = _handler("create_user")
delete_group = _async_handler("delete_group")
delete_user = _handler("delete_user")
get_group = _handler("get_group")
get_resource_type = _handler("get_resource_type")
get_schema = _handler("get_schema")
get_user = _handler("get_user")
list_groups = _handler("list_groups")
list_resource_types = _handler("list_resource_types")
list_schemas = _handler("list_schemas")
list_users = _handler("list_users")
patch_group = _handler("patch_group")
patch_user = _handler("patch_user")
replace_group = _handler("replace_group")
replace_user = _handler("replace_user")
service_provider_config = _handler("service_provider_config")


def _search_parameters(filter_pattern: str) -> list[QueryParam]:
    return [
        QueryParam(
            "filter",
            description="RFC 7644 §3.4.2.2 filter (the document names the forms providers send)",
            pattern=filter_pattern,
        ),
        QueryParam("startIndex", "integer", "1-based index of the first result"),
        QueryParam("count", "integer", "results per page (at most 1000)"),
        *SELECT,
    ]


SELECT = [
    QueryParam(
        "attributes",
        description="attributes to return, comma-separated",
        pattern=documents.ATTRIBUTES,
    ),
    QueryParam(
        "excludedAttributes",
        description="attributes to leave out, comma-separated",
        pattern=documents.ATTRIBUTES,
    ),
]
USER_SEARCH = _search_parameters(documents.USER_FILTER)
GROUP_SEARCH = _search_parameters(documents.GROUP_FILTER)
# If-Match and If-None-Match as the native API states them (RFC 9110 §13, decision 0020).
IF_MATCH = CONDITIONS


def endpoints() -> list[Endpoint]:
    def e(
        method: str,
        path: str,
        handler: Any,
        summary: str,
        *,
        body: Any = None,
        status: int = 200,
        query: list[QueryParam] | None = None,
        headers: list[QueryParam] | None = None,
        errors: tuple[int, ...] = (400, 401, 403, 404),
        is_async: bool = False,
    ) -> Endpoint:
        return Endpoint(
            method,
            BASE + path,
            handler,
            SCIM,
            role="editor",
            write=method != "GET" and not path.endswith(".search"),
            summary=summary,
            body=body,
            response=None if status == 204 else Document,
            status=status,
            query=query or [],
            headers=headers or [],
            tags=["scim"],
            errors=errors,
            is_async=is_async,
        )

    return [
        e("GET", "/Users", list_users, "SCIM: query users", query=USER_SEARCH),
        e(
            "POST",
            "/Users/.search",
            list_users,
            "SCIM: query users",
            body=documents.ScimUserSearch,
        ),
        e(
            "POST",
            "/Users",
            create_user,
            "SCIM: create a user",
            body=documents.ScimUserIn,
            status=201,
        ),
        e("GET", "/Users/{id}", get_user, "SCIM: a user", query=SELECT),
        e(
            "PUT",
            "/Users/{id}",
            replace_user,
            "SCIM: replace a user",
            body=documents.ScimUserIn,
            headers=IF_MATCH,
        ),
        e(
            "PATCH",
            "/Users/{id}",
            patch_user,
            "SCIM: change a user",
            body=documents.ScimUserPatch,
            headers=IF_MATCH,
        ),
        e(
            "DELETE",
            "/Users/{id}",
            delete_user,
            "SCIM: delete a user",
            status=204,
            headers=IF_MATCH,
        ),
        e("GET", "/Groups", list_groups, "SCIM: query groups", query=GROUP_SEARCH),
        e(
            "POST",
            "/Groups/.search",
            list_groups,
            "SCIM: query groups",
            body=documents.ScimGroupSearch,
        ),
        e(
            "POST",
            "/Groups",
            create_group,
            "SCIM: create a group",
            body=documents.ScimGroupIn,
            status=201,
        ),
        e("GET", "/Groups/{id}", get_group, "SCIM: a group", query=SELECT),
        e(
            "PUT",
            "/Groups/{id}",
            replace_group,
            "SCIM: replace a group",
            body=documents.ScimGroupIn,
            query=SELECT,
            headers=IF_MATCH,
        ),
        e(
            "PATCH",
            "/Groups/{id}",
            patch_group,
            "SCIM: change a group and its members",
            body=documents.ScimGroupPatch,
            query=SELECT,
            headers=IF_MATCH,
        ),
        e(
            "DELETE",
            "/Groups/{id}",
            delete_group,
            "SCIM: delete a group",
            status=204,
            headers=IF_MATCH,
            is_async=True,
        ),
        e(
            "GET",
            "/ServiceProviderConfig",
            service_provider_config,
            "SCIM: what this server supports",
        ),
        e("GET", "/ResourceTypes", list_resource_types, "SCIM: resource types"),
        e(
            "GET",
            "/ResourceTypes/{resourceType}",
            get_resource_type,
            "SCIM: a resource type",
        ),
        e("GET", "/Schemas", list_schemas, "SCIM: schemas"),
        e("GET", "/Schemas/{schema}", get_schema, "SCIM: a schema"),
    ]
