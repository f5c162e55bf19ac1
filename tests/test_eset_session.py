"""The acceptance session: an ESET client script, end to end, through this API alone
(licences excepted: ESET has no call that creates a unit pool, so the native API does)."""

from __future__ import annotations

import time
from typing import Any

from starlette.testclient import TestClient

from conftest import PASSWORD, TenantFixture
from groupd.store.db import Database
from helpers import licence
from invariants import assert_invariants
from test_eset import assert_eset_error, bearer, eset_client, eset_group, import_devices
from test_eset_delete import assert_ok, assert_pending, delete

SEATS = "ESET PROTECT Complete"
MAIL = "ESET Mail Security"


def free_units(client: TestClient, headers: dict[str, str], licence_id: str) -> int:
    body = client.get(f"/api/v1/licenses/{licence_id}", headers=headers).json()
    return int(body["totalUnits"]) - int(body["usedUnits"])


def devices_in(client: TestClient, headers: dict[str, str], group: str) -> int:
    response = client.get(
        f"/v1/device_groups/{group}/devices",
        params={"recurseSubgroups": "true", "pageSize": "1"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return int(response.json()["totalSize"])


def test_scripted_eset_session(database_url: str, db: Database, acme: TenantFixture) -> None:
    admin = acme.admin.headers
    with eset_client(database_url, db, eset_wait_seconds=30) as client:
        seats = licence(client, admin, SEATS, 5000)
        mail = licence(client, admin, MAIL, 10_000, unit_kind="user")
        # 1. a token, as an ESET client gets one
        response = client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": acme.editor.username, "password": PASSWORD},
        )
        assert response.status_code == 200, response.text
        h = bearer(response.json()["access_token"])

        # 2. a three-level tree holding a CUSTOMER-linked group
        tree: dict[str, dict[str, Any]] = {}
        for top, middle, leaf, linked in (
            ("Customers", "Contoso", "Contoso HQ", "CUSTOMER"),
            ("Lab", "Lab East", "Rack 1", None),
            ("Branch", "Branch North", "Shop 7", None),
        ):
            tree[top] = eset_group(client, h, acme.root_id, top)
            extra = {"linkedEntityType": linked} if linked else {}
            tree[middle] = eset_group(client, h, tree[top]["uuid"], middle, **extra)
            tree[leaf] = eset_group(client, h, tree[middle]["uuid"], leaf)
        assert tree["Contoso"]["linkedEntityType"] == "CUSTOMER"

        # 3. 2,000 devices with products, in two calls of 1,000
        products: list[Any] = [SEATS]
        with_mail: list[Any] = [SEATS, {"product": MAIL, "units": 10}]
        first = import_devices(client, h, tree["Rack 1"]["uuid"], 600, with_mail)
        first += import_devices(client, h, tree["Lab East"]["uuid"], 400, products)
        assert len(first) == 1000
        assert (
            len(
                client.post(
                    "/v1/devices:batchImport",
                    headers=h,
                    json={
                        "devices": [
                            {
                                "displayName": f"pos-{i}",
                                "groupUuid": tree["Shop 7" if i % 2 else "Contoso HQ"]["uuid"],
                                "activeProducts": products,
                            }
                            for i in range(1000)
                        ]
                    },
                ).json()["devices"]
            )
            == 1000
        )
        assert free_units(client, admin, seats["id"]) == 3000
        assert free_units(client, admin, mail["id"]) == 4000
        assert devices_in(client, h, acme.root_id) == 2000

        # 4. the linked customer blocks the delete of its subtree
        refused = delete(client, h, tree["Customers"]["uuid"], release=True)
        assert "Contoso" in assert_eset_error(refused, 400)["message"]
        assert devices_in(client, h, tree["Customers"]["uuid"]) == 500

        # 5. the lab goes, and every unit its devices held comes back exactly
        assert_ok(delete(client, h, tree["Lab"]["uuid"], release=True))
        assert free_units(client, admin, seats["id"]) == 4000
        assert free_units(client, admin, mail["id"]) == 10_000
        assert devices_in(client, h, acme.root_id) == 1000
        assert_eset_error(client.get(f"/v1/devices/{first[0]['uuid']}", headers=h), 404)
        names = {
            g["displayName"]
            for g in client.get("/v1/device_groups", headers=h).json()["deviceGroups"]
        }
        assert names.isdisjoint({"Lab", "Lab East", "Rack 1"})

    # 6. a server with a tiny wait budget: 202, then resends with response-id until 200
    with eset_client(database_url, db, eset_wait_seconds=0) as client:
        worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
        worker.stop()  # hold phase 2 so the first answer is surely the 202
        branch = tree["Branch"]["uuid"]
        response_id = assert_pending(delete(client, h, branch, release=True))
        assert response_id == assert_pending(
            delete(client, h, branch, release=True, response_id=response_id)
        )
        worker.start()
        deadline = time.monotonic() + 30
        while True:
            resent = delete(client, h, branch, release=True, response_id=response_id)
            if resent.status_code != 202:
                break
            assert time.monotonic() < deadline, "the delete did not finish"
            time.sleep(0.05)  # a client polls; ESET's own client waits 2 s between resends
        assert_ok(resent)
        assert_eset_error(delete(client, h, branch, release=True, response_id=response_id), 404)
        assert free_units(client, admin, seats["id"]) == 4500
        assert devices_in(client, h, acme.root_id) == 500
    assert_invariants(db)
