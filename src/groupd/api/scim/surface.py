"""SCIM's face: Bearer API tokens, errors as RFC 7644 §3.12 ``Error`` messages.

``answer_for`` is the one place where domain errors become SCIM answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from groupd.api.auth import bearer_account
from groupd.api.http import ApiRequest, json_response
from groupd.errors import (
    AuthenticationFailed,
    Conflict,
    DeleteRefused,
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
from groupd.services.provisioning.errors import InvalidFilter

if TYPE_CHECKING:
    from pydantic import ValidationError
    from scim2_models import SCIMException

SCIM_BASE = "/scim/v2"
SCIM_JSON = "application/scim+json"
ERROR_URN = "urn:ietf:params:scim:api:messages:2.0:Error"
TAKEN = ("login_taken", "name_taken", "uuid_taken")

# Most specific first: the first match wins. (status, scimType of RFC 7644 Table 9)
ANSWERS: tuple[tuple[type[GroupdError], int, str | None], ...] = (
    (PayloadTooLarge, 413, None),
    (UnsupportedMediaType, 415, None),
    (NotAcceptable, 406, None),
    (InvalidFilter, 400, "invalidFilter"),
    (InvalidInput, 400, "invalidValue"),
    (NotFound, 404, None),
    (DeleteRefused, 409, None),
    (Conflict, 409, None),
    (PreconditionFailed, 412, None),
    (AuthenticationFailed, 401, None),
    (PermissionDenied, 403, None),
    (RateLimited, 429, None),
    (Unavailable, 503, None),
)


def answer_for(error: GroupdError) -> tuple[int, str | None]:
    """The HTTP status and the ``scimType`` for a domain error."""
    for kind, status, scim_type in ANSWERS:
        if isinstance(error, kind):
            if isinstance(error, Conflict) and error.code in TAKEN:
                return status, "uniqueness"
            return status, error.extra.get("scim_type", scim_type)
    return 400, "invalidValue"


def scim_error(status: int, detail: str, scim_type: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"schemas": [ERROR_URN], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return body


def library_error(error: SCIMException | ValidationError) -> GroupdError:
    """A ``scim2-models`` refusal of a request as a domain error, its keyword kept."""
    from scim2_models import Error, SCIMException  # the handlers' library (decision 0077)

    if isinstance(error, SCIMException):
        status, scim_type, detail = error.status, error.scim_type or None, error.detail
    else:
        errors = Error.from_validation_errors(error)
        first = errors[0] if errors else Error(status=400, detail=str(error))
        status = int(first.status or 400)
        scim_type = first.scim_type
        detail = "; ".join(e.detail or "" for e in errors) or str(error)
    if status == 404:
        return NotFound(detail)
    if status == 409:
        return Conflict(detail, code="uniqueness")
    if status == 412:
        return PreconditionFailed(detail)
    if scim_type == "invalidFilter":
        return InvalidFilter(detail)
    return InvalidInput(detail, scim_type=scim_type or "invalidValue")


def scim_http_error(path: str, status: int, detail: str, headers: dict[str, str]) -> Response:
    """A path or method under ``/scim/v2`` that no route serves, in SCIM's error form.
    A search across every resource type (``/scim/v2/.search``) is one this server does
    not do: 501, as RFC 7644 §3.12 says for an operation not supported."""
    if path == f"{SCIM_BASE}/.search":
        status, detail = 501, "searching every resource type at once is not supported"
        return json_response(scim_error(status, detail), status, media_type=SCIM_JSON)
    return json_response(
        scim_error(status, f"{detail}: no such SCIM endpoint or method"),
        status,
        headers=headers,
        media_type=SCIM_JSON,
    )


class ScimSurface:
    name = "scim"
    openapi_media_type = SCIM_JSON
    openapi_error_content: dict[str, Any] = {
        SCIM_JSON: {
            "schema": {
                "type": "object",
                "required": ["schemas", "status"],
                "properties": {
                    "schemas": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "string"},
                    "scimType": {"type": "string"},
                    "detail": {"type": "string"},
                },
            }
        }
    }
    openapi_extra_statuses: tuple[int, ...] = (409, 412)

    def authenticate(self, req: ApiRequest) -> AccountView:
        scheme, _, value = req.headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthenticationFailed("a Bearer API token is required")
        return bearer_account(req, value.strip(), kinds=("api",))

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        status, scim_type = answer_for(error)
        headers: dict[str, str] = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="groupd-scim"'
        retry_after = error.extra.get("retry_after")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if status == 503:
            headers["Retry-After"] = "30"
        body = scim_error(status, error.detail, scim_type)
        return json_response(body, status, headers=headers, media_type=SCIM_JSON)

    def render_internal_error(self, req: ApiRequest) -> Response:
        body = scim_error(
            500, f"an unexpected error; it has been logged with request id {req.request_id}"
        )
        return json_response(body, 500, media_type=SCIM_JSON)


SCIM = ScimSurface()
