"""Tenants, accounts and credentials: passwords, tokens, sessions and lock-out."""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import IntegrityError

from groupd.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from groupd.services import audit, groups
from groupd.services.common import Actor, new_uuid, system_actor
from groupd.store.db import UnitOfWork
from groupd.store.ids import allocate_ids
from groupd.store.models import ROLES, Account, Credential, Group, Tenant
from groupd.store.prepared import Prepared
from groupd.store.tree import child_path
from groupd.values import clean_name

_hasher = PasswordHasher()
SLIDE_GRANULARITY = 30.0  # seconds
LABEL_MAX = 200
PASSWORD_MIN = 8
PASSWORD_MAX = 1024
TOKEN_PREFIX = {"access": "gda", "refresh": "gdr", "api": "gdk", "session": "gds", "service": "gdt"}


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TenantView:
    id: int
    uuid: uuid.UUID
    name: str


def create_tenant(uow: UnitOfWork, *, name: str, now: datetime) -> TenantView:
    """A tenant with its protected built-ins: root "All", "Lost & found", the "Admin" group.

    Each built-in's creation is in the tenant's audit trail, by the "system" actor.
    """
    name = clean_name(name, field="tenant")
    tenant = Tenant(uuid=uuid.uuid4(), name=name, created_at=now)
    uow.session.add(tenant)
    try:
        with uow.session.begin_nested():
            uow.session.flush()
    except IntegrityError:
        raise Conflict(f"a tenant named '{name}' already exists", code="name_taken") from None
    actor = system_actor(tenant.id)
    root = _create_root(uow, actor=actor, now=now)
    groups.create_group(
        uow,
        actor=actor,
        spec=groups.GroupSpec(
            name=groups.LOST_AND_FOUND_NAME, parent_uuid=root, kind="static", protected=True
        ),
        now=now,
    )
    groups.create_group(
        uow,
        actor=actor,
        spec=groups.GroupSpec(name=groups.ADMIN_GROUP_NAME, kind="user", protected=True),
        now=now,
    )
    return TenantView(tenant.id, tenant.uuid, tenant.name)


def _create_root(uow: UnitOfWork, *, actor: Actor, now: datetime) -> uuid.UUID:
    # The one static group without a parent; created here only, never through the API.
    (group_id,) = allocate_ids(uow, "groups", 1)
    root_uuid = new_uuid()
    uow.session.add(
        Group(
            id=group_id,
            uuid=root_uuid,
            tenant_id=actor.tenant_id,
            parent_id=None,
            path=child_path(None, group_id),
            depth=0,
            kind="static",
            name=groups.ROOT_NAME,
            description="Every device and user of the tenant",
            protected=True,
            state="live",
            version=1,
            created_at=now,
            updated_at=now,
        )
    )
    uow.session.flush()
    audit.record_event(
        uow,
        actor=actor,
        action="group.create",
        target_type="group",
        target_uuid=root_uuid,
        target_name=groups.ROOT_NAME,
        outcome="succeeded",
        now=now,
    )
    return root_uuid


def get_tenant(uow: UnitOfWork, *, name: str) -> TenantView:
    tenant = uow.session.execute(select(Tenant).where(Tenant.name == name)).scalar_one_or_none()
    if tenant is None:
        raise NotFound(f"no tenant '{name}'")
    return TenantView(tenant.id, tenant.uuid, tenant.name)


def list_tenants(uow: UnitOfWork) -> list[TenantView]:
    rows = uow.session.execute(select(Tenant).order_by(Tenant.id)).scalars()
    return [TenantView(t.id, t.uuid, t.name) for t in rows]


def _check_password_rules(password: str) -> None:
    if not (PASSWORD_MIN <= len(password) <= PASSWORD_MAX):
        raise InvalidInput(
            f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters", field="password"
        )


@dataclass(frozen=True, slots=True)
class AccountView:
    id: int
    uuid: uuid.UUID
    tenant_id: int
    username: str
    role: str
    active: bool


def view_of_account(account: Account) -> AccountView:
    """The view of an account row."""
    return AccountView(
        account.id, account.uuid, account.tenant_id, account.username, account.role, account.active
    )


