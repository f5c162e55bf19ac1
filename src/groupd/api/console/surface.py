"""The console's face: a session cookie, CSRF tokens, HTML pages and one error mapping.

A person signs in with the native API's accounts (the same password check, and so the
same lock-out, as every other login path); the console then keeps a login session
(``accounts.log_in``) in an HttpOnly, SameSite=Strict cookie. Every state-changing
request carries a CSRF token derived from that session's secret (docs/decisions/0041).
This module is the one place where domain errors become console answers.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response

from groupd.api.http import ApiRequest
from groupd.api.native.surface import status_of
from groupd.errors import (
    AuthenticationFailed,
    DeleteRefused,
    GroupdError,
    PermissionDenied,
    RestoreConflict,
    Unavailable,
)
from groupd.services import accounts
from groupd.services.common import ROLE_RANK
from groupd.settings import Settings

SESSION_COOKIE = "groupd_console"
LOGIN_COOKIE = "groupd_console_login"  # the sign-in form's CSRF token (no session yet)
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
SIGN_IN = "/console/sign-in"
# No inline script or style, nothing from elsewhere, no framing, forms post only here.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

templates = Environment(
    loader=PackageLoader("groupd.api.console", "templates"),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def session_secret(req: ApiRequest) -> str:
    return req.request.cookies.get(SESSION_COOKIE, "")


def csrf_token(secret: str) -> str:
    """The CSRF token of a session: a hash of its secret under another name, so a page
    can carry it while the secret itself stays in the HttpOnly cookie."""
    return hashlib.sha256(f"groupd-console-csrf\x00{secret}".encode()).hexdigest()


def form_of(req: ApiRequest) -> dict[str, str]:
    """The posted form; an empty body is an empty form (any other media type is 415)."""
    if not req.body:
        return {}
    return req.form()


def sent_csrf(req: ApiRequest) -> str:
    header = req.headers.get(CSRF_HEADER)
    if header:
        return header
    media = req.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        return req.form().get(CSRF_FIELD, "")
    return ""


def check_csrf(req: ApiRequest, expected: str) -> None:
    sent = sent_csrf(req)
    if not expected or not sent or not hmac.compare_digest(sent, expected):
        raise PermissionDenied(
            "the form's security token is missing or does not match this session; "
            "reload the page and try again",
            code="csrf_failed",
        )


def is_tls(req: ApiRequest, settings: Settings) -> bool:
    """Whether the person's browser reached us over TLS: directly, or through a trusted
    proxy that says so in ``X-Forwarded-Proto``."""
    if req.request.url.scheme == "https":
        return True
    trusted = {ip.strip() for ip in settings.trusted_proxy_ips.split(",") if ip.strip()}
    if "*" in trusted or req.client_ip in trusted:
        forwarded = req.headers.get("x-forwarded-proto", "")
        return forwarded.split(",")[0].strip().lower() == "https"
    return False


def set_cookie(
    response: Response, req: ApiRequest, name: str, value: str, *, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/console",
        secure=is_tls(req, req.ctx.settings),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, req: ApiRequest, name: str) -> None:
    set_cookie(response, req, name, "", max_age=0)


def new_login_token() -> str:
    return secrets.token_urlsafe(32)


def with_headers(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def html(body: str, status: int = 200) -> Response:
    return with_headers(HTMLResponse(body, status_code=status))


def redirect(location: str) -> Response:
    return with_headers(RedirectResponse(location, status_code=303))


def render(req: ApiRequest | None, template: str, status: int = 200, **values: Any) -> Response:
    """A page of the console, with the signed-in person (if any) and their CSRF token."""
    account = req.account if req is not None else None
    values.setdefault("me", account)
    values.setdefault("can_write", account is not None and ROLE_RANK[account.role] >= 1)
    values.setdefault("is_admin", account is not None and account.role == "admin")
    values.setdefault("csrf", csrf_token(session_secret(req)) if account and req else "")
    values.setdefault("path", req.request.url.path if req is not None else "")
    return html(templates.get_template(template).render(**values), status)


class ConsoleSurface:
    name = "console"

    def authenticate(self, req: ApiRequest) -> accounts.AccountView:
        secret = session_secret(req)
        if not secret:
            raise AuthenticationFailed("sign in to use the console")
        account = accounts.resolve_token(req.uow, secret=secret, kinds=("session",), now=req.now)
        req.actor_source = "console"  # the audit trail says where a change was made
        if req.endpoint.method not in ("GET", "HEAD"):
            check_csrf(req, csrf_token(secret))
        return account

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response:
        status, title = status_of(error)
        if isinstance(error, AuthenticationFailed) and req.endpoint.method == "GET":
            # A page asked for without a live session: the sign-in form in its place
            # (401), which comes back to this page.
            target = req.request.url.path
            if req.request.url.query:
                target += f"?{req.request.url.query}"
            token = new_login_token()
            response = render(
                None,
                "sign_in.html",
                status,
                login_token=token,
                next=target,
                message=error.detail,
                username="",
                code=status,
                notice="",
            )
            set_cookie(response, req, LOGIN_COOKIE, token, max_age=3600)
            clear_cookie(response, req, SESSION_COOKIE)
            return response
        if isinstance(error, RestoreConflict) and req.account is not None:
            # A refused restore: every conflict, and the form again with what was sent,
            # so that a new parent or name can be given.
            sent = form_of(req)
            return render(
                req,
                "bin_refused.html",
                status,
                code=status,
                error=error,
                conflicts=error.extra.get("conflicts", []),
                entry_id=req.path_params.get("id", ""),
                parent_id=sent.get("parent_id", ""),
                name=sent.get("name", ""),
            )
        blockers = error.extra.get("blockers", []) if isinstance(error, DeleteRefused) else []
        response = render(
            req if req.account is not None else None,
            "error.html",
            status,
            title=title,
            code=status,
            error=error,
            blockers=blockers,
            request_id=req.request_id,
        )
        retry_after = error.extra.get("retry_after")
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        if isinstance(error, Unavailable):
            response.headers["Retry-After"] = "30"
        return response

    def render_internal_error(self, req: ApiRequest) -> Response:
        return html(
            templates.get_template("error.html").render(
                me=None,
                can_write=False,
                is_admin=False,
                csrf="",
                path="",
                title="Internal server error",
                code=500,
                error=None,
                blockers=[],
                request_id=req.request_id,
            ),
            500,
        )


CONSOLE = ConsoleSurface()
