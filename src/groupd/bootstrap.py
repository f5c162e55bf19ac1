"""First start: migrate, and on an empty database create tenant ``default`` and an admin."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from groupd.clock import system_clock
from groupd.services import accounts
from groupd.store.db import Database, transaction
from groupd.store.migrate import upgrade

DEFAULT_TENANT = "default"
ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class Bootstrapped:
    username: str
    password: str
    token: str


def prepare_database(db: Database) -> Bootstrapped | None:
    """Bring the schema up to date; seed a fresh installation. Returns the new admin's
    credentials when it seeded (they are shown once and never stored in clear)."""
    upgrade(db.engine)
    now = system_clock()
    with transaction(db) as uow:
        if accounts.list_tenants(uow):
            return None
        tenant = accounts.create_tenant(uow, name=DEFAULT_TENANT, now=now)
        password = secrets.token_urlsafe(18)
        admin = accounts.create_account(
            uow,
            tenant_id=tenant.id,
            username=ADMIN_USERNAME,
            role="admin",
            password=password,
            now=now,
        )
        token = accounts.issue_credential(
            uow, account=admin, kind="api", ttl_seconds=365 * 86400, now=now, label="bootstrap"
        )
    return Bootstrapped(ADMIN_USERNAME, password, token.secret)