def create_account(
    uow: UnitOfWork, *, tenant_id: int, username: str, role: str, password: str, now: datetime
) -> AccountView:
    """A new principal of the tenant; usernames are unique across the installation."""
    username = clean_name(username, field="username")
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    _check_password_rules(password)
    account = Account(
        uuid=uuid.uuid4(),
        tenant_id=tenant_id,
        username=username,
        password_hash=hash_password(password),
        role=role,
        active=True,
        failed_logins=0,
        created_at=now,
    )
    uow.session.add(account)
    try:
        with uow.session.begin_nested():
            uow.session.flush()
    except IntegrityError:
        raise Conflict(f"the username '{username}' is taken", code="username_taken") from None
    return view_of_account(account)


def add_account(
    uow: UnitOfWork, *, actor: Actor, username: str, role: str, password: str, now: datetime
) -> AccountView:
    """An account created by an admin in the admin's tenant (``create_account``), recorded
    as ``account.create``. Setting up a tenant (CLI, bootstrap) uses ``create_account``."""
    actor.require("admin")
    view = create_account(
        uow, tenant_id=actor.tenant_id, username=username, role=role, password=password, now=now
    )
    _record_account_event(uow, actor=actor, action="account.create", account=view, now=now)
    return view


def _record_account_event(
    uow: UnitOfWork, *, actor: Actor, action: str, account: AccountView, now: datetime
) -> None:
    audit.record_event(
        uow,
        actor=actor,
        action=action,
        target_type="account",
        target_uuid=account.uuid,
        target_name=account.username,
        outcome="succeeded",
        now=now,
    )


def get_account(uow: UnitOfWork, *, username: str) -> AccountView:
    account = uow.session.execute(
        select(Account).where(Account.username == username)
    ).scalar_one_or_none()
    if account is None:
        raise NotFound(f"no account '{username}'")
    return view_of_account(account)


def list_accounts(uow: UnitOfWork, *, actor: Actor) -> list[AccountView]:
    rows = uow.session.execute(
        select(Account).where(Account.tenant_id == actor.tenant_id).order_by(Account.id)
    ).scalars()
    return [view_of_account(a) for a in rows]


@functools.cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash with ``hasher``'s parameters, made at its first use rather than at import:
    every process that imports groupd (each CLI command, each server) would otherwise
    spend a whole argon2 hash on it before doing anything."""
    return hasher.hash("not-a-real-password")


def equalise_hash_cost(password: str) -> None:
    """Spend what checking a password costs: an unknown username costs as much as a
    wrong password, so usernames cannot be probed by timing."""
    verify_hash(_dummy_hash(_hasher), password)


def verify_hash(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches an argon2 ``password_hash``."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True, slots=True)
class IssuedToken:
    secret: str
    kind: str
    expires_at: datetime
    expires_in: int


def issue_credential(
    uow: UnitOfWork,
    *,
    account: AccountView,
    kind: str,
    ttl_seconds: int,
    now: datetime,
    idle_timeout_seconds: int | None = None,
    label: str | None = None,
) -> IssuedToken:
    """A new random secret of ``kind`` for the account; only its hash is stored."""
    if label is not None:
        label = clean_name(label, field="label")
        if len(label) > LABEL_MAX:
            raise InvalidInput(f"label is longer than {LABEL_MAX} characters", field="label")
    secret = f"{TOKEN_PREFIX[kind]}_{secrets.token_urlsafe(32)}"
    expires_at = now + timedelta(seconds=ttl_seconds)
    uow.session.add(
        Credential(
            tenant_id=account.tenant_id,
            account_id=account.id,
            kind=kind,
            token_hash=hash_secret(secret),
            label=label,
            expires_at=expires_at,
            idle_timeout_seconds=idle_timeout_seconds,
            last_used_at=now,
            created_at=now,
        )
    )
    uow.session.flush()
    return IssuedToken(secret, kind, expires_at, ttl_seconds)


def create_token(
    uow: UnitOfWork,
    *,
    account: AccountView,
    kind: str,
    ttl_seconds: int,
    label: str | None,
    now: datetime,
    request_id: str,
    source: str | None,
) -> IssuedToken:
    """A token an account asks for itself (an API token, a service token), recorded as
    ``token.create`` with the request's id and source: the account is actor and target.

    Grants (access and refresh tokens) and sessions use ``issue_credential`` and
    ``open_session``, which record nothing; the CLI and tests use them too.
    """
    token = issue_credential(
        uow, account=account, kind=kind, ttl_seconds=ttl_seconds, now=now, label=label
    )
    actor = account_actor(account, request_id=request_id, source=source)
    _record_account_event(uow, actor=actor, action="token.create", account=account, now=now)
    return token


SESSION_MAX_AGE_SECONDS = 24 * 3600


def open_session(
    uow: UnitOfWork,
    *,
    account: AccountView,
    now: datetime,
    idle_timeout_seconds: int,
    max_age_seconds: int = SESSION_MAX_AGE_SECONDS,
) -> IssuedToken:
    """A login session: it ends after ``idle_timeout_seconds`` without use (each use
    moves that deadline), and in any case ``max_age_seconds`` after the login."""
    return issue_credential(
        uow,
        account=account,
        kind="session",
        ttl_seconds=max_age_seconds,
        now=now,
        idle_timeout_seconds=idle_timeout_seconds,
    )


def log_in(
    uow: UnitOfWork,
    *,
    account: AccountView,
    now: datetime,
    idle_timeout_seconds: int,
    request_id: str,
    source: str | None,
    max_age_seconds: int = SESSION_MAX_AGE_SECONDS,
) -> IssuedToken:
    """A login session (``open_session``) for an account whose password was just checked,
    recorded as ``session.create`` with the request's id and source."""
    session = open_session(
        uow,
        account=account,
        now=now,
        idle_timeout_seconds=idle_timeout_seconds,
        max_age_seconds=max_age_seconds,
    )
    actor = account_actor(account, request_id=request_id, source=source)
    _record_account_event(uow, actor=actor, action="session.create", account=account, now=now)
    return session


