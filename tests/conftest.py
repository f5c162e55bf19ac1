"""Fixtures: every database test runs on SQLite and on PostgreSQL, isolated per test."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text
from starlette.testclient import TestClient

from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import ManualClock, system_clock
from groupd.services import accounts
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.store.migrate import upgrade
from groupd.store.models import Group
from groupd.store.queue import copy_database
from invariants import assert_invariants

pytest_plugins = ["browser"]

PG_ADMIN_URL = os.environ.get(
    "GROUPD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("GROUPD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRE_SERVICES = os.environ.get("GROUPD_TEST_REQUIRE_SERVICES") == "1"
TABLES = (
    "webhook_deliveries",
    "webhook_subscriptions",
    "outbox_events",
    "audit_events",
    "bin_entries",
    "memberships",
    "user_counts",
    "activations",
    "objects",
    "operations",
    "groups",
    "credentials",
    "licences",
    "accounts",
    "system_flags",
    "tenants",
)
# What "nothing changed" compares: every table but the outbox, a queue that the webhook
# relay drains in the background (an event is written with its audit event, which counts).
SNAPSHOT_TABLES = tuple(table for table in TABLES if table != "outbox_events")
PASSWORD = "correct horse battery"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow scenarios first, in pairs, then the rest in file order. ``make test`` hands
    each worker two tests at a time (``--maxschedchunk 2``), so a pair runs on one worker:
    a slow test with a short one, so that the long tests start at once on different
    workers, side by side; or two slow tests that share a module-scoped fixture (the
    two-process cluster), so that it is built once. The short tests then fill the workers
    as they free up, instead of a long test starting last and running alone."""
    slow = [item for item in items if item.get_closest_marker("slow")]
    rest = [item for item in items if not item.get_closest_marker("slow")]
    ordered: list[pytest.Item] = []
    while slow:
        item = slow.pop(0)
        partner = slow[0] if slow and _share_a_module_fixture(item, slow[0]) else None
        if partner is not None:
            ordered += [item, slow.pop(0)]
        else:
            ordered += [item, *rest[:1]]
            del rest[:1]
    items[:] = ordered + rest


def _share_a_module_fixture(first: pytest.Item, second: pytest.Item) -> bool:
    if first.path != second.path:
        return False
    definitions = getattr(first, "_fixtureinfo", None)
    if definitions is None:
        return False
    return any(
        defs[-1].scope == "module"
        for name, defs in definitions.name2fixturedefs.items()
        if name in getattr(second, "fixturenames", ())
    )


def _service_missing(what: str, error: Exception) -> None:
    message = f"{what} is not reachable ({error.__class__.__name__}: {error})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message}; GROUPD_TEST_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(f"{message}; start it to run these tests")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    database = Database(create_engine_for(f"sqlite:///{path}"))
    upgrade(database.engine)
    database.dispose()
    return path


def create_engine_for(url: str) -> Any:
    from groupd.store.db import create_db_engine

    return create_db_engine(url, pool_size=5)


def create_pg_database(name: str) -> str:
    """A new, empty PostgreSQL database (replacing one left by a killed run); its URL.
    Skips the test, or fails it under GROUPD_TEST_REQUIRE_SERVICES, without PostgreSQL."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
            # A test database is thrown away: its commits need not wait for the disk
            # (2.5 ms each on this machine's disk under load, against 0.5 ms). A crash of
            # PostgreSQL itself is not what any test is about; groupd's are (SIGKILL).
            connection.execute(text(f'ALTER DATABASE "{name}" SET synchronous_commit = off'))
        admin.dispose()
    except Exception as error:  # any connection failure means "not available here"
        _service_missing("PostgreSQL at 127.0.0.1:5432", error)
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_pg_database(name: str) -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    name = f"groupd_test_{os.getpid()}"
    url = create_pg_database(name)
    database = Database(create_engine_for(url))
    upgrade(database.engine)
    database.dispose()
    yield url
    drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "groupd.db"
        copy_database(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        empty_pg_tables(connection)
    engine.dispose()
    return url


def empty_pg_tables(connection: Any) -> None:
    """Every table emptied and every sequence restarted, as ``TRUNCATE ... RESTART
    IDENTITY`` would, at a ninth of its cost on tables this small (8 ms against 77 ms: a
    TRUNCATE makes new files for each table and index). Foreign keys are not checked
    while the rows go (the replica role; the test databases are the superuser's)."""
    connection.execute(text("SET LOCAL session_replication_role = replica"))
    tables = connection.execute(
        text(
            "SELECT tablename FROM pg_tables"
            " WHERE schemaname = current_schema() AND tablename <> 'alembic_version'"
        )
    ).scalars()
    for table in list(tables):  # every table of groupd's, whether TABLES names it or not
        connection.execute(text(f'DELETE FROM "{table}"'))
    sequences = connection.execute(
        text("SELECT sequence_name FROM information_schema.sequences")
    ).scalars()
    for sequence in sequences:
        connection.execute(text(f'ALTER SEQUENCE "{sequence}" RESTART'))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "rate_limit_enabled": False,
        "delete_wait_seconds": 5.0,
        "worker_poll_seconds": 0.05,
        "maintenance_cache_seconds": 0.0,
        # Deletes purge at once unless a test is about the recycle bin (tests/test_bin*.py).
        "retention_seconds": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
def db(settings: Settings) -> Iterator[Database]:
    database = Database.from_settings(settings)
    yield database
    database.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@dataclass
class Caller:
    """One account with its credentials, ready to put on requests."""

    username: str
    role: str
    token: str
    tenant: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def basic(self) -> dict[str, str]:
        raw = base64.b64encode(f"{self.username}:{PASSWORD}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}


@dataclass
class TenantFixture:
    name: str
    id: int
    admin: Caller
    editor: Caller
    viewer: Caller
    root_id: str = ""
    lost_and_found_id: str = ""
    admin_group_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def seed_tenant(db: Database, name: str) -> TenantFixture:
    now = system_clock()
    callers: dict[str, Caller] = {}
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name=name, now=now)
        for role in ("admin", "editor", "viewer"):
            username = f"{role}@{name}"
            account = accounts.create_account(
                uow,
                tenant_id=tenant.id,
                username=username,
                role=role,
                password=PASSWORD,
                now=now,
            )
            token = accounts.issue_credential(
                uow, account=account, kind="api", ttl_seconds=86400, now=now
            )
            callers[role] = Caller(username, role, token.secret, name)
    result = TenantFixture(name, tenant.id, callers["admin"], callers["editor"], callers["viewer"])
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(Group.name, Group.uuid).where(Group.tenant_id == tenant.id)
        ).all()
    by_name = {name: str(key) for name, key in rows}
    result.root_id = by_name["All"]
    result.lost_and_found_id = by_name["Lost & found"]
    result.admin_group_id = by_name["Admin"]
    return result


@pytest.fixture
def context(settings: Settings, db: Database) -> AppContext:
    return AppContext.create(settings, db=db)


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    app = create_app(context=context)
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.fixture
def acme(db: Database) -> TenantFixture:
    return seed_tenant(db, "acme")


@pytest.fixture
def globex(db: Database) -> TenantFixture:
    return seed_tenant(db, "globex")


@pytest.fixture
def check_invariants(db: Database) -> Iterator[None]:
    yield
    assert_invariants(db)


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2 with the lightest parameters: the suite hashes hundreds of passwords
    and verifies thousands; production keeps argon2-cffi's defaults."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(
        accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )
