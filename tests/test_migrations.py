"""The migrations, on each database: they build exactly the models' schema, and moving
down and up again across migration 0004 keeps every row and reference."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import MetaData, text
from sqlalchemy.exc import IntegrityError

from conftest import create_engine_for, create_pg_database, drop_pg_database
from groupd.clock import system_clock
from groupd.services import accounts, groups, licensing, memberships, objects
from groupd.services.common import Actor, system_actor
from groupd.store import migrate
from groupd.store.db import Database, UnitOfWork, transaction
from groupd.store.models import QUEUE_TABLES, SQLITE_TRIGGERS, Base
from groupd.store.types import UTCDateTime, UuidKey
from invariants import assert_invariants


@pytest.fixture(params=["sqlite", "postgres"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, of its own (the migrations change its schema)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"groupd_migrations_{os.getpid()}"
    yield create_pg_database(name)
    drop_pg_database(name)


def _stored(db: Database, value: uuid.UUID | datetime) -> Any:
    """A value as groupd's column types bind it, for the raw SQL below: on SQLite a
    uuid's 16 bytes (migration 0007) and a time's microseconds since 1970 (0008)."""
    column_type = UuidKey() if isinstance(value, uuid.UUID) else UTCDateTime()
    return column_type.process_bind_param(value, db.engine.dialect)  # type: ignore[arg-type]


def _tenant_with_root(uow: UnitOfWork, name: str) -> tuple[Any, Actor, uuid.UUID]:
    """A new tenant, its system actor, and the uuid of its root group "All"."""
    tenant = accounts.create_tenant(uow, name=name, now=system_clock())
    actor = system_actor(tenant.id)
    return tenant, actor, groups.list_groups(uow, actor=actor, name="All").items[0].uuid


def test_the_migrations_build_the_models_schema(empty_url: str) -> None:
    db = Database(create_engine_for(empty_url))
    try:
        migrate.upgrade(db.engine)
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={
                    "compare_type": True,
                    "include_object": migrate.include_object_for(connection.dialect.name),
                },
            )
            with warnings.catch_warnings():
                # SQLite's indexes on an expression cannot be read back; checked below.
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression")
                warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expr")
                differences = compare_metadata(context, Base.metadata)
            if db.is_sqlite:
                made = set(
                    connection.execute(
                        text("SELECT name FROM sqlite_master WHERE type = 'index'")
                    ).scalars()
                )
                wanted = {
                    index.name
                    for table in Base.metadata.tables.values()
                    for index in table.indexes
                    if migrate.has_expression(index)
                }
                assert wanted and wanted <= made
        assert differences == []
        if db.queue is not db:
            # SQLite: the queue's file holds exactly the models' queue tables.
            with db.queue.engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"compare_type": True})
                queue_differences = compare_metadata(context, _queue_metadata())
                names = set(
                    connection.execute(
                        text("SELECT name FROM main.sqlite_master WHERE type = 'table'")
                    ).scalars()
                )
            assert queue_differences == []
            assert names == set(QUEUE_TABLES)
        assert_invariants(db)
    finally:
        db.dispose()


def _queue_metadata() -> MetaData:
    metadata = MetaData()
    for name in QUEUE_TABLES:
        Base.metadata.tables[name].to_metadata(metadata)
    return metadata


def test_0015_moves_the_delivery_queue_and_back(empty_url: str) -> None:
    """0015 moves the deliveries (on SQLite to the queue's file) and the subscriptions'
    schedules to their own table; going down brings both back."""
    db = Database(create_engine_for(empty_url))
    try:
        migrate.upgrade(db.engine, "0014")
        now = system_clock()
        with transaction(db) as uow:
            tenant, _, _ = _tenant_with_root(uow, "queue")
        stored_now = _stored(db, now)
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO outbox_events (id, uuid, tenant_id, type, data, relayed,"
                    " occurred_at) VALUES (7, :uuid, :tenant, 'group.created', '{}', :yes, :now)"
                ),
                {
                    "uuid": _stored(db, uuid.uuid4()),
                    "tenant": tenant.id,
                    "now": stored_now,
                    "yes": True,
                },
            )
            connection.execute(
                text(
                    "INSERT INTO webhook_subscriptions (id, uuid, tenant_id, url, events,"
                    " description, format, secret, enabled, after_event_id, due_at,"
                    " created_at, updated_at) VALUES (3, :uuid, :tenant, 'https://example.com',"
                    " '[\"*\"]', '', 'standard', 'whsec_x', :yes, 0, :now, :now, :now)"
                ),
                {
                    "uuid": _stored(db, uuid.uuid4()),
                    "tenant": tenant.id,
                    "now": stored_now,
                    "yes": True,
                },
            )
            connection.execute(
                text(
                    "INSERT INTO webhook_deliveries (id, uuid, tenant_id, subscription_id,"
                    " event_id, state, attempts, next_attempt_at, created_at) VALUES"
                    " (11, :uuid, :tenant, 3, 7, 'pending', 0, :now, :now)"
                ),
                {"uuid": _stored(db, uuid.uuid4()), "tenant": tenant.id, "now": stored_now},
            )
        migrate.upgrade(db.engine)

        def queued(connection: Any) -> list[tuple[Any, ...]]:
            return [
                tuple(row)
                for row in connection.execute(
                    text(
                        "SELECT d.id, d.event_id, q.due_at FROM webhook_deliveries d"
                        " JOIN webhook_schedules q ON q.subscription_id = d.subscription_id"
                    )
                )
            ]

        with db.queue.engine.connect() as connection:
            assert queued(connection) == [(11, 7, stored_now)]
        if db.is_sqlite:
            with db.engine.connect() as connection:
                in_main = connection.execute(
                    text("SELECT count(*) FROM main.sqlite_master WHERE name LIKE 'webhook_de%'")
                ).scalar_one()
                assert in_main == 0
        assert_invariants(db)
        migrate.downgrade(db.engine, "0014")
        with db.engine.connect() as connection:
            assert connection.execute(
                text(
                    "SELECT d.id, d.event_id, s.due_at FROM webhook_deliveries d"
                    " JOIN webhook_subscriptions s ON s.id = d.subscription_id"
                )
            ).all() == [(11, 7, stored_now)]
        migrate.upgrade(db.engine)
        with db.queue.engine.connect() as connection:
            assert queued(connection) == [(11, 7, stored_now)]
    finally:
        db.dispose()


def test_member_keys_survive_a_downgrade_and_upgrade(empty_url: str) -> None:
    """0004 gives users a member key and moves the memberships onto it: a user's
    memberships stay, a device gets no key, and a device can't be made a member."""
    db = Database(create_engine_for(empty_url))
    try:
        migrate.upgrade(db.engine)
        now = system_clock()
        with transaction(db) as uow:
            tenant, actor, root = _tenant_with_root(uow, "migrations")
            team = groups.create_group(
                uow, actor=actor, spec=groups.GroupSpec(name="team", kind="user"), now=now
            )
            user = objects.create_object(
                uow,
                actor=actor,
                spec=objects.ObjectSpec(
                    kind="user", name="Ada", home_group_uuid=root, login_name="ada", status="active"
                ),
                now=now,
            )
            device = objects.create_object(
                uow,
                actor=actor,
                spec=objects.ObjectSpec(kind="device", name="laptop", home_group_uuid=root),
                now=now,
            )
            memberships.add_member(
                uow, actor=actor, group_id=team.uuid, object_id=user.uuid, now=now
            )
        migrate.downgrade(db.engine, "0003")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM memberships")).scalar_one() == 1
        migrate.upgrade(db.engine)
        with db.engine.connect() as connection:
            keys = dict(connection.execute(text("SELECT id, member_key FROM objects")).all())
            assert keys == {user.id: user.id, device.id: None}
            assert connection.execute(
                text("SELECT group_id, object_id FROM memberships")
            ).all() == [(team.id, user.id)]
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO memberships (group_id, object_id, tenant_id, created_at)"
                    " VALUES (:group, :device, :tenant, :now)"
                ),
                {
                    "group": team.id,
                    "device": device.id,
                    "tenant": tenant.id,
                    "now": _stored(db, now),
                },
            )
        with pytest.raises(IntegrityError), db.engine.begin() as connection:
            connection.execute(
                text("UPDATE objects SET member_key = id WHERE id = :device"),
                {"device": device.id},
            )
        assert_invariants(db)
    finally:
        db.dispose()