@dataclass(frozen=True, slots=True)
class TokenPair:
    access: IssuedToken
    refresh: IssuedToken


def issue_token_pair(
    uow: UnitOfWork, *, account: AccountView, now: datetime, access_ttl: int, refresh_ttl: int
) -> TokenPair:
    return TokenPair(
        issue_credential(uow, account=account, kind="access", ttl_seconds=access_ttl, now=now),
        issue_credential(uow, account=account, kind="refresh", ttl_seconds=refresh_ttl, now=now),
    )


def refresh_tokens(
    uow: UnitOfWork, *, refresh_token: str, now: datetime, access_ttl: int, refresh_ttl: int
) -> TokenPair:
    """Trade a refresh token for a new pair; the old refresh token is spent (rotation)."""
    credential = uow.session.execute(
        select(Credential)
        .where(Credential.token_hash == hash_secret(refresh_token), Credential.kind == "refresh")
        .with_for_update()
    ).scalar_one_or_none()
    if credential is None or credential.revoked_at is not None or credential.expires_at <= now:
        raise AuthenticationFailed("the refresh token is invalid or expired")
    account = uow.session.get(Account, credential.account_id)
    if account is None or not account.active:
        raise AuthenticationFailed("the account is disabled")
    credential.revoked_at = now
    return issue_token_pair(
        uow,
        account=view_of_account(account),
        now=now,
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
    )


_TOKEN_LOOKUP = Prepared(
    select(
        Credential.id,
        Credential.kind,
        Credential.revoked_at,
        Credential.expires_at,
        Credential.idle_timeout_seconds,
        Credential.last_used_at,
        Account.id,
        Account.uuid,
        Account.tenant_id,
        Account.username,
        Account.role,
        Account.active,
    )
    .join(Account, Account.id == Credential.account_id)
    .where(Credential.token_hash == bindparam("token_hash"))
)


