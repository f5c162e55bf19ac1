"""The migrations, on each database: they build exactly the models' schema, and moving
down and up again across migration 0004 keeps every row and reference."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from conftest import create_engine_for, create_pg_database, drop_pg_database
from groupd.clock import system_clock
from groupd.services import accounts, groups, licensing, memberships, objects
from groupd.services.common import Actor, system_actor
from groupd.store import migrate
from groupd.store.db import Database, UnitOfWork, transaction
from groupd.store.models import Base
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
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
        assert_invariants(db)
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
                {"group": team.id, "device": device.id, "tenant": tenant.id, "now": now},
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
                insert, {"uuid": uuid.uuid4().hex, "object": device.id, "orphaned": None}
            )
        with db.engine.begin() as connection:
            for _ in range(2):
                connection.execute(
                    insert, {"uuid": uuid.uuid4().hex, "object": None, "orphaned": now}
                )
            connection.execute(text("DELETE FROM activations WHERE object_id IS NULL"))
        assert_invariants(db)
    finally:
        db.dispose()
