"""The plans SQLite picks without statistics (groupd never runs ANALYZE on SQLite).

When a group is deleted, the database looks up its children and its objects through the
composite foreign keys ``(tenant_id, parent_id)`` and ``(tenant_id, home_group_id)``.
Those lookups must go through the parent-key indexes: an index leading with
``tenant_id`` reads every group or object of the tenant for each group deleted.
"""

from __future__ import annotations

import sqlite3

import pytest

from groupd.store import deletion
from groupd.store.db import Database
from invariants import assert_invariants

# The lookups SQLite's foreign-key checks run for a deleted group, and their index.
CHILD_LOOKUPS = {
    "SELECT 1 FROM groups WHERE tenant_id = ? AND parent_id = ?": (
        "ix_groups_parent_id_tenant_id_id"
    ),
    "SELECT 1 FROM objects WHERE tenant_id = ? AND home_group_id = ?": (
        "ix_objects_home_group_id_tenant_id_id_kind"
    ),
    "SELECT 1 FROM memberships WHERE tenant_id = ? AND group_id = ?": (
        "sqlite_autoindex_memberships_1"
    ),
    # A deleted object's (on SQLite they reference the object's own key, migration 0006).
    "SELECT 1 FROM activations WHERE object_id = ?": "uq_activations_object_id_licence_id",
    "SELECT 1 FROM memberships WHERE object_id = ?": "ix_memberships_object_id",
}


def test_foreign_key_lookups_use_the_parent_key_indexes(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("PostgreSQL plans its foreign-key checks from statistics it keeps itself")
    path = db.engine.url.database
    assert path
    connection = sqlite3.connect(path)
    try:
        assert not connection.execute(
            "SELECT name FROM sqlite_master WHERE name = 'sqlite_stat1'"
        ).fetchall(), "the test is about a database without statistics"
        for query, index in CHILD_LOOKUPS.items():
            plan = " ".join(
                row[3]
                for row in connection.execute(
                    f"EXPLAIN QUERY PLAN {query}", (1, 2)[: query.count("?")]
                )
            )
            assert f"INDEX {index} (" in plan, (query, plan)
    finally:
        connection.close()
    assert_invariants(db)


def test_a_delete_step_finds_its_devices_through_the_home_index(db: Database) -> None:
    """The fixed statements of a step of a chunk of devices alone (SQLite): the chunk's
    groups come as one JSON array, and each must still be one seek of the home index
    with the tenant and the step's id range, never a scan of the objects."""
    if not db.is_sqlite:
        pytest.skip("a chunk takes several steps on SQLite only")
    path = db.engine.url.database
    assert path
    connection = sqlite3.connect(path)
    home_range = (
        "INDEX ix_objects_home_group_id_tenant_id_id_kind"
        " (home_group_id=? AND tenant_id=? AND id>? AND id<?)"
    )
    try:
        for prepared in (
            deletion.RELEASE_STEP_ACTIVATIONS,
            deletion.ORPHAN_STEP_ACTIVATIONS,
            deletion.DELETE_STEP_DEVICES,
        ):
            sql = prepared.compiled_for(db.engine.dialect).sql
            plan = " | ".join(
                row[3]
                for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", (1,) * sql.count("?"))
            )
            assert home_range in plan, (sql, plan)
            assert "SCAN objects" not in plan, plan
            if "activations" in sql:
                assert "INDEX uq_activations_object_id_licence_id (object_id=?)" in plan, plan
    finally:
        connection.close()
    assert_invariants(db)
