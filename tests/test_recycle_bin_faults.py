"""SIGKILL during a restore and during a purge: each completes exactly once, books exact.

A real ``groupd serve`` (tests/servers.py) with small purge chunks. Each round puts a
subtree of 40 groups and 200 devices in the bin (units released), asks for its restore or
its purge without waiting, and kills the server with SIGKILL after a seeded delay (for a
purge, once its removal has begun). After a restart the operation ends once: one audit
event, the tables as they were before the delete (restore) or without the subtree
(purge), and the licence books exact.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants
from servers import ServerProcess, server_env
from test_faults import build_target, licence_used, settle, wait_for_phase_two

SEED = int(os.environ.get("GROUPD_FAULT_SEED", "20240607"))
ROUNDS = 3
SERVER_SETTINGS: dict[str, str | int | float | bool] = {
    "worker_lease_seconds": 2,
    "worker_poll_seconds": 0.1,
    "delete_chunk_groups": 2,
    "delete_chunk_objects": 16,
    "delete_wait_seconds": 0,
    "retention_seconds": 3600,
}
DUMPED = ("groups", "objects", "memberships", "activations", "licences")

pytestmark = pytest.mark.slow


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        server_env(database_url, **SERVER_SETTINGS), tmp_path / "groupd.log"
    ) as process:
        yield process


def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    with db.engine.connect() as connection:
        return {
            table: [tuple(r) for r in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))]
            for table in DUMPED
        }


def events(db: Database, action: str, target: str) -> int:
    key = uuid.UUID(target)
    with db.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT target_uuid FROM audit_events WHERE action = :action"),
            {"action": action},
        ).scalars()
        return sum(
            1
            for value in rows
            if (uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value)))
            == key
        )


def bin_subtree(client: httpx.Client, root: str) -> None:
    response = client.delete(
        f"/api/v1/groups/{root}", params={"releaseConsumedUnits": "true", "wait": "30"}
    )
    assert response.status_code == 200, response.text


def test_sigkill_during_restores_and_purges(
    server: ServerProcess, acme: TenantFixture, db: Database
) -> None:
    rng = random.Random(SEED)
    server.start()
    headers = acme.admin.headers
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        for product, kind in (("Seats", "seat"), ("Users", "user")):
            client.post(
                "/api/v1/licenses",
                json={"product": product, "unitKind": kind, "totalUnits": 10_000_000},
            )
        team = client.post("/api/v1/groups", json={"name": "Team", "kind": "user"}).json()["id"]
        targets = [build_target(client, acme, i, team, rng) for i in range(2 * ROUNDS)]
    try:
        for index, target in enumerate(targets):
            restoring = index % 2 == 0
            before = dump(db)
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
                used_before = licence_used(client)
                bin_subtree(client, target.root)
                if restoring:
                    accepted = client.post(
                        f"/api/v1/deleted-groups/{target.root}/restore", params={"wait": "0"}
                    )
                else:
                    accepted = client.delete(
                        f"/api/v1/deleted-groups/{target.root}", params={"wait": "0"}
                    )
            assert accepted.status_code in (200, 202), accepted.text
            if not restoring:
                wait_for_phase_two(db, accepted.json()["id"])
            time.sleep(rng.uniform(0.0, 0.05))
            server.kill()
            server.start()
            settle(db)
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
                shown = client.get(f"/api/v1/groups/{target.root}").status_code
                binned = client.get(f"/api/v1/deleted-groups/{target.root}").status_code
                used_after = licence_used(client)
            assert binned == 404
            if restoring:
                assert shown == 200
                assert events(db, "group.restore", target.root) == 1
                assert dump(db) == before
                assert used_after == used_before
            else:
                assert shown == 404
                assert events(db, "group.purge", target.root) == 1
                assert used_after == {
                    "Seats": used_before["Seats"] - target.seat_units,
                    "Users": used_before["Users"] - target.user_units,
                }
            assert_invariants(db)
    except AssertionError as error:
        raise AssertionError(f"{error}\nserver log:\n{server.log_problems()}") from None
    server.stop()
