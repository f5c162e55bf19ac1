"""AppViewX's face: ``sessionId`` or ``token`` headers, ``gwsource``/``gwkey`` query
parameters, and the ``{response, message, appStatusCode, tags, headers}`` envelope.

``answer_for`` is the one place where domain errors become AppViewX answers: an HTTP
status, an ``appStatusCode`` and a message. Where AppViewX documents a code for a case,
its code and its exact message are used and groupd's own explanation goes in ``tags``;
cases AppViewX does not document get a ``GROUPD_*`` code (see docs/compat/appviewx.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response

from groupd.api import wire
from groupd.api.appviewx.schemas import Envelope, LoginResult
from groupd.api.http import ApiRequest, json_response
from groupd.errors import (
    AccountLocked,
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
from groupd.services import accounts
from groupd.services.accounts import AccountView

LOGIN_PATH = "/avxapi/login"
SERVICE_TOKEN_PATH = "/avxapi/acctmgmt-get-service-token"
# What a gwsource may be: AppViewX names "web", "external", "API"; any short token is
# recorded as given. It lands in the audit trail, so nothing else gets in.
GWSOURCE = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    app_status_code: str
    message: str | None  # None: the error's own detail


@dataclass(frozen=True, slots=True)
class Rule:
    error: type[GroupdError]
    answer: Answer
    code: str | None = None  # the error's code, or any
    path: str | None = None  # the endpoint's path, or any


def _mandatory(name: str) -> Answer:
    return Answer(400, "MANDATORY_FIELD_MISSING", f"Mandatory field is missing or invalid - {name}")


INVALID_CREDENTIALS = Answer(
    401, "AVX_GW_003", "Authentication failed, reason - Invalid Credentials."
)
LOGIN_FAILED = Answer(401, "AVX_GW_003", "Login failed. Invalid credentials")
NO_ACCESS = Answer(403, "AVX_GW_005", "User does not have access to the targeted API")
GROUP_NAME_MISSING = Answer(
    400, "ACCT_USERGROUP_001", "Mandatory field 'userGroupName' is missing or empty."
)
GROUP_NOT_FOUND = Answer(404, "ACCT_USERGROUP_030", "UserGroup doesnot exist.")
NO_RECORDS = Answer(404, "NO_RECORDS_FOUND", "No matching records found.")
GROUP_EXISTS = Answer(409, "RBAC_US_023", "Usergroup already exists.")
ADMIN_GROUP = Answer(405, "RBAC_US_015", "Admin usergroup cannot be deleted")
ACTIVE_USERS = Answer(
    400, "RBAC_US_019", "Usergroup(s) which have active user(s) cannot be deleted"
)
INTERNAL = Answer(
    500,
    "GROUPD_INTERNAL_ERROR",
    "An unexpected error occurred; it has been logged with the request id.",
)

# Most specific first: the first match wins.
RULES: tuple[Rule, ...] = (
    Rule(PayloadTooLarge, Answer(413, "GROUPD_PAYLOAD_TOO_LARGE", None)),
    Rule(UnsupportedMediaType, Answer(415, "GROUPD_UNSUPPORTED_MEDIA_TYPE", None)),
    Rule(NotAcceptable, Answer(406, "GROUPD_NOT_ACCEPTABLE", None)),
    Rule(InvalidInput, _mandatory("gwsource"), code="gwsource_missing"),
    Rule(
        InvalidInput,
        Answer(400, "MANDATORY_FIELD_MISSING", "Username or password cannot be null or empty"),
        code="login_credentials_missing",
    ),
    Rule(InvalidInput, Answer(400, "ACCT_SA_001", None), code="client_credentials_invalid"),
    Rule(InvalidInput, GROUP_NAME_MISSING, code="usergroup_name_missing"),
    Rule(
        InvalidInput,
        Answer(400, "ACCT_US_015", "Mandatory Field 'loginName' is missing or empty"),
        code="login_name_missing",
    ),
    Rule(InvalidInput, Answer(400, "INVALID_REQUEST", None)),
    Rule(NotFound, GROUP_NOT_FOUND, code="usergroup_not_found"),
    Rule(NotFound, NO_RECORDS, code="no_matching_records"),
    Rule(NotFound, Answer(404, "GROUPD_USER_NOT_FOUND", None), code="user_not_found"),
    Rule(NotFound, Answer(404, "GROUPD_NOT_FOUND", None)),
    Rule(DeleteRefused, ADMIN_GROUP, code="protected_group"),
    Rule(DeleteRefused, ACTIVE_USERS, code="active_members"),
    Rule(DeleteRefused, Answer(400, "GROUPD_DELETE_REFUSED", None)),
    Rule(Conflict, GROUP_EXISTS, code="name_taken"),
    Rule(Conflict, Answer(409, "GROUPD_CONFLICT", None)),
    Rule(PreconditionFailed, Answer(412, "GROUPD_PRECONDITION_FAILED", None)),
    # A locked account says so (with Retry-After) on every path: it is not a bad password.
    Rule(AccountLocked, Answer(401, "GROUPD_ACCOUNT_LOCKED", None)),
    Rule(AuthenticationFailed, LOGIN_FAILED, path=LOGIN_PATH),
    # AppViewX answers wrong client credentials with 400, not 401 (its 2026 API guide).
    Rule(
        AuthenticationFailed,
        Answer(400, "OAUTH_CLNT_015", "Client Password is incorrect::[Invalid Client credential]"),
        path=SERVICE_TOKEN_PATH,
    ),
    Rule(AuthenticationFailed, INVALID_CREDENTIALS),
    Rule(PermissionDenied, NO_ACCESS),
    Rule(RateLimited, Answer(429, "GROUPD_RATE_LIMITED", None)),
    Rule(
        Unavailable,
        Answer(503, "GROUPD_TIME_BUDGET_EXCEEDED", None),
        code="time_budget_exceeded",
    ),
    Rule(Unavailable, Answer(503, "GROUPD_MAINTENANCE", None)),
)
FALLBACK = Answer(400, "INVALID_REQUEST", None)


def answer_for(error: GroupdError, *, path: str) -> Answer:
    """The AppViewX status, ``appStatusCode`` and message for a domain error."""
    for rule in RULES:
        if (
            isinstance(error, rule.error)
            and (rule.code is None or rule.code == error.code)
            and (rule.path is None or rule.path == path)
        ):
            return rule.answer
    return FALLBACK


def envelope(
    response: object = None,
    message: str | None = None,
    *,
    status: int = 200,
    app_status_code: str | None = None,
    tags: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = Envelope(response=response, message=message, app_status_code=app_status_code, tags=tags)
    return json_response(body, status, headers=headers)


def source_of(req: ApiRequest) -> str:
    """The mandatory ``gwsource``; it becomes the source of every audit event."""
    value = req.query_str("gwsource")
    if not value:
        raise InvalidInput(
            "the query parameter gwsource is required (e.g. gwsource=external)",
            code="gwsource_missing",
            field="gwsource",
        )
    if not GWSOURCE.fullmatch(value):
        raise InvalidInput(
            "gwsource must be 1 to 64 letters, digits or '_.:-' (e.g. web, external)",
            code="gwsource_missing",
            field="gwsource",
        )
    req.actor_source = value
    return value


def check_gwkey(req: ApiRequest, account: AccountView) -> None:
    """``gwkey``, when given, names the tenant the call is for; the credentials must be
    that tenant's. An unknown tenant and another tenant answer alike."""
    gwkey = req.query_str("gwkey")
    if not gwkey:
        return
    try:
        tenant_id = accounts.get_tenant(req.uow, name=gwkey).id
    except NotFound:
        tenant_id = None
    if tenant_id != account.tenant_id:
        raise AuthenticationFailed(
            f"the credentials do not belong to the tenant named by gwkey '{gwkey}'",
            code="gwkey_mismatch",
        )