def resolve_token(
    uow: UnitOfWork,
    *,
    secret: str,
    kinds: tuple[str, ...],
    now: datetime,
    cache: VerifiedTokenCache | None = None,
) -> AccountView:
    """The account behind a bearer secret of one of ``kinds``, or AuthenticationFailed.

    Sessions slide: each use moves their idle deadline. With a ``cache``, a token it
    verified less than its ``ttl`` ago is trusted without reading its row again.
    """
    digest = hash_secret(secret)
    if cache is not None:
        cached = cache.get(digest, kinds=kinds, now=now)
        if cached is not None:
            return cached
    # Runs on every request: a prepared statement on the raw connection (SQLAlchemy's
    # per-statement machinery is most of a request's cost:
    # docs/decisions/0003-prepared-statements.md).
    row = _TOKEN_LOOKUP.one_or_none(uow, {"token_hash": digest})
    if row is None:
        raise AuthenticationFailed("the token is not valid")
    (
        credential_id,
        kind,
        revoked_at,
        expires_at,
        idle_timeout,
        last_used_at,
        account_id,
        account_uuid,
        tenant_id,
        username,
        role,
        active,
    ) = row
    if kind not in kinds:
        raise AuthenticationFailed("this kind of token is not accepted here")
    if revoked_at is not None:
        raise AuthenticationFailed("the token was revoked")
    if expires_at <= now:
        raise AuthenticationFailed("the token has expired")
    if idle_timeout is not None:
        if last_used_at + timedelta(seconds=idle_timeout) <= now:
            raise AuthenticationFailed("the session has expired")
        # Slide the idle deadline, but write at most once per SLIDE_GRANULARITY of use:
        # a session in steady use would otherwise cost a write on every request.
        if now - last_used_at >= timedelta(seconds=min(SLIDE_GRANULARITY, idle_timeout / 10)):
            uow.session.execute(
                update(Credential).where(Credential.id == credential_id).values(last_used_at=now)
            )
    if not active:
        raise AuthenticationFailed("the account is disabled")
    account = AccountView(account_id, account_uuid, tenant_id, username, role, active)
    if cache is not None and idle_timeout is None:  # a session must slide: never cached
        cache.put(digest, kind=kind, account=account, expires_at=expires_at, now=now)
    return account


def revoke_token(uow: UnitOfWork, *, secret: str, now: datetime) -> None:
    uow.session.execute(
        update(Credential)
        .where(Credential.token_hash == hash_secret(secret), Credential.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def account_actor(
    account: AccountView, *, request_id: str = "", source: str | None = None
) -> Actor:
    return Actor(
        tenant_id=account.tenant_id,
        account_id=account.id,
        username=account.username,
        role=account.role,
        request_id=request_id,
        source=source,
    )


@dataclass(frozen=True, slots=True)
class _VerifiedToken:
    kind: str
    account: AccountView
    trusted_until: datetime


class VerifiedTokenCache:
    """Bearer tokens verified less than ``ttl`` seconds ago, by the SHA-256 the database
    keys them by, so that a client's burst of requests reads the token's row once.

    The price is a bound, not a hole: a revoked or expired token, or a disabled account,
    keeps working for at most ``ttl`` in each process (decision 0071); a revocation made
    through this process (``forget``) takes effect in it at once. Times come from the
    caller (the request's clock), so tests move them with an injected clock.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = timedelta(seconds=ttl_seconds)
        self._entries: dict[str, _VerifiedToken] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, *, kinds: tuple[str, ...], now: datetime) -> AccountView | None:
        entry = self._entries.get(digest)
        if entry is None or entry.kind not in kinds or now >= entry.trusted_until:
            return None
        return entry.account

    def put(
        self, digest: str, *, kind: str, account: AccountView, expires_at: datetime, now: datetime
    ) -> None:
        if not self.ttl:
            return
        entry = _VerifiedToken(kind, account, min(now + self.ttl, expires_at))
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries.clear()
            self._entries[digest] = entry

    def forget(self, secret: str) -> None:
        """Stop trusting ``secret`` here at once (it was revoked through this process)."""
        with self._lock:
            self._entries.pop(hash_secret(secret), None)


class VerifiedPasswordCache:
    """Remembers recently verified Basic credentials (by hash) so that argon2, which is
    slow on purpose, runs once per client per ``ttl`` instead of on every request."""

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: dict[str, tuple[float, AccountView]] = {}
        self._lock = threading.Lock()

    def get(self, username: str, password: str) -> AccountView | None:
        if self.ttl <= 0:
            return None
        key = hash_secret(f"{username}\x00{password}")
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, username: str, password: str, account: AccountView) -> None:
        if self.ttl <= 0:
            return
        key = hash_secret(f"{username}\x00{password}")
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl, account)
