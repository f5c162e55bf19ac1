"""Signing in and out of the console."""

from __future__ import annotations

import hmac

from starlette.responses import Response

from groupd.api.auth import password_login
from groupd.api.console.surface import (
    CSRF_FIELD,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_cookie,
    form_of,
    new_login_token,
    redirect,
    render,
    session_secret,
    set_cookie,
)
from groupd.api.http import ApiRequest
from groupd.errors import AccountLocked, AuthenticationFailed
from groupd.services import accounts

HOME = "/console/"


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if value and value.startswith("/console/") and not value.startswith("//"):
        return value
    return HOME


def _form(
    req: ApiRequest, *, status: int = 200, message: str = "", username: str = "", notice: str = ""
) -> Response:
    token = new_login_token()
    response = render(
        None,
        "sign_in.html",
        status,
        login_token=token,
        next=safe_next(req.query_str("next")),
        message=message,
        username=username,
        code=status,
        notice=notice,
    )
    set_cookie(response, req, LOGIN_COOKIE, token, max_age=3600)
    return response


def sign_in_page(req: ApiRequest) -> Response:
    return _form(req)


def sign_in(req: ApiRequest) -> Response:
    form = form_of(req)
    expected = req.request.cookies.get(LOGIN_COOKIE, "")
    sent = form.get(CSRF_FIELD, "")
    username = form.get("username", "").strip()
    if not expected or not hmac.compare_digest(expected, sent):
        return _form(
            req,
            status=403,
            message="The sign-in form expired or came from elsewhere; please try again.",
            username=username,
        )
    try:
        account = password_login(req, username, form.get("password", ""))
    except AccountLocked as error:
        return _form(req, status=429, message=error.detail, username=username)
    except AuthenticationFailed:
        return _form(req, status=401, message="Wrong username or password.", username=username)
    settings = req.ctx.settings
    session = accounts.log_in(
        req.uow,
        account=account,
        now=req.now,
        idle_timeout_seconds=settings.console_idle_timeout_seconds,
        max_age_seconds=settings.console_absolute_timeout_seconds,
        request_id=req.request_id,
        source="console",
    )
    response = redirect(safe_next(form.get("next")))
    set_cookie(
        response,
        req,
        SESSION_COOKIE,
        session.secret,
        max_age=settings.console_absolute_timeout_seconds,
    )
    clear_cookie(response, req, LOGIN_COOKIE)
    return response


def sign_out(req: ApiRequest) -> Response:
    """End the session on the server; the sign-in form, saying so."""
    accounts.revoke_token(req.uow, secret=session_secret(req), now=req.now)
    response = _form(req, notice="You are signed out.")
    clear_cookie(response, req, SESSION_COOKIE)
    return response