class AppViewXSurface:
    name = "appviewx"
    # For the OpenAPI document: errors are the same envelope as answers; the vendor refuses
    # deleting the Admin group with 405 and a taken name with 409.
    openapi_error_content: dict[str, Any] = {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["response", "message", "appStatusCode", "tags", "headers"],
                "properties": {
                    "response": {},
                    "message": {"type": ["string", "null"]},
                    "appStatusCode": {"type": ["string", "null"]},
                    "tags": {"type": ["object", "null"]},
                    "headers": {"type": ["object", "null"]},
                },
            }
        }
    }
    openapi_extra_statuses: tuple[int, ...] = (405, 409)

    def authenticate(self, req: ApiRequest) -> AccountView:
        source_of(req)
        session = (req.headers.get("sessionid") or "").strip()
        token = (req.headers.get("token") or "").strip()
        if session:
            account = accounts.resolve_token(
                req.uow, secret=session, kinds=("session",), now=req.now
            )
        elif token:
            account = accounts.resolve_token(req.uow, secret=token, kinds=("service",), now=req.now)
        else:
            raise AuthenticationFailed("a sessionId or token header is required")
        check_gwkey(req, account)
        return account

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        answer = answer_for(error, path=req.endpoint.path)
        message = answer.message or error.detail
        tags: dict[str, object] = {"detail": error.detail, "requestId": req.request_id}
        tags.update(
            (key, value)
            for key, value in wire.error_extra(error.extra).items()
            if key not in ("retry_after", "attempts_left")
        )
        headers: dict[str, str] = {}
        retry_after = error.extra.get("retry_after")
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        if isinstance(error, Unavailable):
            headers["Retry-After"] = "30"
        response = None
        if req.endpoint.path == LOGIN_PATH:
            # A failed login answers in the login's own shape, with the attempts left.
            response = LoginResult(
                status="FAILURE",
                app_status_code=answer.app_status_code,
                status_description=message,
                available_login_attempt_count=error.extra.get("attempts_left"),
            )
        return envelope(
            response,
            message,
            status=answer.status,
            app_status_code=answer.app_status_code,
            tags=tags,
            headers=headers,
        )

    def render_internal_error(self, req: ApiRequest) -> Response:
        return envelope(
            None,
            INTERNAL.message,
            status=INTERNAL.status,
            app_status_code=INTERNAL.app_status_code,
            tags={"requestId": req.request_id},
        )


APPVIEWX = AppViewXSurface()
