"""OAA's face: HTTP Basic only, errors as a GroupResponse in the client's format.

``answer_for`` is the one place where domain errors become OAA answers.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from groupd.api.auth import basic_account
from groupd.api.http import ApiRequest
from groupd.api.oaa.wire import (
    ALLOWED_METHODS,
    JSON,
    Format,
    OaaAllGroupResponse,
    OaaGroupResponse,
    answer_format,
    render,
)
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

# Most specific first: the first match wins. Oracle documents 405 "Invalid input" (with a
# GroupResponse body) for every bad request; the media-type and size refusals keep their
# own codes because a client can act on them. A taken group name is 409: the request is
# well formed and would succeed under another name, which is what 409 says and what the
# native API answers, and it keeps 405 meaning "fix the input".
ANSWERS: tuple[tuple[type[GroupdError], int, str], ...] = (
    (PayloadTooLarge, 413, "Payload too large"),
    (UnsupportedMediaType, 415, "Unsupported media type"),
    (NotAcceptable, 406, "Not acceptable"),
    (InvalidInput, 405, "Invalid input"),
    (NotFound, 404, "Group not found"),
    (Conflict, 409, "Conflict"),
    (PreconditionFailed, 412, "Precondition failed"),
    (AuthenticationFailed, 401, "Unauthorized"),
    (PermissionDenied, 403, "Forbidden"),
    (RateLimited, 429, "Too many requests"),
    (Unavailable, 503, "Service Unavailable"),
)


def answer_for(error: GroupdError) -> tuple[int, str]:
    """The HTTP status and the GroupResponse message for a domain error."""
    for kind, status, title in ANSWERS:
        if isinstance(error, kind):
            return status, f"{title}: {error.detail}"
    return 405, f"Invalid input: {error.detail}"


def _error_format(req: ApiRequest) -> Format:
    try:
        return answer_format(req.headers)
    except NotAcceptable:
        return JSON  # a client that accepts nothing we speak still learns why, in JSON


class OaaSurface:
    name = "oaa"
    # For the OpenAPI document: errors are a GroupResponse (``status`` holds the HTTP status
    # as a string). A client that asks for XML by Accept gets the same in XML; JSON is the
    # default, so the document states JSON. Bad input is 405, not 400.
    openapi_error_content: dict[str, Any] = {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {"status": {"type": "string"}, "message": {"type": "string"}},
            }
        }
    }
    openapi_extra_statuses: tuple[int, ...] = (405, 406, 409)

    def authenticate(self, req: ApiRequest) -> AccountView:
        scheme, _, value = req.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            raise AuthenticationFailed("HTTP Basic credentials are required")
        return basic_account(req, value)

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        status, message = answer_for(error)
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="oaa-policy", charset="UTF-8"'
        elif status == 405:
            headers["Allow"] = ALLOWED_METHODS.get(req.endpoint.path, "GET")
        elif status == 429:
            headers["Retry-After"] = str(error.extra.get("retry_after", 1))
        elif status == 503:
            headers["Retry-After"] = "30"
        # Oracle documents the list's errors with the list's root, AllGroupResponse.
        body: OaaGroupResponse | OaaAllGroupResponse
        if req.endpoint.response is OaaAllGroupResponse:
            body = OaaAllGroupResponse(status=str(status), message=message)
        else:
            body = OaaGroupResponse(status=str(status), message=message)
        return render(body, _error_format(req), status, headers=headers)

    def render_internal_error(self, req: ApiRequest) -> Response:
        body = OaaGroupResponse(
            status="500",
            message=f"Internal server error: it has been logged with request id {req.request_id}",
        )
        return render(body, _error_format(req), 500)


OAA = OaaSurface()
