"""Logging in with a password: the check every login path shares, and the throttle.

Every password login (the native token grant and HTTP Basic, ESET's token endpoint,
AppViewX's login) calls ``check_password``. Failures count on the account row, so the
lock-out is shared by every path. A failure is recorded in a short unit of work of its
own (``UnitOfWork.run_apart``): it stays counted although the login is then refused and
the request's own unit rolls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from groupd.errors import AccountLocked, AuthenticationFailed
from groupd.services import accounts
from groupd.services.accounts import AccountView
from groupd.store.db import UnitOfWork
from groupd.store.models import Account


@dataclass(frozen=True, slots=True)
class LoginPolicy:
    """How many failures in a row lock an account, and for how long."""

    max_failures: int
    lockout_seconds: int


@dataclass(frozen=True, slots=True)
class PasswordCheck:
    """What reading the account and running argon2 found, before anything is written."""

    account_id: int | None
    account: AccountView | None
    verified: bool
    error: AuthenticationFailed | None
    needs_reset: bool


def check_password(
    uow: UnitOfWork, *, username: str, password: str, now: datetime, policy: LoginPolicy
) -> AccountView:
    """The account whose password this is, or a refusal: AuthenticationFailed, or
    AccountLocked after ``policy.max_failures`` failures in a row (``extra`` carries
    ``attempts_left``).

    A success clears the failure count in the caller's unit of work; a failure is counted
    in a short unit of its own, kept whatever the caller's unit does next.
    """
    if not username or not password:
        raise AuthenticationFailed("a username and a password are required")
    check = _verify_password(uow, username=username, password=password, now=now)
    if check.verified:
        assert check.account is not None
        if check.needs_reset:
            uow.session.execute(
                update(Account)
                .where(Account.id == check.account_id)
                .values(failed_logins=0, locked_until=None)
            )
        return check.account
    if check.error is not None or check.account_id is None:
        assert check.error is not None
        left = 0 if isinstance(check.error, AccountLocked) else policy.max_failures
        check.error.extra["attempts_left"] = left
        raise check.error
    account_id = check.account_id
    error, left = uow.run_apart(
        lambda own: _count_failure(own, account_id=account_id, now=now, policy=policy)
    )
    error.extra["attempts_left"] = left
    raise error


def _count_failure(
    uow: UnitOfWork, *, account_id: int, now: datetime, policy: LoginPolicy
) -> tuple[AuthenticationFailed, int]:
    """Add one failure with an atomic UPDATE, and lock the account at the limit. The
    refusal to raise and the attempts left."""
    failures = int(
        uow.session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(failed_logins=Account.failed_logins + 1)
            .returning(Account.failed_logins)
        ).scalar_one()
    )
    if failures >= policy.max_failures:
        seconds = policy.lockout_seconds
        uow.session.execute(
            update(Account)
            .where(Account.id == account_id)
            .values(failed_logins=0, locked_until=now + timedelta(seconds=seconds))
        )
        locked = AccountLocked(
            f"too many failed logins; locked for {seconds} s", retry_after=seconds
        )
        return locked, 0
    left = max(policy.max_failures - failures, 0)
    return AuthenticationFailed("invalid credentials"), left


def _verify_password(
    uow: UnitOfWork, *, username: str, password: str, now: datetime
) -> PasswordCheck:
    """Read the account (no lock) and verify the password (argon2, with no lock held)."""
    account = uow.session.execute(
        select(Account).where(Account.username == username)
    ).scalar_one_or_none()
    if account is None or not account.active:
        accounts.equalise_hash_cost(password)
        return PasswordCheck(None, None, False, AuthenticationFailed("invalid credentials"), False)
    if account.locked_until is not None and account.locked_until > now:
        wait = int((account.locked_until - now).total_seconds()) + 1
        locked = AccountLocked(f"too many failed logins; try again in {wait} s", retry_after=wait)
        return PasswordCheck(account.id, None, False, locked, False)
    if accounts.verify_hash(account.password_hash, password):
        reset = bool(account.failed_logins) or account.locked_until is not None
        return PasswordCheck(account.id, accounts.view_of_account(account), True, None, reset)
    return PasswordCheck(account.id, None, False, None, False)
