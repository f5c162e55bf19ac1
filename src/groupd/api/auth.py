"""Credential checks shared by every surface: Bearer tokens, Basic, password grants."""

from __future__ import annotations

from groupd.api.http import ApiRequest, parse_basic
from groupd.errors import AuthenticationFailed
from groupd.services import accounts
from groupd.store.db import UnitOfWork

TOKEN_KINDS = ("access", "api")


def password_login(req: ApiRequest, username: str, password: str) -> accounts.AccountView:
    """Check a password in the request's unit of work, counting failures (lock-out is
    shared by every login path because it lives on the account row)."""
    settings = req.ctx.settings
    if not username or not password:
        raise AuthenticationFailed("a username and a password are required")

    check = accounts.verify_password(req.uow, username=username, password=password, now=req.now)

    def record(uow: UnitOfWork) -> accounts.LoginOutcome:
        return accounts.record_login(
            uow,
            check=check,
            now=req.now,
            max_failures=settings.login_max_failures,
            lockout_seconds=settings.login_lockout_seconds,
        )

    if req.uow.write:
        outcome = record(req.uow)
        if outcome.error is not None:
            # The refusal must not roll back what it counted: keep the failure count.
            req.uow.commit()
    else:
        # A read transaction cannot always become a write one (SQLite refuses once another
        # connection has committed since it began): record in a short transaction of its
        # own, opened only now that argon2 is done.
        with req.ctx.db.unit_of_work() as own:
            outcome = record(own)
            own.commit()
    if outcome.error is not None:
        raise outcome.error
    assert outcome.account is not None
    return outcome.account


def bearer_account(
    req: ApiRequest, secret: str, *, kinds: tuple[str, ...] = TOKEN_KINDS
) -> accounts.AccountView:
    if not secret:
        raise AuthenticationFailed("the bearer token is empty")
    return accounts.resolve_token(
        req.uow, secret=secret, kinds=kinds, now=req.now, cache=req.ctx.token_cache
    )


def basic_account(req: ApiRequest, value: str) -> accounts.AccountView:
    """HTTP Basic: a password, or an API/access token given as the password."""
    username, password = parse_basic(value)
    if password.startswith(tuple(f"{accounts.TOKEN_PREFIX[k]}_" for k in TOKEN_KINDS)):
        account = bearer_account(req, password)
        if account.username != username:
            raise AuthenticationFailed("the token belongs to another account")
        return account
    cache = req.ctx.password_cache
    cached = cache.get(username, password)
    if cached is not None:
        return cached
    account = password_login(req, username, password)
    cache.put(username, password, account)
    return account


def header_account(req: ApiRequest) -> accounts.AccountView:
    """The ``Authorization`` header as the native API reads it: Bearer or Basic."""
    header = req.headers.get("authorization")
    if not header:
        raise AuthenticationFailed("credentials are required (Bearer or Basic)")
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return bearer_account(req, value.strip())
    if scheme == "basic":
        return basic_account(req, value)
    raise AuthenticationFailed(f"the '{scheme}' authorization scheme is not supported")
