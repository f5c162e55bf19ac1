"""Native groups API: create, batch, get, list, update with ETags, move."""

from __future__ import annotations

import uuid

from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants


def make_group(
    client: TestClient, caller_headers: dict[str, str], parent: str, name: str, **extra: object
) -> dict[str, object]:
    response = client.post(
        "/api/v1/groups",
        json={"name": name, "parentId": parent, **extra},
        headers=caller_headers,
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_create_get_and_etag(client: TestClient, acme: TenantFixture, db: Database) -> None:
    created = make_group(
        client, acme.editor.headers, acme.root_id, "Branch Office", description="north"
    )
    assert created["parentId"] == acme.root_id
    assert created["kind"] == "static"
    assert created["linkedEntity"] is None
    response = client.get(f"/api/v1/groups/{created['id']}", headers=acme.viewer.headers)
    assert response.status_code == 200
    assert response.json() == created
    assert response.headers["etag"] == '"1"'
    assert "request-id" in response.headers
    assert_invariants(db)


def test_sibling_names_unique(client: TestClient, acme: TenantFixture, db: Database) -> None:
    make_group(client, acme.editor.headers, acme.root_id, "Sales")
    response = client.post(
        "/api/v1/groups",
        json={"name": "Sales", "parentId": acme.root_id},
        headers=acme.editor.headers,
    )
    assert response.status_code == 409
    body = response.json()
    assert body["code"] == "name_taken"
    assert response.headers["content-type"] == "application/problem+json"
    assert body["requestId"] == response.headers["request-id"]
    assert_invariants(db)


def test_update_with_if_match(client: TestClient, acme: TenantFixture, db: Database) -> None:
    group = make_group(client, acme.editor.headers, acme.root_id, "Ops")
    url = f"/api/v1/groups/{group['id']}"
    ok = client.patch(
        url,
        json={"name": "Operations", "linkedEntity": {"type": "customer", "ref": "C-1"}},
        headers={**acme.editor.headers, "If-Match": '"1"'},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["linkedEntity"] == {"type": "CUSTOMER", "ref": "C-1"}
    assert ok.headers["etag"] == '"2"'
    stale = client.patch(
        url, json={"name": "Again"}, headers={**acme.editor.headers, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    cleared = client.patch(url, json={"linkedEntity": None}, headers=acme.editor.headers)
    assert cleared.json()["linkedEntity"] is None
    assert client.get(url, headers=acme.viewer.headers).json()["name"] == "Operations"
    assert_invariants(db)


def test_batch_create_with_parents_in_batch_and_paging(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    top = str(uuid.uuid4())
    items = [{"id": top, "name": "Top", "parentId": acme.root_id}]
    items += [{"name": f"child-{i:03}", "parentId": top} for i in range(120)]
    response = client.post(
        "/api/v1/groups:batchCreate", json={"groups": items}, headers=acme.editor.headers
    )
    assert response.status_code == 201, response.text
    assert len(response.json()["items"]) == 121
    seen: list[str] = []
    cursor = None
    while True:
        params = {"parentId": top, "limit": 50}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/api/v1/groups", params=params, headers=acme.viewer.headers).json()
        seen += [item["name"] for item in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == [f"child-{i:03}" for i in range(120)]
    assert_invariants(db)


def test_move_subtree_and_refuse_into_itself(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    a = make_group(client, acme.editor.headers, acme.root_id, "A")
    b = make_group(client, acme.editor.headers, str(a["id"]), "B")
    c = make_group(client, acme.editor.headers, str(b["id"]), "C")
    other = make_group(client, acme.editor.headers, acme.root_id, "Other")
    into_self = client.post(
        f"/api/v1/groups/{a['id']}/move", json={"parentId": c["id"]}, headers=acme.editor.headers
    )
    assert into_self.status_code == 409
    assert into_self.json()["code"] == "move_into_self"
    moved = client.post(
        f"/api/v1/groups/{b['id']}/move",
        json={"parentId": other["id"]},
        headers=acme.editor.headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["parentId"] == other["id"]
    listed = client.get(
        "/api/v1/groups", params={"parentId": str(b["id"])}, headers=acme.viewer.headers
    ).json()
    assert [g["id"] for g in listed["items"]] == [c["id"]]
    assert_invariants(db)


def test_policy_groups_validate_values(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    ok = client.post(
        "/api/v1/groups",
        json={
            "name": "Office IPs",
            "kind": "policy",
            "valueType": "ip_range",
            "values": ["10.0.0.0/8", "10.1.1.1 - 10.1.1.9"],
        },
        headers=acme.editor.headers,
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["values"] == ["10.0.0.0/8", "10.1.1.1-10.1.1.9"]
    bad = client.post(
        "/api/v1/groups",
        json={"name": "Bad", "kind": "policy", "valueType": "ip", "values": ["10.0.0.300"]},
        headers=acme.editor.headers,
    )
    assert bad.status_code == 400
    assert "10.0.0.300" in bad.json()["detail"]
    assert_invariants(db)


def test_values_that_do_not_fit_the_groups_type_conflict_with_it(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    ips = client.post(
        "/api/v1/groups",
        json={"name": "Blocked", "kind": "policy", "valueType": "ip", "values": ["10.0.0.1"]},
        headers=h,
    ).json()
    url = f"/api/v1/groups/{ips['id']}"
    # the request is well formed: the group's valueType, its state, refuses the value
    refused = client.patch(url, json={"values": ["not-an-ip"]}, headers=h)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "values_do_not_fit" and "ip" in refused.json()["detail"]
    # a static group has no values at all
    plain = make_group(client, h, acme.root_id, "Plain")
    no_values = client.patch(f"/api/v1/groups/{plain['id']}", json={"values": ["x"]}, headers=h)
    assert no_values.status_code == 409 and no_values.json()["code"] == "not_a_policy_group"
    # in a create, the type is in the same request: bad input
    bad = client.post(
        "/api/v1/groups",
        json={"name": "B", "kind": "policy", "valueType": "ip", "values": ["nope"]},
        headers=h,
    )
    assert bad.status_code == 400
    assert client.get(url, headers=h).json()["values"] == ["10.0.0.1"]
    assert_invariants(db)
