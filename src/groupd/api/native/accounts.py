"""Credentials and accounts: token grants, API tokens, account administration."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.auth import password_login
from groupd.api.http import ApiRequest, Endpoint, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.surface import NATIVE
from groupd.errors import InvalidInput
from groupd.services import accounts

GRANTS = ("password", "refresh_token")


def issue_token(req: ApiRequest) -> Response:
    """OAuth-style grants; JSON (camelCase) or form-encoded (snake_case) bodies."""
    media = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        form = req.form()
        grant = s.TokenRequest(
            grant_type=form.get("grant_type", ""),
            username=form.get("username"),
            password=form.get("password"),
            refresh_token=form.get("refresh_token"),
        )
    else:
        grant = req.decode(s.TokenRequest)
    settings = req.ctx.settings
    if grant.grant_type == "password":
        account = password_login(req, grant.username or "", grant.password or "")
        pair = accounts.issue_token_pair(
            req.uow,
            account=account,
            now=req.now,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )
    elif grant.grant_type == "refresh_token":
        pair = accounts.refresh_tokens(
            req.uow,
            refresh_token=grant.refresh_token or "",
            now=req.now,
            access_ttl=settings.access_token_ttl_seconds,
            refresh_ttl=settings.refresh_token_ttl_seconds,
        )
    else:
        raise InvalidInput(f"grantType must be one of {', '.join(GRANTS)}", field="grantType")
    return json_response(
        s.TokenOut(
            access_token=pair.access.secret,
            refresh_token=pair.refresh.secret,
            token_type="Bearer",
            expires_in=pair.access.expires_in,
        ),
        headers={"Cache-Control": "no-store"},
    )


def create_api_token(req: ApiRequest) -> Response:
    body = req.decode(s.ApiTokenCreate)
    settings = req.ctx.settings
    ttl = body.ttl_seconds or settings.api_token_default_ttl_seconds
    if not 60 <= ttl <= 10 * 365 * 86400:
        raise InvalidInput("ttlSeconds must be between 60 and 315360000", field="ttlSeconds")
    assert req.account is not None
    token = accounts.create_token(
        req.uow,
        account=req.account,
        kind="api",
        ttl_seconds=ttl,
        label=body.label,
        now=req.now,
        request_id=req.request_id,
        source=req.actor_source,
    )
    return json_response(
        s.ApiTokenOut(token=token.secret, expires_at=render.ts(token.expires_at)),
        201,
        headers={"Cache-Control": "no-store"},
    )


def revoke_current(req: ApiRequest) -> Response:
    header = req.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidInput("only a bearer token can be revoked this way")
    accounts.revoke_token(req.uow, secret=secret.strip(), now=req.now)
    req.ctx.token_cache.forget(secret.strip())
    return Response(status_code=204)


def create_account(req: ApiRequest) -> Response:
    body = req.decode(s.AccountCreate)
    view = accounts.add_account(
        req.uow,
        actor=req.actor,
        username=body.username,
        role=body.role,
        password=body.password,
        now=req.now,
    )
    return json_response(
        s.AccountOut(id=str(view.uuid), username=view.username, role=view.role, active=view.active),
        201,
    )


def list_accounts(req: ApiRequest) -> Response:
    items = accounts.list_accounts(req.uow, actor=req.actor)
    return json_response(
        s.AccountList(
            items=[
                s.AccountOut(id=str(a.uuid), username=a.username, role=a.role, active=a.active)
                for a in items
            ]
        )
    )


def endpoints() -> list[Endpoint]:
    tags = ["auth"]
    return [
        Endpoint(
            "POST",
            "/api/v1/auth/token",
            issue_token,
            NATIVE,
            role=None,
            write=True,
            summary="Password or refresh-token grant",
            body=s.TokenRequest,
            response=s.TokenOut,
            tags=tags,
            errors=(400, 401, 415),
        ),
        Endpoint(
            "POST",
            "/api/v1/auth/revoke",
            revoke_current,
            NATIVE,
            write=True,
            summary="Revoke the bearer token of this request",
            status=204,
            tags=tags,
            json_body=False,
        ),
        Endpoint(
            "POST",
            "/api/v1/tokens",
            create_api_token,
            NATIVE,
            write=True,
            summary="Create a long-lived API token for the caller",
            body=s.ApiTokenCreate,
            response=s.ApiTokenOut,
            status=201,
            tags=tags,
        ),
        Endpoint(
            "POST",
            "/api/v1/accounts",
            create_account,
            NATIVE,
            role="admin",
            write=True,
            summary="Create an account in the caller's tenant",
            body=s.AccountCreate,
            response=s.AccountOut,
            status=201,
            tags=["accounts"],
            errors=(400, 401, 403, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/accounts",
            list_accounts,
            NATIVE,
            role="admin",
            summary="Accounts of the caller's tenant",
            response=s.AccountList,
            tags=["accounts"],
        ),
    ]
