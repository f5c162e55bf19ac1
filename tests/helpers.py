"""Builders for scenario tests: trees, objects, licences through the native API."""

from __future__ import annotations

import time
import uuid
from typing import Any

from starlette.testclient import TestClient


def create(
    client: TestClient, headers: dict[str, str], path: str, body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()  # type: ignore[no-any-return]


def build_tree(
    client: TestClient,
    headers: dict[str, str],
    parent: str,
    *,
    fanout: int,
    depth: int,
    prefix: str = "g",
) -> list[str]:
    """A full ``fanout``-ary tree of ``depth`` levels under ``parent``; ids root first."""
    items: list[dict[str, Any]] = []
    level = [parent]
    for d in range(depth):
        next_level = []
        for p in level:
            for i in range(fanout):
                gid = str(uuid.uuid4())
                items.append({"id": gid, "name": f"{prefix}{d}-{i}", "parentId": p})
                next_level.append(gid)
        level = next_level
    create(client, headers, "/api/v1/groups:batchCreate", {"groups": items})
    return [item["id"] for item in items]


def licence(
    client: TestClient, headers: dict[str, str], product: str, total: int, unit_kind: str = "seat"
) -> dict[str, Any]:
    return create(
        client,
        headers,
        "/api/v1/licenses",
        {"product": product, "unitKind": unit_kind, "totalUnits": total},
    )


def devices(
    client: TestClient,
    headers: dict[str, str],
    group: str,
    count: int,
    *,
    product: str | None = None,
    units: int = 1,
) -> list[dict[str, Any]]:
    objects = []
    for i in range(count):
        item: dict[str, Any] = {
            "kind": "device",
            "name": f"dev-{uuid.uuid4().hex[:8]}-{i}",
            "homeGroupId": group,
        }
        if product:
            item["activations"] = [{"product": product, "units": units}]
        objects.append(item)
    return create(client, headers, "/api/v1/objects:batchImport", {"objects": objects})["items"]


def user(
    client: TestClient, headers: dict[str, str], group: str, login: str, status: str = "active"
) -> dict[str, Any]:
    return create(
        client,
        headers,
        "/api/v1/objects",
        {"kind": "user", "name": login, "loginName": login, "homeGroupId": group, "status": status},
    )


def wait_operation(
    client: TestClient, headers: dict[str, str], operation_id: str, timeout: float = 30.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/api/v1/operations/{operation_id}", headers=headers).json()
        if body["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return body  # type: ignore[no-any-return]
        time.sleep(0.05)
