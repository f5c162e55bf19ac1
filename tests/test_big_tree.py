"""Issue 2's scale acceptance: 100,000 groups (depth up to 50) built through the batch API,
listed page by page, and a 10,000-group subtree moved with a few set-based statements."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants
from statements import driver_statements

BATCH = 10_000


def _items(acme_root: str) -> tuple[list[dict[str, Any]], str, str]:
    rng = random.Random(7)
    items: list[dict[str, Any]] = []

    def add(parent: str, name: str) -> str:
        gid = str(uuid.uuid4())
        items.append({"id": gid, "name": name, "parentId": parent})
        return gid

    # A: exactly 10,000 groups (itself, 99 children, 99 x 100 grandchildren)
    a = add(acme_root, "A")
    for i in range(99):
        child = add(a, f"a{i}")
        for j in range(100):
            add(child, f"a{i}-{j}")
    # B: a spine 50 deep with the rest hanging off random spine nodes
    spine = [add(acme_root, "B")]
    for depth in range(1, 49):
        spine.append(add(spine[-1], f"s{depth}"))
    n = 0
    while len(items) < 100_000:
        add(spine[rng.randrange(len(spine))], f"leaf{n}")
        n += 1
    return items, a, spine[-1]


@pytest.mark.slow
def test_hundred_thousand_groups(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    items, a, deep = _items(acme.root_id)
    started = time.perf_counter()
    for offset in range(0, len(items), BATCH):
        response = client.post(
            "/api/v1/groups:batchCreate", json={"groups": items[offset : offset + BATCH]}, headers=h
        )
        assert response.status_code == 201, response.text[:500]
    built = time.perf_counter() - started
    listing_started = time.perf_counter()
    # every group, page by page, through the keyset cursor
    seen = 0
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"kind": "static", "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/groups", params=params, headers=h).json()
        seen += len(page["items"])
        pages += 1
        cursor = page["nextCursor"]
        if not cursor:
            break
    listed = time.perf_counter() - listing_started
    assert seen == 100_000 + 2  # plus the built-ins "All" and "Lost & found"
    # moving A (10,000 groups) under the deepest spine node: a few set-based statements
    # Counted at the driver, so the prepared ones (the token check, the audit append) and
    # BEGIN count too; only the request's own, not the worker's or the webhook threads' polling.
    with driver_statements(
        db,
        record_thread=lambda thread: (
            not thread.name.startswith(("groupd-worker", "groupd-webhooks"))
        ),
    ) as statements:
        moved = client.post(f"/api/v1/groups/{a}/move", json={"parentId": deep}, headers=h)
    assert moved.status_code == 200, moved.text
    writes = [
        s for s in statements if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
    ]
    assert len(statements) <= 16, statements
    # the subtree's paths (run again until it finds no row left, normally once more), the
    # root's parent, the audit event: a few statements, whatever the subtree's size
    assert len(writes) <= 5, writes
    with db.engine.connect() as connection:
        depth = connection.execute(
            text("SELECT MAX(depth) FROM groups WHERE kind = 'static'")
        ).scalar_one()
    assert depth == 49 + 1 + 2  # A's grandchildren now sit under the 49-deep spine end
    print(f"\nbuilt 100k groups in {built:.1f}s, listed in {pages} pages in {listed:.1f}s")
    print("move statements:\n" + "\n".join(statements))
    assert_invariants(db)
