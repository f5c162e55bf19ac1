"""Uuids and times on disk. On SQLite a uuid's 16 bytes (migration 0007) and a time's
microseconds since 1970 (0008); PostgreSQL has types of its own for both.

The uuid columns are filled here through the API (a delete leaves an operation, audit
events and orphaned activations), read raw, migrated down and up again, and read back
through the API."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select, text
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.api.context import AppContext
from groupd.clock import system_clock
from groupd.services import deletion
from groupd.services.common import Actor
from groupd.store import migrate
from groupd.store.db import Database, transaction
from groupd.store.models import Base, Group
from groupd.store.types import UTCDateTime, UuidKey
from helpers import build_tree, create, devices, licence, wait_operation
from invariants import assert_invariants


def _columns_of_type(column_type: type) -> list[tuple[str, str]]:
    return [
        (table.name, column.name)
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(column.type, column_type)
    ]


# Every uuid and time column of the models: migrations 0007 and 0008 convert each of the
# tables there were then; later tables are made with these storage forms.
UUID_COLUMNS = _columns_of_type(UuidKey)
TIME_COLUMNS = _columns_of_type(UTCDateTime)
LATER_TABLES = {  # migrations 0011 to 0013
    "bin_entries",
    "outbox_events",
    "webhook_subscriptions",
    "webhook_deliveries",
}
LATER_COLUMNS = {("tenants", "provisioning_home_uuid")}  # migration 0012
CONVERTED_UUIDS = [
    column
    for column in UUID_COLUMNS
    if column[0] not in LATER_TABLES and column not in LATER_COLUMNS
]
CONVERTED_TIMES = [
    column
    for column in TIME_COLUMNS
    if column[0] not in LATER_TABLES and column not in LATER_COLUMNS
]


def _bin_a_group(client: TestClient, acme: TenantFixture, db: Database) -> str:
    """A group in the recycle bin (this app deletes at once: retention 0)."""
    group = create(
        client, acme.admin.headers, "/api/v1/groups", {"name": "Binned", "parentId": acme.root_id}
    )
    actor = Actor(tenant_id=acme.id, account_id=None, username="suite", role="admin")
    with transaction(db) as uow:
        plan = deletion.request_delete(
            uow,
            actor=actor,
            group_id=group["id"],
            release_units=False,
            now=system_clock(),
            retention_seconds=3600,
        )
    wait_operation(client, acme.admin.headers, str(plan.operation_uuid))
    return str(group["id"])


def _fill_every_uuid_column(client: TestClient, acme: TenantFixture) -> dict[str, Any]:
    """A licence, a device activated under the root and a tree with more under it, and a
    delete of the tree that keeps the units (orphaned activations, an operation, audit
    events)."""
    h = acme.admin.headers
    seats = licence(client, h, "seats", 10)
    top, *_ = build_tree(client, h, acme.root_id, fanout=2, depth=2, prefix="u")
    made = devices(client, h, top, 3, product="seats")
    devices(client, h, acme.root_id, 1, product="seats")  # stays
    response = client.delete(f"/api/v1/groups/{top}", headers=h, params={"wait": 0})
    assert response.status_code in (200, 202), response.text
    if response.status_code == 202:
        wait_operation(client, h, response.headers["response-id"])
    return {"licence": seats, "top": top, "devices": made}


def _raw_shapes(
    db: Database, columns: list[tuple[str, str]]
) -> dict[tuple[str, str], set[tuple[str, int]]]:
    """For each column, the storage classes and lengths of its values."""
    shapes = {}
    with db.engine.connect() as connection:
        for table, column in columns:
            rows = connection.execute(
                text(
                    f"SELECT DISTINCT typeof({column}), length({column}) FROM {table}"
                    f" WHERE {column} IS NOT NULL"
                )
            ).all()
            shapes[(table, column)] = {(kind, length) for kind, length in rows}
    return shapes


def _orphaned(client: TestClient, acme: TenantFixture, licence_id: str) -> list[dict[str, Any]]:
    response = client.get(
        f"/api/v1/licenses/{licence_id}/activations",
        headers=acme.admin.headers,
        params={"orphaned": "true"},
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]  # type: ignore[no-any-return]


def _storage_classes(db: Database, columns: list[tuple[str, str]]) -> set[str]:
    return {kind for shapes in _raw_shapes(db, columns).values() for kind, _ in shapes}


def test_sqlite_keeps_uuids_as_16_bytes_and_times_as_integers_and_0007_0008_convert_back(
    client: TestClient, acme: TenantFixture, db: Database, context: AppContext
) -> None:
    if not db.is_sqlite:
        pytest.skip(
            "PostgreSQL has types of its own for uuids and times: 0007 and 0008 change nothing"
        )
    filled = _fill_every_uuid_column(client, acme)
    binned = _bin_a_group(client, acme, db)
    filled_here = CONVERTED_UUIDS + [c for c in UUID_COLUMNS if c[0] == "bin_entries"]
    assert all(_raw_shapes(db, filled_here).values()), "a uuid column was left empty: fill it"
    assert set().union(*_raw_shapes(db, UUID_COLUMNS).values()) == {("blob", 16)}
    assert _storage_classes(db, TIME_COLUMNS) == {"integer"}
    # A downgrade past 0013 wants an empty bin.
    restored = client.post(f"/api/v1/deleted-groups/{binned}/restore", headers=acme.admin.headers)
    assert restored.status_code == 200, restored.text
    orphaned = _orphaned(client, acme, filled["licence"]["id"])
    assert {item["objectId"] for item in orphaned} == {item["id"] for item in filled["devices"]}
    audit = client.get(
        "/api/v1/audit", headers=acme.admin.headers, params={"target": filled["top"]}
    )
    assert audit.status_code == 200 and audit.json()["items"], audit.text

    # The app's worker looks for purges due in the bin, and its webhook dispatcher for
    # events, which a schema before 0011 and 0013 lacks: both rest while it is older.
    context.worker.stop()
    context.delivery.stop()
    migrate.downgrade(db.engine, "0006")
    assert set().union(*_raw_shapes(db, CONVERTED_UUIDS).values()) == {("text", 32)}
    assert _storage_classes(db, CONVERTED_TIMES) == {"text"}
    with db.engine.connect() as connection:
        stored_hex = connection.execute(
            text("SELECT uuid FROM groups WHERE name = 'All' AND tenant_id = :t"), {"t": acme.id}
        ).scalar_one()
    assert stored_hex == uuid.UUID(acme.root_id).hex

    migrate.upgrade(db.engine)
    context.worker.start()
    context.delivery.start()
    assert set().union(*_raw_shapes(db, UUID_COLUMNS).values()) == {("blob", 16)}
    assert _storage_classes(db, TIME_COLUMNS) == {"integer"}
    # The same uuids and times (to the microsecond) as before, through the API.
    assert _orphaned(client, acme, filled["licence"]["id"]) == orphaned
    again = client.get(
        "/api/v1/audit", headers=acme.admin.headers, params={"target": filled["top"]}
    )
    assert again.json()["items"] == audit.json()["items"]
    root = client.get(f"/api/v1/groups/{acme.root_id}", headers=acme.admin.headers)
    assert root.status_code == 200, root.text
    assert_invariants(db)


def test_an_order_by_uuid_is_the_order_of_their_text(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """Blobs compare byte by byte, as PostgreSQL compares its uuids: the order of their
    hex spelling, whatever their version."""
    h = acme.admin.headers
    keys = [str(uuid.uuid4()) for _ in range(40)] + [
        "00000000-0000-4000-8000-000000000000",
        "ffffffff-ffff-4fff-bfff-ffffffffffff",
        "7fffffff-ffff-4fff-bfff-ffffffffffff",
        "80000000-0000-4000-8000-000000000000",
    ]
    create(
        client,
        h,
        "/api/v1/groups:batchCreate",
        {
            "groups": [
                {"id": key, "name": f"o{n}", "parentId": acme.root_id} for n, key in enumerate(keys)
            ]
        },
    )
    with db.engine.connect() as connection:
        ordered = connection.execute(
            select(Group.uuid)
            .where(Group.uuid.in_([uuid.UUID(key) for key in keys]))
            .order_by(Group.uuid)
        ).scalars()
        assert [str(key) for key in ordered] == sorted(keys)
    assert_invariants(db)