def test_a_failed_upgrade_changes_nothing_and_keeps_foreign_keys_on(tmp_path: Path) -> None:
    """SQLite upgrades run with foreign keys off; whatever happens, the connection goes
    back to the pool with them on."""
    db = Database(create_engine_for(f"sqlite:///{tmp_path / 'keys.db'}"))
    try:
        migrate.upgrade(db.engine, "0003")
        with pytest.raises(Exception, match="nonexistent"):
            migrate.upgrade(db.engine, "nonexistent-" + uuid.uuid4().hex[:6])
        with db.engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        assert version == "0003"
    finally:
        db.dispose()


def test_one_activation_per_object_and_licence_across_0005(empty_url: str) -> None:
    """0005 turns the unique index around to lead with the object: down and up again, an
    object still can't hold two activations of one licence, and orphaned activations
    (no object) are still free of the rule."""
    db = Database(create_engine_for(empty_url))
    try:
        migrate.upgrade(db.engine)
        now = system_clock()
        with transaction(db) as uow:
            tenant, actor, root = _tenant_with_root(uow, "activations")
            licence = licensing.create_licence(
                uow, actor=actor, product="seat", unit_kind="seat", total_units=10, now=now
            )
            device = objects.create_object(
                uow,
                actor=actor,
                spec=objects.ObjectSpec(
                    kind="device",
                    name="laptop",
                    home_group_uuid=root,
                    activations=[objects.ActivationSpec(licence_uuid=licence.uuid)],
                ),
                now=now,
            )
        migrate.downgrade(db.engine, "0004")
        migrate.upgrade(db.engine)
        insert = text(
            "INSERT INTO activations (uuid, tenant_id, licence_id, object_id, object_uuid,"
            " object_name, units, orphaned_at, created_at) SELECT :uuid, tenant_id, licence_id,"
            " :object, object_uuid, object_name, 1, :orphaned, created_at FROM activations"
            " WHERE object_id IS NOT NULL"
        )

        # Both databases name the rule's columns (SQLite) or index (PostgreSQL).
        with pytest.raises(IntegrityError, match="object_id"), db.engine.begin() as connection:
            connection.execute(
                insert,
                {"uuid": _stored(db, uuid.uuid4()), "object": device.id, "orphaned": None},
            )
        with db.engine.begin() as connection:
            for _ in range(2):
                connection.execute(
                    insert,
                    {
                        "uuid": _stored(db, uuid.uuid4()),
                        "object": None,
                        "orphaned": _stored(db, now),
                    },
                )
            connection.execute(text("DELETE FROM activations WHERE object_id IS NULL"))
        assert_invariants(db)
    finally:
        db.dispose()


