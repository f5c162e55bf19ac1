"""The native API's face: Bearer or Basic credentials, RFC 9457 problem details.

This is the one place where domain errors become native HTTP answers.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from groupd.api import wire
from groupd.api.auth import header_account
from groupd.api.http import ApiRequest, json_response
from groupd.errors import (
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

PROBLEM = "application/problem+json"

# Most specific first: the first match wins.
STATUS_BY_ERROR: tuple[tuple[type[GroupdError], int, str], ...] = (
    (PayloadTooLarge, 413, "Payload too large"),
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (NotAcceptable, 406, "Not acceptable"),
    (InvalidInput, 400, "Bad request"),
    (NotFound, 404, "Not found"),
    (Conflict, 409, "Conflict"),
    (PreconditionFailed, 412, "Precondition failed"),
    (AuthenticationFailed, 401, "Unauthorized"),
    (PermissionDenied, 403, "Forbidden"),
    (RateLimited, 429, "Too many requests"),
    (Unavailable, 503, "Service unavailable"),
)


def status_of(error: GroupdError) -> tuple[int, str]:
    for kind, status, title in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status, title
    return 400, "Bad request"


def problem(
    status: int, title: str, code: str, detail: str, request_id: str, **extra: Any
) -> dict[str, Any]:
    return {
        "type": f"urn:groupd:problem:{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "requestId": request_id,
        **extra,
    }


class NativeSurface:
    name = "native"

    def authenticate(self, req: ApiRequest) -> AccountView:
        return header_account(req)

    def authenticates_cheaply(self, req: ApiRequest) -> bool:
        """A bearer token is one indexed read; a Basic password may need argon2."""
        return req.headers.get("authorization", "")[:7].lower() == "bearer "

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        status, title = status_of(error)
        extra = wire.error_extra({k: v for k, v in error.extra.items() if k != "retry_after"})
        headers: dict[str, str] = {}
        if isinstance(error, AuthenticationFailed):
            headers["WWW-Authenticate"] = 'Bearer realm="groupd", Basic realm="groupd"'
        retry_after = error.extra.get("retry_after")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if isinstance(error, Unavailable):
            headers["Retry-After"] = "30"
        body = problem(status, title, error.code, error.detail, req.request_id, **extra)
        return json_response(body, status, headers=headers, media_type=PROBLEM)

    def render_internal_error(self, req: ApiRequest) -> Response:
        body = problem(
            500,
            "Internal server error",
            "internal",
            "an unexpected error; it has been logged with the request id",
            req.request_id,
        )
        return json_response(body, 500, media_type=PROBLEM)


NATIVE = NativeSurface()
