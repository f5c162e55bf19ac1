"""The OpenAPI 3.1 document, built from the endpoint declarations and msgspec types."""

from __future__ import annotations

import re
from typing import Any

import msgspec

from groupd import __version__
from groupd.api import text_rules
from groupd.api.http import UUID_PARAM, Endpoint

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "code", "detail", "requestId"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string"},
        "detail": {"type": "string"},
        "requestId": {"type": "string"},
    },
}
REASONS = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No content",
    304: "Not modified: If-None-Match names the current ETag",
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Invalid input (OAA) or refused (AppViewX)",
    406: "Not acceptable",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    503: "Maintenance",
    504: "Deadline exceeded",
}


# A query or header parameter's bounds, as the OpenAPI keywords that state them.
_PARAMETER_KEYWORDS = (
    ("enum", "enum"),
    ("minimum", "minimum"),
    ("maximum", "maximum"),
    ("format", "format"),
    ("pattern", "pattern"),
    ("min_length", "minLength"),
    ("max_length", "maxLength"),
    ("items", "items"),
    ("min_items", "minItems"),
    ("max_items", "maxItems"),
)


def build_openapi(endpoints: list[Endpoint]) -> dict[str, Any]:
    documented = [e for e in endpoints if e.document]
    types: set[Any] = set()
    for endpoint in documented:
        for kind in (endpoint.body, endpoint.response):
            # a tuple of answer types documents an answer that is one of them
            types.update(kind if isinstance(kind, tuple) else [kind] if kind else [])
    ordered = sorted(types, key=repr)
    schemas, components = msgspec.json.schema_components(
        ordered, ref_template="#/components/schemas/{name}"
    )
    for kind in _struct_types():
        # Rules between fields (``if``/``then``) that no field's type can state.
        extra = getattr(kind, "OPENAPI_RULES", None)
        if extra and kind.__name__ in components:
            components[kind.__name__].update(extra)
    components = text_rules.apply(components)
    components.update(text_rules.components())
    ref_of: dict[Any, Any] = dict(zip(ordered, schemas, strict=True))
    for endpoint in documented:
        if isinstance(endpoint.response, tuple):
            ref_of[endpoint.response] = {"anyOf": [ref_of[t] for t in endpoint.response]}
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in documented:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": _operation_id(endpoint),
            "tags": endpoint.tags or [endpoint.surface.name],
            "parameters": _parameters(endpoint),
            "responses": _responses(endpoint, ref_of),
        }
        if endpoint.role is None:
            operation["security"] = []
        if endpoint.body is not None:
            media = getattr(endpoint.surface, "openapi_media_type", "application/json")
            operation["requestBody"] = {
                "required": True,
                "content": {media: {"schema": ref_of[endpoint.body]}},
            }
        elif endpoint.form is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": endpoint.form}},
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    components["Problem"] = PROBLEM_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "groupd",
            "version": __version__,
            "description": "Group directory: groups, objects, licences and safe deletes.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
                # The two OAuth 2 token endpoints (form-encoded, RFC 6749): ESET's
                # password grant and AppViewX's client-credentials service token.
                "esetPassword": {
                    "type": "oauth2",
                    "flows": {
                        "password": {
                            "tokenUrl": "/oauth/token",
                            "refreshUrl": "/oauth/token",
                            "scopes": {},
                        }
                    },
                },
                "appviewxClient": {
                    "type": "oauth2",
                    "flows": {
                        "clientCredentials": {
                            "tokenUrl": "/avxapi/acctmgmt-get-service-token",
                            "scopes": {},
                        }
                    },
                },
            },
        },
        "security": [{"bearer": []}, {"basic": []}],
    }


def _struct_types() -> list[type[msgspec.Struct]]:
    found: list[type[msgspec.Struct]] = []
    pending = [msgspec.Struct]
    while pending:
        for kind in pending.pop().__subclasses__():
            found.append(kind)
            pending.append(kind)
    return found


def _operation_id(endpoint: Endpoint) -> str:
    words = re.sub(r"[{}:]", " ", endpoint.path).replace("/", " ").split()
    return endpoint.method.lower() + "".join(w[:1].upper() + w[1:] for w in words)


# RFC 3986's unreserved and sub-delimiter characters, which need no percent-encoding; no
# ":" (``http.route_path``: it starts a custom method). The server reads more (a name
# percent-encoded); the document names what a client can send as it is.
PATH_SEGMENT = "^[A-Za-z0-9._~!$&'()*+,;=@-]+$"


def _parameters(endpoint: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in re.findall(r"{(\w+)}", endpoint.path):
        # One path segment, and no ":" (``http.route_path``: it starts a custom method).
        path_schema: dict[str, Any] = {"type": "string", "pattern": PATH_SEGMENT}
        if UUID_PARAM.search(name):
            path_schema = {"type": "string", "format": "uuid"}
        params.append({"name": name, "in": "path", "required": True, "schema": path_schema})
    for where, items in (("query", endpoint.query), ("header", endpoint.headers)):
        for item in items:
            schema: dict[str, Any] = {"type": item.type}
            for attribute, keyword in _PARAMETER_KEYWORDS:
                value = getattr(item, attribute)
                if value is not None and value != []:
                    schema[keyword] = value
            params.append(
                {
                    "name": item.name,
                    "in": where,
                    "required": item.required,
                    "description": item.description,
                    "schema": schema,
                }
            )
    return params


PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _responses(endpoint: Endpoint, ref_of: dict[Any, Any]) -> dict[str, Any]:
    """Answers of one endpoint. A surface may describe its own error bodies
    (``openapi_error_content``), its 202 body (``openapi_pending_content``) and the
    statuses its vendor adds (``openapi_extra_statuses``); the native API's are the default.
    """
    surface = endpoint.surface
    error_content = getattr(surface, "openapi_error_content", PROBLEM_CONTENT)
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": REASONS.get(endpoint.status, "OK")}
    media = getattr(surface, "openapi_media_type", "application/json")
    if endpoint.response is not None and endpoint.status != 204:
        success["content"] = {media: {"schema": ref_of[endpoint.response]}}
    responses[str(endpoint.status)] = success
    if endpoint.is_async:
        pending = getattr(surface, "openapi_pending_content", None)
        if pending is None and endpoint.response is not None:
            pending = {"application/json": {"schema": ref_of[endpoint.response]}}
        responses["202"] = {"description": "Accepted; still running"}
        if pending:
            responses["202"]["content"] = pending
    if endpoint.method == "GET" and any(h.name == "If-None-Match" for h in endpoint.headers):
        responses["304"] = {
            "description": REASONS[304],
            "headers": {"ETag": {"schema": {"type": "string"}}},
        }
    if endpoint.method == "PUT" and endpoint.status == 201:
        responses["204"] = {"description": "Already so"}
    codes = (
        set(endpoint.errors) | {400, 429, 503} | set(getattr(surface, "openapi_extra_statuses", ()))
    )
    if endpoint.role is not None:
        codes |= {401, 403}
    if endpoint.body is not None or endpoint.json_body is False:
        codes |= {413, 415}
    for code in sorted(codes - {endpoint.status}):
        responses[str(code)] = {"description": REASONS.get(code, "Error"), "content": error_content}
    return responses