def _rows_of(connection: Any, *tables: str) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sorted(tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}")))
        for table in tables
    }


def test_the_database_refuses_links_across_tenants_and_device_members(empty_url: str) -> None:
    """What invariant 4 asks of the database itself, whatever the services do: an
    activation or a membership never names another tenant's object, a device is never a
    member, and a referenced object keeps its tenant and member key. PostgreSQL refuses
    them by composite foreign keys; SQLite, since 0006, by triggers. Down to 0005 and up
    again first: every row and reference survives the move."""
    db = Database(create_engine_for(empty_url))
    try:
        migrate.upgrade(db.engine)
        now = system_clock()
        made: dict[str, dict[str, Any]] = {}
        with transaction(db) as uow:
            for name in ("acme", "globex"):
                tenant, actor, root = _tenant_with_root(uow, name)
                licence = licensing.create_licence(
                    uow, actor=actor, product="seat", unit_kind="seat", total_units=10, now=now
                )
                team = groups.create_group(
                    uow, actor=actor, spec=groups.GroupSpec(name="team", kind="user"), now=now
                )
                device, user, loose = (
                    objects.create_object(uow, actor=actor, spec=spec, now=now)
                    for spec in (
                        objects.ObjectSpec(
                            kind="device",
                            name="laptop",
                            home_group_uuid=root,
                            activations=[objects.ActivationSpec(licence_uuid=licence.uuid)],
                        ),
                        objects.ObjectSpec(
                            kind="user",
                            name="Ada",
                            home_group_uuid=root,
                            login_name=f"ada-{name}",
                            status="active",
                        ),
                        objects.ObjectSpec(kind="device", name="spare", home_group_uuid=root),
                    )
                )
                memberships.add_member(
                    uow, actor=actor, group_id=team.uuid, object_id=user.uuid, now=now
                )
                home = groups.get_group(uow, actor=actor, group_id=root)
                made[name] = {
                    "tenant": tenant.id,
                    "root": home.id,
                    "licence": licence.id,
                    "team": team.id,
                    "device": device.id,
                    "user": user.id,
                    "loose": loose.id,
                }
        tables = ("objects", "activations", "memberships")
        with db.engine.connect() as connection:
            before = _rows_of(connection, *tables)
        migrate.downgrade(db.engine, "0005")
        migrate.upgrade(db.engine)
        with db.engine.connect() as connection:
            assert _rows_of(connection, *tables) == before
        acme, globex = made["acme"], made["globex"]
        refused = {
            "an activation of another tenant's object": (
                "INSERT INTO activations (uuid, tenant_id, licence_id, object_id, object_uuid,"
                " object_name, units, created_at) SELECT :uuid, :tenant, :licence, :foreign,"
                " object_uuid, object_name, 1, created_at FROM activations"
            ),
            "an activation moved onto another tenant's object": (
                "UPDATE activations SET object_id = :foreign WHERE tenant_id = :tenant"
            ),
            "a membership of another tenant's user": (
                "INSERT INTO memberships (group_id, object_id, tenant_id, created_at)"
                " VALUES (:team, :foreign_user, :tenant, :now)"
            ),
            "a membership of a device": (
                "INSERT INTO memberships (group_id, object_id, tenant_id, created_at)"
                " VALUES (:team, :device, :tenant, :now)"
            ),
            "a membership moved onto a device": (
                "UPDATE memberships SET object_id = :device WHERE tenant_id = :tenant"
            ),
            "an activated device moved to another tenant": (
                "UPDATE objects SET tenant_id = :foreign_tenant, home_group_id = :foreign_root"
                " WHERE id = :device"
            ),
            "a member moved to another tenant": (
                "UPDATE objects SET tenant_id = :foreign_tenant, home_group_id = :foreign_root"
                " WHERE id = :user"
            ),
            "a member made a device": (
                "UPDATE objects SET kind = 'device', member_key = NULL, login_name = NULL,"
                " status = NULL WHERE id = :user"
            ),
        }
        values = {
            "uuid": _stored(db, uuid.uuid4()),
            "tenant": acme["tenant"],
            "licence": acme["licence"],
            "team": acme["team"],
            "device": acme["device"],
            "user": acme["user"],
            "foreign": globex["device"],
            "foreign_user": globex["user"],
            "foreign_tenant": globex["tenant"],
            "foreign_root": globex["root"],
            "now": _stored(db, now),
        }
        for what, statement in refused.items():
            with pytest.raises(IntegrityError), db.engine.begin() as connection:
                connection.execute(text(statement), values)
                pytest.fail(f"the database took {what}")
        with db.engine.connect() as connection:
            assert _rows_of(connection, *tables) == before
        # What the rules leave alone: a device nothing references changes tenant, and an
        # activation is orphaned (its object deleted, its units kept).
        with db.engine.begin() as connection:
            connection.execute(
                text(refused["an activated device moved to another tenant"]),
                {**values, "device": acme["loose"]},
            )
            connection.execute(
                text(
                    "UPDATE activations SET object_id = NULL, orphaned_at = :now"
                    " WHERE object_id = :device"
                ),
                values,
            )
            connection.execute(text("DELETE FROM objects WHERE id = :device"), values)
        assert_invariants(db)
    finally:
        db.dispose()


def test_sqlite_has_exactly_the_models_triggers(empty_url: str) -> None:
    """Migration 0006 keeps its own copy of the triggers' statements (a migration does not
    change with the models): a migrated SQLite database has exactly the models' ones."""
    if not empty_url.startswith("sqlite"):
        pytest.skip("PostgreSQL refuses the same links by composite foreign keys")
    db = Database(create_engine_for(empty_url))
    try:
        migrate.upgrade(db.engine)
        with db.engine.connect() as connection:
            triggers = dict(
                connection.execute(
                    text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")
                ).all()
            )
        assert triggers == SQLITE_TRIGGERS
    finally:
        db.dispose()
