"""The ESET Connect face: Bearer access tokens, google.rpc.Status error bodies.

``answer_for`` is the one place where domain errors become ESET answers (status, body,
headers); the OAuth token endpoint shares it and only adds the RFC 6749 error fields
that OAuth clients look for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from groupd.api import wire
from groupd.api.auth import bearer_account
from groupd.api.http import ApiRequest, json_response
from groupd.errors import (
    AccountLocked,
    AuthenticationFailed,
    Conflict,
    GroupdError,
    InvalidInput,
    NotAcceptable,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PreconditionFailed,
    RateLimited,
    Unavailable,
    UnsupportedMediaType,
)
from groupd.services.accounts import AccountView

SOURCE = "eset"
# In /openapi.json, with ESET's own error body (``openapi_error_content`` below).
DOCUMENTED = True
TYPE_PREFIX = "type.googleapis.com/google.rpc."
# Conflicts that are name or id clashes: AIP's ALREADY_EXISTS. Every other conflict
# (a delete guard, moving a built-in, too few free units) is a request the current
# state refuses, which ESET files under "Validation error. Invalid argument provided".
ALREADY_EXISTS_CODES = frozenset(
    {"name_taken", "uuid_taken", "login_taken", "username_taken", "already_activated"}
)
# OAuth error codes (RFC 6749 5.2) the token endpoint may answer with.
OAUTH_CODES = frozenset({"invalid_request", "invalid_grant", "unsupported_grant_type"})

# Field names the services use, as ESET requests spell them. Endpoint paths override
# the general table where the same service field comes from another ESET field.
FIELD_NAMES = {
    "parentId": "group.parentGroupUuid",
    "name": "group.displayName",
    "description": "group.description",
    "linkedEntity.type": "group.linkedEntityType",
    "agentId": "group.ownerUuid",
    "uuid": "uuid",
    "cursor": "pageToken",
    "limit": "pageSize",
    "objects": "devices",
    "homeGroupId": "devices.groupUuid",
    "units": "devices.activeProducts.units",
    "licenceId": "devices.activeProducts.product",
}
FIELD_NAMES_BY_PATH: dict[str, dict[str, str]] = {
    "/v1/groups/{groupUuid}:move": {"parentId": "newParentUuid"},
    "/v1/groups/{groupUuid}:rename": {"name": "displayName"},
    "/v1/devices:batchImport": {"name": "devices.displayName", "uuid": "devices.uuid"},
}


@dataclass
class EsetAnswer:
    status: int
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    oauth_error: str | None = None


def _field_of(error: GroupdError, path: str) -> str | None:
    name = error.extra.get("field")
    if not isinstance(name, str):
        return None
    return FIELD_NAMES_BY_PATH.get(path, {}).get(name) or FIELD_NAMES.get(name, name)


def _bad_request(error: GroupdError, path: str) -> list[dict[str, Any]]:
    name = _field_of(error, path)
    if name is None:
        return []
    return [
        {
            "@type": TYPE_PREFIX + "BadRequest",
            "fieldViolations": [{"field": name, "description": error.detail}],
        }
    ]


def _blocker_description(blocker: dict[str, Any]) -> str:
    name = f"group '{blocker['groupName']}'"
    if "linkedEntityType" in blocker:
        return f"{name} is linked to a {blocker['linkedEntityType']}"
    if "activeMembers" in blocker:
        return f"{name} has {blocker['activeMembers']} active members"
    return f"{name} is a built-in group"


def _precondition_failure(error: Conflict) -> list[dict[str, Any]]:
    """google.rpc.PreconditionFailure: one violation per blocking group (or the rule)."""
    blockers = wire.error_extra(error.extra).get("blockers") or []
    violations = [
        {
            "type": str(blocker["rule"]).upper(),
            "subject": f"groups/{blocker['groupId']}",
            "description": _blocker_description(blocker),
        }
        for blocker in blockers
    ] or [{"type": error.code.upper(), "subject": "", "description": error.detail}]
    return [{"@type": TYPE_PREFIX + "PreconditionFailure", "violations": violations}]


def answer_for(error: GroupdError, *, path: str, oauth: bool = False) -> EsetAnswer:
    """The ESET answer to a domain error; ``oauth`` for the token endpoint, where wrong
    credentials are a 400 ``invalid_grant`` (RFC 6749 5.2), not a 401."""
    message = error.detail
    if isinstance(error, PayloadTooLarge):
        return EsetAnswer(413, message)
    if isinstance(error, UnsupportedMediaType):
        return EsetAnswer(415, message, oauth_error="invalid_request")
    if isinstance(error, NotAcceptable):
        return EsetAnswer(406, message)
    if isinstance(error, InvalidInput):
        code = error.code if error.code in OAUTH_CODES else "invalid_request"
        return EsetAnswer(400, message, _bad_request(error, path), oauth_error=code)
    if isinstance(error, NotFound):
        return EsetAnswer(404, message)
    if isinstance(error, Conflict):
        if error.code in ALREADY_EXISTS_CODES:
            return EsetAnswer(409, message)
        return EsetAnswer(400, message, _precondition_failure(error))
    if isinstance(error, PreconditionFailed):
        return EsetAnswer(400, message)
    if isinstance(error, AuthenticationFailed):
        headers = {}
        if isinstance(error, AccountLocked) and error.extra.get("retry_after") is not None:
            headers["Retry-After"] = str(error.extra["retry_after"])
        if oauth:
            return EsetAnswer(400, message, headers=headers, oauth_error="invalid_grant")
        headers["WWW-Authenticate"] = 'Bearer realm="eset", error="invalid_token"'
        return EsetAnswer(401, message, headers=headers)
    if isinstance(error, PermissionDenied):
        return EsetAnswer(403, message)
    if isinstance(error, RateLimited):
        delay = error.retry_after
        return EsetAnswer(
            429,
            message,
            [{"@type": TYPE_PREFIX + "RetryInfo", "retryDelay": f"{delay}s"}],
            headers={"Retry-After": str(delay)},
        )
    if isinstance(error, Unavailable):
        return EsetAnswer(503, message, headers={"Retry-After": "30"})
    return EsetAnswer(400, message, _bad_request(error, path))


def status_body(
    status: int, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """google.rpc.Status as ESET writes it: ``code`` holds the HTTP status."""
    return {"code": status, "message": message, "details": details or []}


def error_response(
    status: int,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    return json_response(status_body(status, message, details), status, headers=headers)


def _render(answer: EsetAnswer, extra: dict[str, Any] | None = None) -> Response:
    body = status_body(answer.status, answer.message, answer.details)
    if extra:
        body = {**extra, **body}
    return json_response(body, answer.status, headers=answer.headers)


def internal_error(req: ApiRequest) -> Response:
    details = [{"@type": TYPE_PREFIX + "RequestInfo", "requestId": req.request_id}]
    return error_response(500, "Internal server failure. Try again later.", details=details)


# google.rpc.Status as ``status_body`` writes it; the token endpoint adds the OAuth fields.
STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "details"],
    "properties": {
        "code": {"type": "integer"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
        "error": {"type": "string"},
        "error_description": {"type": "string"},
    },
}


class EsetSurface:
    """Bearer access tokens only; a missing or malformed header is the seed's 400."""

    name = "eset"
    # For the OpenAPI document: every error is a google.rpc.Status, a delete still running
    # answers 202 with ``[]``, and a delete whose response-id wait ran out answers 504.
    openapi_error_content: dict[str, Any] = {"application/json": {"schema": STATUS_SCHEMA}}
    openapi_pending_content: dict[str, Any] = {
        "application/json": {"schema": {"type": "array", "maxItems": 0}}
    }
    openapi_extra_statuses: tuple[int, ...] = (504,)

    def authenticate(self, req: ApiRequest) -> AccountView:
        req.actor_source = SOURCE
        header = req.headers.get("authorization", "").strip()
        if not header:
            raise InvalidInput(
                "bad or missing authorization: send 'Authorization: Bearer <access token>'",
                field="Authorization",
            )
        scheme, _, secret = header.partition(" ")
        secret = secret.strip()
        if scheme.lower() != "bearer" or not secret or any(c.isspace() for c in secret):
            raise InvalidInput(
                "bad or missing authorization: the header must be 'Bearer <access token>'",
                field="Authorization",
            )
        return bearer_account(req, secret)

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        return _render(answer_for(error, path=req.endpoint.path))

    def render_internal_error(self, req: ApiRequest) -> Response:
        return internal_error(req)


class EsetTokenSurface(EsetSurface):
    """``POST /oauth/token``: the same answers, plus ``error``/``error_description``."""

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        answer = answer_for(error, path=req.endpoint.path, oauth=True)
        answer.headers["Cache-Control"] = "no-store"
        extra = None
        if answer.oauth_error is not None:
            extra = {"error": answer.oauth_error, "error_description": answer.message}
        return _render(answer, extra)


ESET = EsetSurface()
ESET_TOKEN = EsetTokenSurface()
