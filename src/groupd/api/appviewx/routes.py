"""AppViewX's user-group calls under ``/avxapi``: login, service token, add, search,
assign users, delete. Each handler parses the AppViewX request, calls the services the
native API uses, and renders the envelope."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from groupd.api.appviewx import schemas as s
from groupd.api.appviewx.surface import (
    APPVIEWX,
    GWSOURCE,
    LOGIN_PATH,
    SERVICE_TOKEN_PATH,
    check_gwkey,
    envelope,
    source_of,
)
from groupd.api.auth import password_login
from groupd.api.http import ApiRequest, Endpoint, QueryParam, parse_basic
from groupd.api.waiting import wait_for_operation
from groupd.errors import AuthenticationFailed, InvalidInput, NotFound
from groupd.services import accounts, deletion, usergroups
from groupd.store.db import UnitOfWork

ADDED = "Usergroup added successfully"
FOUND = "Matching results found for the given input."
MODIFIED = "Successfully modified user-usergroup association"
DELETED = "UserGroup deleted successfully"
DELETE_ACCEPTED = "UserGroup deletion accepted; it completes in the background"
SORT_COLUMNS = {"name": "name", "_id": "name", "description": "description"}
SORT_ORDERS = {"asc": False, "desc": True}
# In /openapi.json, with the envelope as error body (AppViewXSurface.openapi_error_content).
DOCUMENTED = True


def _header(req: ApiRequest, name: str) -> str:
    """A header as the client wrote it: HTTP carries bytes, Starlette reads them as
    latin-1, clients send UTF-8."""
    raw = req.headers.get(name) or ""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def login(req: ApiRequest) -> Response:
    source_of(req)
    username = _header(req, "username")
    password = _header(req, "password")
    if not username or not password:
        raise InvalidInput(
            "the username and password headers are required", code="login_credentials_missing"
        )
    account = password_login(req, username, password)
    check_gwkey(req, account)
    session = accounts.log_in(
        req.uow,
        account=account,
        now=req.now,
        idle_timeout_seconds=req.ctx.settings.session_idle_timeout_seconds,
        request_id=req.request_id,
        source=req.actor_source,
    )
    return envelope(
        s.LoginResult(
            status="SUCCESS",
            session_id=session.secret,
            available_login_attempt_count=req.ctx.settings.login_max_failures,
        ),
        headers={"Cache-Control": "no-store"},
    )


def _grant_type(req: ApiRequest) -> str:
    media = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return req.form().get("grant_type", "")
    body = req.decode(s.ServiceTokenBody)
    if body.payload is not None and body.payload.grant_type:
        return body.payload.grant_type
    return body.grant_type or ""


def service_token(req: ApiRequest) -> Response:
    source_of(req)
    scheme, _, value = (req.headers.get("authorization") or "").strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        raise InvalidInput(
            "Invalid Request::[Basic clientId:clientSecret credentials are required]",
            code="client_credentials_invalid",
        )
    try:
        client_id, client_secret = parse_basic(value)
    except AuthenticationFailed as error:
        raise InvalidInput(
            f"Invalid Request::[{error.detail}]", code="client_credentials_invalid"
        ) from None
    grant = _grant_type(req)
    if grant.lower() != "client_credentials":
        raise InvalidInput(
            "Invalid Request::[grant_type must be client_credentials]",
            code="client_credentials_invalid",
            field="grant_type",
        )
    account = password_login(req, client_id, client_secret)
    check_gwkey(req, account)
    token = accounts.create_token(
        req.uow,
        account=account,
        kind="service",
        ttl_seconds=req.ctx.settings.access_token_ttl_seconds,
        label="appviewx service token",
        now=req.now,
        request_id=req.request_id,
        source=req.actor_source,
    )
    return envelope(token.secret, headers={"Cache-Control": "no-store"})


def add_user_group(req: ApiRequest) -> Response:
    payload = req.decode(s.UserGroupAddBody).payload or s.UserGroupAdd()
    usergroups.create_user_group(
        req.uow,
        actor=req.actor,
        name=payload.name,
        description=payload.description,
        now=req.now,
    )
    return envelope(ADDED, ADDED, status=201)


def search_user_groups(req: ApiRequest) -> Response:
    payload = req.decode(s.UserGroupSearchBody).payload or s.UserGroupSearch()
    sort_by = SORT_COLUMNS.get(payload.sort_column)
    if sort_by is None:
        raise InvalidInput(
            f"sortColumn must be one of {', '.join(SORT_COLUMNS)}", field="sortColumn"
        )
    descending = SORT_ORDERS.get(payload.sort_order.lower())
    if descending is None:
        raise InvalidInput("sortOrder must be asc or desc", field="sortOrder")
    if not 1 <= payload.start_index <= usergroups.MAX_OFFSET:
        raise InvalidInput(
            f"startIndex counts from 1 up to {usergroups.MAX_OFFSET}", field="startIndex"
        )
    if not 1 <= payload.max_size <= 1000:
        raise InvalidInput("maxSize must be between 1 and 1000", field="maxSize")
    page = usergroups.search_user_groups(
        req.uow,
        actor=req.actor,
        filter_value=payload.filter_value,
        sort_by=sort_by,
        descending=descending,
        offset=payload.start_index - 1,
        limit=payload.max_size,
    )
    if not page.items:
        raise NotFound(
            f"no user group matches (of {page.total}) from record {payload.start_index}",
            code="no_matching_records",
            totalRecords=page.total,
        )
    first = payload.start_index
    result = s.UserGroupSearchResult(
        data=[
            # groupd's user groups have no disabled state: every live one is Active.
            s.UserGroupItem(name=item.name, description=item.description, state="A", id=item.name)
            for item in page.items
        ],
        total_records=page.total,
        obtained_records=len(page.items),
        obtained_record_range=s.RecordRange(start=first, end=first + len(page.items) - 1),
    )
    return envelope(result, FOUND)


def update_user_groups(req: ApiRequest) -> Response:
    payload = req.decode(s.UserGroupAssignmentBody).payload or s.UserGroupAssignment()
    if payload.unassign_user_groups is not None and payload.un_assign_user_groups is not None:
        raise InvalidInput(
            "give unassignUserGroups or unAssignUserGroups, not both", field="unassignUserGroups"
        )
    unassign = payload.unassign_user_groups or payload.un_assign_user_groups or []
    usergroups.update_user_memberships(
        req.uow,
        actor=req.actor,
        login_name=payload.login_name,
        assign=payload.assign_user_groups,
        unassign=unassign,
        now=req.now,
    )
    return envelope(MODIFIED, MODIFIED)


async def delete_user_group(req: ApiRequest) -> Response:
    name = req.query_str("userGroupName")
    actor = req.actor
    ctx = req.ctx

    def phase_one(uow: UnitOfWork) -> deletion.DeletePlan:
        return usergroups.request_user_group_delete(
            uow,
            actor=actor,
            name=name,
            now=ctx.clock(),
            retention_seconds=ctx.settings.retention_seconds,
        )

    plan = await req.transact(phase_one)
    assert plan.operation_uuid is not None
    ctx.worker.notify()
    view = await wait_for_operation(
        ctx,
        actor=actor,
        operation_uuid=plan.operation_uuid,
        budget_seconds=ctx.settings.delete_wait_seconds,
    )
    if view.state == "succeeded":
        return envelope(DELETED, DELETED)
    if view.state == "failed":
        return APPVIEWX.render_internal_error(req)
    # Already gone from every read; the rest runs durably. AppViewX has no such answer,
    # so it borrows HTTP's: 202, with where to follow it.
    location = f"/api/v1/operations/{view.uuid}"
    return envelope(
        {"operationId": str(view.uuid), "state": view.state},
        DELETE_ACCEPTED,
        status=202,
        tags={"operationId": str(view.uuid), "location": location},
        headers={"Location": location},
    )


# A user group's name in the query: visible ASCII, not padded (a ';' or '&' would end it).
NAME_VALUE = "^[!-%'-:<-~]([ -%'-:<-~]*[!-%'-:<-~])?$"
# A header value as clients send one: visible ASCII, not padded.
HEADER_VALUE = "^[!-~]([ -~]*[!-~])?$"
SERVICE_TOKEN_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {"grant_type": {"const": "client_credentials"}},
}
GATEWAY = [
    QueryParam(
        "gwsource",
        required=True,
        description="where the call comes from (web, external, ...); recorded in the audit trail",
        pattern=f"^{GWSOURCE.pattern}$",
    ),
    QueryParam("gwkey", description="the tenant's name; must match the credentials"),
]
CREDENTIALS = [
    QueryParam("sessionId", description="a session from /avxapi/login"),
    QueryParam("token", description="a service token from /avxapi/acctmgmt-get-service-token"),
]


def endpoints() -> list[Endpoint]:
    # Every call may write: a session slides its idle deadline on each use.
    common: dict[str, Any] = {
        "write": True,
        "raw_query": True,
        "document": DOCUMENTED,
        "tags": ["appviewx"],
    }
    return [
        Endpoint(
            "POST",
            LOGIN_PATH,
            login,
            APPVIEWX,
            role=None,
            json_body=False,
            summary="AppViewX: log in (username/password headers) for a sessionId",
            response=s.Envelope,
            query=GATEWAY,
            headers=[
                QueryParam("username", required=True, pattern=HEADER_VALUE),
                QueryParam("password", required=True, pattern=HEADER_VALUE),
            ],
            errors=(400, 401),
            **common,
        ),
        Endpoint(
            "POST",
            SERVICE_TOKEN_PATH,
            service_token,
            APPVIEWX,
            role=None,
            json_body=False,
            summary="AppViewX: a service token for Basic clientId:clientSecret",
            response=s.Envelope,
            query=GATEWAY,
            form=SERVICE_TOKEN_FORM,
            errors=(400, 401),
            **common,
        ),
        Endpoint(
            "POST",
            "/avxapi/usergroup",
            add_user_group,
            APPVIEWX,
            role="editor",
            status=201,
            summary="AppViewX: add a user group",
            body=s.UserGroupAddBody,
            response=s.Envelope,
            query=GATEWAY,
            headers=CREDENTIALS,
            errors=(400, 401, 403, 409),
            **common,
        ),
        Endpoint(
            "POST",
            "/avxapi/usergroup-search",
            search_user_groups,
            APPVIEWX,
            role="viewer",
            summary="AppViewX: search user groups",
            body=s.UserGroupSearchBody,
            response=s.Envelope,
            query=GATEWAY,
            headers=CREDENTIALS,
            **common,
        ),
        Endpoint(
            "PUT",
            "/avxapi/user-updateUsergroups",
            update_user_groups,
            APPVIEWX,
            role="editor",
            summary="AppViewX: assign a user to user groups and unassign it",
            body=s.UserGroupAssignmentBody,
            response=s.Envelope,
            query=GATEWAY,
            headers=CREDENTIALS,
            **common,
        ),
        Endpoint(
            "DELETE",
            "/avxapi/userGroup",
            delete_user_group,
            APPVIEWX,
            role="editor",
            is_async=True,
            json_body=False,
            summary="AppViewX: delete a user group (the Admin group and groups with "
            "active users are refused)",
            response=s.Envelope,
            query=[
                QueryParam("userGroupName", required=True, pattern=NAME_VALUE, max_length=255),
                *GATEWAY,
            ],
            headers=CREDENTIALS,
            errors=(400, 401, 403, 404, 405),
            **common,
        ),
    ]
