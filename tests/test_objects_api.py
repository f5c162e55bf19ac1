"""Objects, memberships and licences through the native API."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.services.common import encode_cursor, new_uuid
from groupd.store.db import Database
from helpers import build_tree, create, devices, licence, user
from invariants import assert_invariants


def test_objects_create_get_move_status(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    a = create(client, h, "/api/v1/groups", {"name": "A", "parentId": acme.root_id})
    b = create(client, h, "/api/v1/groups", {"name": "B", "parentId": acme.root_id})
    device = create(
        client,
        h,
        "/api/v1/objects",
        {
            "kind": "device",
            "name": "pc-1",
            "homeGroupId": a["id"],
            "attributes": {"os": "linux", "cores": 8},
        },
    )
    assert device["attributes"] == {"os": "linux", "cores": 8}
    assert device["loginName"] is None and device["status"] is None
    moved = client.post(
        f"/api/v1/objects/{device['id']}/move", json={"groupId": b["id"]}, headers=h
    )
    assert moved.status_code == 200 and moved.json()["homeGroupId"] == b["id"]
    alice = user(client, h, a["id"], "alice")
    assert alice["status"] == "active"
    inactive = client.patch(
        f"/api/v1/objects/{alice['id']}", json={"status": "inactive"}, headers=h
    )
    assert inactive.json()["status"] == "inactive"
    bad = client.patch(f"/api/v1/objects/{device['id']}", json={"status": "inactive"}, headers=h)
    # the object's kind is its state: a device has no status to set
    assert bad.status_code == 409 and "status" in bad.json()["detail"]
    assert bad.json()["code"] == "not_a_user"
    duplicate = client.post(
        "/api/v1/objects",
        json={"kind": "user", "name": "Alice 2", "loginName": "alice", "homeGroupId": a["id"]},
        headers=h,
    )
    assert duplicate.status_code == 409
    into_user_group = client.post(
        "/api/v1/objects",
        json={"kind": "device", "name": "x", "homeGroupId": acme.admin_group_id},
        headers=h,
    )
    assert into_user_group.status_code == 409
    assert into_user_group.json()["code"] == "not_a_static_group"
    assert_invariants(db)


def test_recursive_listing(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    ids = build_tree(client, h, acme.root_id, fanout=2, depth=3)
    for group in ids:
        devices(client, h, group, 2)
    top = ids[0]
    direct = client.get(f"/api/v1/groups/{top}/objects", headers=h).json()
    assert len(direct["items"]) == 2
    seen = 0
    cursor = None
    while True:
        params: dict[str, str | int] = {"recursive": "true", "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = client.get(f"/api/v1/groups/{top}/objects", params=params, headers=h).json()
        seen += len(page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert seen == 2 * 7  # ids[0], its 2 children and 4 grandchildren
    assert_invariants(db)


def test_memberships(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    home = create(client, h, "/api/v1/groups", {"name": "People", "parentId": acme.root_id})
    alice = user(client, h, home["id"], "alice")
    teams = [
        create(client, h, "/api/v1/groups", {"name": f"team-{i}", "kind": "user"}) for i in range(3)
    ]
    for team in teams:
        url = f"/api/v1/groups/{team['id']}/members/{alice['id']}"
        assert client.put(url, headers=h).status_code == 201
        assert client.put(url, headers=h).status_code == 204  # idempotent
    mine = client.get(f"/api/v1/objects/{alice['id']}/memberships", headers=h).json()["items"]
    assert sorted(m["groupName"] for m in mine) == ["team-0", "team-1", "team-2"]
    members = client.get(f"/api/v1/groups/{teams[0]['id']}/members", headers=h).json()
    assert [m["id"] for m in members["items"]] == [alice["id"]]
    gone = client.delete(f"/api/v1/groups/{teams[0]['id']}/members/{alice['id']}", headers=h)
    assert gone.status_code == 204
    again = client.delete(f"/api/v1/groups/{teams[0]['id']}/members/{alice['id']}", headers=h)
    assert again.status_code == 404
    static = client.put(f"/api/v1/groups/{home['id']}/members/{alice['id']}", headers=h)
    assert static.status_code == 409 and static.json()["code"] == "not_a_user_group"
    assert_invariants(db)


def test_licence_arithmetic(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    group = create(client, h, "/api/v1/groups", {"name": "Fleet", "parentId": acme.root_id})
    seats = licence(client, h, "Seats", 5)
    made = devices(client, h, group["id"], 5, product="Seats")
    assert client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()["usedUnits"] == 5
    # one more does not fit: the whole batch is refused, nothing is created
    too_many = client.post(
        "/api/v1/objects:batchImport",
        json={
            "objects": [
                {
                    "kind": "device",
                    "name": "extra",
                    "homeGroupId": group["id"],
                    "activations": [{"product": "Seats"}],
                }
            ]
        },
        headers=h,
    )
    assert too_many.status_code == 409
    assert too_many.json()["code"] == "insufficient_units"
    listed = client.get(f"/api/v1/groups/{group['id']}/objects", headers=h).json()["items"]
    assert len(listed) == 5
    activations = client.get(f"/api/v1/licenses/{seats['id']}/activations", headers=h).json()[
        "items"
    ]
    assert {a["objectId"] for a in activations} == {d["id"] for d in made}
    released = client.delete(
        f"/api/v1/licenses/{seats['id']}/activations/{activations[0]['id']}", headers=h
    )
    assert released.status_code == 204
    again = client.post(
        f"/api/v1/licenses/{seats['id']}/activations",
        json={"objectId": activations[0]["objectId"], "units": 1},
        headers=h,
    )
    assert again.status_code == 201, again.text
    double = client.post(
        f"/api/v1/licenses/{seats['id']}/activations",
        json={"objectId": activations[1]["objectId"], "units": 1},
        headers=h,
    )
    assert double.status_code == 409
    assert client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()["usedUnits"] == 5
    unknown = client.get(f"/api/v1/licenses/{uuid.uuid4()}", headers=h)
    assert unknown.status_code == 404
    assert_invariants(db)


def test_a_licences_activations_page_by_uuid_in_creation_order(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """The listing walks the licence's one index, (licence_id, uuid): pages in creation
    order (uuids rise with every activation this process makes), a cursor that resumes
    after the last uuid shown, and a 400 for a cursor this listing did not issue."""
    h = acme.admin.headers
    seats = licence(client, h, "Paged seats", 100)
    made = devices(client, h, acme.root_id, 25, product="Paged seats")
    made += devices(client, h, acme.root_id, 12, product="Paged seats")
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 10, **({"cursor": cursor} if cursor else {})}
        response = client.get(
            f"/api/v1/licenses/{seats['id']}/activations", headers=h, params=params
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body.get("nextCursor")
        if not cursor:
            break
    assert [len(page) for page in pages] == [10, 10, 10, 7]
    listed = [item for page in pages for item in page]
    assert [item["objectId"] for item in listed] == [device["id"] for device in made]
    assert [item["id"] for item in listed] == sorted(item["id"] for item in listed)
    before = _activation_count(db)
    for foreign in ("not-a-cursor", "aw", encode_cursor(5)):
        response = client.get(
            f"/api/v1/licenses/{seats['id']}/activations", headers=h, params={"cursor": foreign}
        )
        assert response.status_code == 400, response.text
        assert "cursor" in response.text
    assert _activation_count(db) == before
    assert_invariants(db)


def _activation_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM activations")).scalar_one())


def test_new_uuids_rise_within_a_millisecond_and_stay_version_7() -> None:
    made = [new_uuid() for _ in range(20_000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert {key.version for key in made} == {7}
    assert {key.variant for key in made} == {uuid.RFC_4122}
    # Many fell in one millisecond: the order came from counting, not from the clock.
    assert len({key.int >> 80 for key in made}) < len(made) // 2
