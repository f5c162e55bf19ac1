"""The ESET device calls a real client makes: the paged list, batchGet, :move, :rename;
and the error details docs/compat/eset.md promises (BadRequest field violations,
PreconditionFailure subjects)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.store.db import Database
from helpers import create
from invariants import assert_invariants
from test_eset import assert_eset_error, eset_group, field_violations, import_devices

PRECONDITION = "type.googleapis.com/google.rpc.PreconditionFailure"


def _subjects(body: dict[str, Any]) -> list[str]:
    return [
        violation["subject"]
        for detail in body["details"]
        if detail["@type"] == PRECONDITION
        for violation in detail["violations"]
    ]


def test_list_devices_pages_through_the_tenant(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    office = eset_group(client, h, acme.root_id, "Office")
    floor = eset_group(client, h, office["uuid"], "Floor")
    made = import_devices(client, h, office["uuid"], 3, []) + import_devices(
        client, h, floor["uuid"], 2, []
    )
    # a user is a directory object too, but not a device; another tenant's devices are apart
    create(
        client,
        h,
        "/api/v1/objects",
        {"kind": "user", "name": "Ann", "loginName": "ann", "homeGroupId": office["uuid"]},
    )
    import_devices(client, globex.editor.headers, globex.root_id, 2, [])
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"pageSize": "2", **({"pageToken": token} if token else {})}
        answer = client.get("/v1/devices", params=params, headers=h)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["totalSize"] == 5
        assert len(body["devices"]) <= 2
        seen += [d["uuid"] for d in body["devices"]]
        pages += 1
        token = body.get("nextPageToken")
        if token is None:
            assert "nextPageToken" not in body
            break
    assert pages == 3
    assert seen == [d["uuid"] for d in made]
    first = client.get("/v1/devices", headers=h).json()
    assert [d["uuid"] for d in first["devices"]] == seen and "nextPageToken" not in first
    assert first["devices"][0] == {**made[0], "activeProducts": []}
    big = client.get("/v1/devices", params={"pageSize": "5000"}, headers=h)
    assert big.status_code == 200 and len(big.json()["devices"]) == 5
    for name, value in (("pageSize", "-1"), ("pageSize", "x"), ("pageToken", "nope")):
        refused = assert_eset_error(client.get("/v1/devices", params={name: value}, headers=h), 400)
        assert field_violations(refused) == [name]
    assert_invariants(db)


def test_batch_get_takes_a_repeated_parameter(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    h = acme.viewer.headers
    made = import_devices(client, acme.editor.headers, acme.root_id, 3, [])
    wanted = [made[2]["uuid"], made[0]["uuid"]]
    answer = client.get(
        "/v1/devices:batchGet", params=[("devicesUuids", u) for u in wanted], headers=h
    )
    assert answer.status_code == 200, answer.text
    assert [d["uuid"] for d in answer.json()["devices"]] == wanted  # in the order asked
    assert set(answer.json()) == {"devices"}
    # all or nothing: one missing id (or another tenant's) is a 404 that names it
    theirs = import_devices(client, globex.editor.headers, globex.root_id, 1, [])[0]["uuid"]
    for stranger in (str(uuid.uuid4()), theirs, acme.root_id):
        missing = client.get(
            "/v1/devices:batchGet",
            params=[("devicesUuids", made[0]["uuid"]), ("devicesUuids", stranger)],
            headers=h,
        )
        assert stranger in assert_eset_error(missing, 404)["message"]
    malformed = client.get("/v1/devices:batchGet", params=[("devicesUuids", "nope")], headers=h)
    assert field_violations(assert_eset_error(malformed, 400)) == ["devicesUuids"]
    none = client.get("/v1/devices:batchGet", headers=h)
    assert field_violations(assert_eset_error(none, 400)) == ["devicesUuids"]
    assert_invariants(db)


def test_move_and_rename_a_device(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    office = eset_group(client, h, acme.root_id, "Office")
    lab = eset_group(client, h, acme.root_id, "Lab")
    device = import_devices(client, h, office["uuid"], 1, [])[0]
    url = f"/v1/devices/{device['uuid']}"

    def post(path: str, body: Any, headers: dict[str, str] = h) -> httpx.Response:
        return client.post(path, json=body, headers=headers)

    moved = post(f"{url}:move", {"newParentUuid": lab["uuid"]})
    assert moved.status_code == 200, moved.text
    assert moved.json()["device"]["groupUuid"] == lab["uuid"]
    renamed = post(f"{url}:rename", {"displayName": "lab-pc"})
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {
        "device": {**device, "displayName": "lab-pc", "groupUuid": lab["uuid"]}
    }
    assert client.get(url, headers=h).json()["device"]["displayName"] == "lab-pc"
    native = client.get(f"/api/v1/objects/{device['uuid']}", headers=h).json()
    assert native["homeGroupId"] == lab["uuid"] and native["name"] == "lab-pc"

    # refusals, each changing nothing
    violated = {
        "newParentUuid": post(f"{url}:move", {"newParentUuid": "x"}),
        "displayName": post(f"{url}:rename", {"displayName": ""}),
        "colour": post(f"{url}:rename", {"displayName": "a", "colour": "red"}),
    }
    for name, answer in violated.items():
        assert field_violations(assert_eset_error(answer, 400)) == [name]
    assert_eset_error(post(f"{url}:move", {"newParentUuid": str(uuid.uuid4())}), 404)
    # user groups and other tenants' groups are not ESET groups
    assert_eset_error(post(f"{url}:move", {"newParentUuid": acme.admin_group_id}), 404)
    assert_eset_error(post(f"{url}:move", {"newParentUuid": globex.root_id}), 404)
    assert_eset_error(post(f"/v1/devices/{uuid.uuid4()}:rename", {"displayName": "a"}), 404)
    assert_eset_error(post("/v1/devices/nope:rename", {"displayName": "a"}), 400)
    assert_eset_error(
        post(f"{url}:rename", {"displayName": "mine"}, headers=globex.editor.headers), 404
    )
    assert_eset_error(post(f"{url}:rename", {"displayName": "b"}, headers=acme.viewer.headers), 403)
    user = create(
        client,
        h,
        "/api/v1/objects",
        {"kind": "user", "name": "Ann", "loginName": "ann", "homeGroupId": office["uuid"]},
    )
    assert_eset_error(post(f"/v1/devices/{user['id']}:rename", {"displayName": "a"}), 404)
    after = client.get(url, headers=h).json()["device"]
    assert after["displayName"] == "lab-pc" and after["groupUuid"] == lab["uuid"]
    assert_invariants(db)


def test_precondition_failures_name_their_group(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    sales = eset_group(client, h, acme.root_id, "Sales")
    child = eset_group(client, h, sales["uuid"], "Inside")
    into_self = client.post(
        f"/v1/groups/{sales['uuid']}:move", json={"newParentUuid": child["uuid"]}, headers=h
    )
    assert _subjects(assert_eset_error(into_self, 400)) == [f"groups/{child['uuid']}"]
    for path, body, group in (
        (f"/v1/groups/{acme.root_id}:rename", {"displayName": "Everything"}, acme.root_id),
        (
            f"/v1/groups/{acme.lost_and_found_id}:move",
            {"newParentUuid": sales["uuid"]},
            acme.lost_and_found_id,
        ),
        (f"/v1/groups/{acme.root_id}:move", {"newParentUuid": sales["uuid"]}, acme.root_id),
    ):
        refused = assert_eset_error(client.post(path, json=body, headers=h), 400)
        assert _subjects(refused) == [f"groups/{group}"], refused
    assert_invariants(db)
