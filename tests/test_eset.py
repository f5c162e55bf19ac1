"""ESET Connect dialect: tokens, authorization, groups, device management, error answers.

The delete and its response-id protocol are in test_eset_delete.py; the scripted session
of the acceptance list in test_eset_session.py. Both import the helpers below.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from starlette.testclient import TestClient

from conftest import PASSWORD, TenantFixture, make_settings
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import Clock, ManualClock, system_clock
from groupd.services import system
from groupd.store.db import Database, transaction
from helpers import build_tree, create, licence
from invariants import assert_invariants

FORM = "application/x-www-form-urlencoded"
UNSPECIFIED = "GROUP_ENTITY_TYPE_UNSPECIFIED"


# helpers shared by the ESET test modules ---------------------------------------------
@contextmanager
def eset_client(
    database_url: str, db: Database, *, clock: Clock = system_clock, **overrides: Any
) -> Iterator[TestClient]:
    """A server on the test database with its own settings (and clock)."""
    context = AppContext.create(make_settings(database_url, **overrides), db=db, clock=clock)
    with TestClient(create_app(context=context)) as client:
        yield client


def assert_request_id(response: httpx.Response) -> None:
    assert str(uuid.UUID(response.headers["request-id"])) == response.headers["request-id"]


def assert_eset_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The code, the request-id header and the google.rpc.Status body."""
    assert response.status_code == status, response.text
    assert_request_id(response)
    body: dict[str, Any] = response.json()
    assert set(body) >= {"code", "message", "details"}
    assert body["code"] == status
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


def field_violations(body: dict[str, Any]) -> list[str]:
    return [
        violation["field"]
        for detail in body["details"]
        if detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for violation in detail["fieldViolations"]
    ]


def token(client: TestClient, username: str, password: str = PASSWORD) -> dict[str, Any]:
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def eset_group(
    client: TestClient, headers: dict[str, str], parent: str, name: str, **extra: Any
) -> dict[str, Any]:
    response = client.post(
        "/v1/groups",
        json={"group": {"displayName": name, "parentGroupUuid": parent, **extra}},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert_request_id(response)
    return response.json()["group"]  # type: ignore[no-any-return]


def import_devices(
    client: TestClient, headers: dict[str, str], group: str, count: int, products: list[Any]
) -> list[dict[str, Any]]:
    devices = [
        {
            "displayName": f"pc-{uuid.uuid4().hex[:10]}",
            "groupUuid": group,
            "activeProducts": products,
        }
        for _ in range(count)
    ]
    response = client.post("/v1/devices:batchImport", json={"devices": devices}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["devices"]  # type: ignore[no-any-return]


def used_units(client: TestClient, headers: dict[str, str], licence_id: str) -> int:
    return int(client.get(f"/api/v1/licenses/{licence_id}", headers=headers).json()["usedUnits"])


# tokens ------------------------------------------------------------------------------
def test_password_and_refresh_grants(client: TestClient, acme: TenantFixture, db: Database) -> None:
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": acme.editor.username, "password": PASSWORD},
    )
    assert response.status_code == 200, response.text
    assert_request_id(response)
    assert response.headers["cache-control"] == "no-store"
    pair = response.json()
    assert set(pair) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert pair["token_type"] == "Bearer" and pair["expires_in"] == 3600
    listed = client.get("/v1/device_groups", headers=bearer(pair["access_token"]))
    assert listed.status_code == 200, listed.text
    refreshed = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    fresh = refreshed.json()
    assert fresh["access_token"] != pair["access_token"]
    assert client.get("/v1/device_groups", headers=bearer(fresh["access_token"])).status_code == 200
    # a refresh token is spent once it was used
    again = client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    )
    body = assert_eset_error(again, 400)
    assert body["error"] == "invalid_grant"
    assert_invariants(db)


def test_token_request_errors(client: TestClient, acme: TenantFixture, db: Database) -> None:
    as_json = client.post(
        "/oauth/token",
        json={"grant_type": "password", "username": acme.editor.username, "password": PASSWORD},
    )
    body = assert_eset_error(as_json, 415)
    assert body["error"] == "invalid_request"
    unknown = client.post("/oauth/token", data={"grant_type": "client_credentials"})
    body = assert_eset_error(unknown, 400)
    assert body["error"] == "unsupported_grant_type"
    assert field_violations(body) == ["grant_type"]
    missing = client.post(
        "/oauth/token", data={"grant_type": "password", "username": acme.editor.username}
    )
    body = assert_eset_error(missing, 400)
    assert body["error"] == "invalid_request"
    assert field_violations(body) == ["password"]
    no_grant = client.post("/oauth/token", data={"username": "x"})
    assert field_violations(assert_eset_error(no_grant, 400)) == ["grant_type"]
    wrong = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "username": acme.editor.username,
            "password": "not the password",
        },
    )
    body = assert_eset_error(wrong, 400)
    assert body["error"] == "invalid_grant"
    assert body["error_description"] == body["message"]
    nobody = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "nobody@nowhere", "password": "whatever123"},
    )
    assert assert_eset_error(nobody, 400)["error"] == "invalid_grant"
    assert_invariants(db)


def test_failed_logins_count_and_lock_out(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    with eset_client(database_url, db, login_max_failures=2) as client:
        form = {"grant_type": "password", "username": acme.editor.username, "password": "wrong!!!"}
        assert client.post("/oauth/token", data=form).status_code == 400
        locked = client.post("/oauth/token", data=form)
        body = assert_eset_error(locked, 400)
        assert body["error"] == "invalid_grant" and "locked" in body["message"]
        assert int(locked.headers["retry-after"]) > 0
        # even the right password waits out the lock-out
        right = client.post("/oauth/token", data={**form, "password": PASSWORD})
        assert assert_eset_error(right, 400)["error"] == "invalid_grant"
    assert_invariants(db)


# authorization -----------------------------------------------------------------------
def test_expired_or_unknown_tokens_are_401(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    clock = ManualClock()
    with eset_client(database_url, db, clock=clock) as client:
        pair = token(client, acme.editor.username)
        assert (
            client.get("/v1/device_groups", headers=bearer(pair["access_token"])).status_code == 200
        )
        clock.advance(3601)
        expired = client.get("/v1/device_groups", headers=bearer(pair["access_token"]))
        body = assert_eset_error(expired, 401)
        assert "expired" in body["message"]
        assert expired.headers["www-authenticate"].startswith("Bearer")
        unknown = client.delete(
            f"/v1/groups/{acme.root_id}", headers=bearer("gda_not-a-token-at-all")
        )
        assert_eset_error(unknown, 401)
        refresh_as_bearer = client.get("/v1/device_groups", headers=bearer(pair["refresh_token"]))
        assert_eset_error(refresh_as_bearer, 401)
        # the refresh token outlives the access token
        renewed = client.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]},
        )
        assert renewed.status_code == 200
        assert (
            client.get(
                "/v1/device_groups", headers=bearer(renewed.json()["access_token"])
            ).status_code
            == 200
        )
    assert_invariants(db)


def test_missing_or_malformed_authorization_is_400(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    group = eset_group(client, acme.editor.headers, acme.root_id, "Kept")
    basic = acme.editor.basic
    for headers in (
        {},
        {"Authorization": ""},
        basic,
        {"Authorization": "Bearer"},
        {"Authorization": f"Token {acme.editor.token}"},
        {"Authorization": f"Bearer {acme.editor.token} extra"},
    ):
        for response in (
            client.delete(f"/v1/groups/{group['uuid']}", headers=headers),
            client.get("/v1/device_groups", headers=headers),
        ):
            body = assert_eset_error(response, 400)
            assert field_violations(body) == ["Authorization"]
            assert "authorization" in body["message"]
    assert (
        client.get(f"/api/v1/groups/{group['uuid']}", headers=acme.viewer.headers).status_code
        == 200
    )
    assert_invariants(db)


def test_missing_role_is_403(client: TestClient, acme: TenantFixture, db: Database) -> None:
    viewer = bearer(token(client, acme.viewer.username)["access_token"])
    assert client.get("/v1/device_groups", headers=viewer).status_code == 200
    created = client.post(
        "/v1/groups",
        headers=viewer,
        json={"group": {"displayName": "Nope", "parentGroupUuid": acme.root_id}},
    )
    assert "editor" in assert_eset_error(created, 403)["message"]
    group = eset_group(client, acme.editor.headers, acme.root_id, "Still here")
    for response in (
        client.delete(f"/v1/groups/{group['uuid']}", headers=viewer),
        client.post(
            f"/v1/groups/{group['uuid']}:rename", headers=viewer, json={"displayName": "Renamed"}
        ),
        client.post("/v1/devices:batchImport", headers=viewer, json={"devices": []}),
    ):
        assert_eset_error(response, 403)
    assert (
        client.get(f"/api/v1/groups/{group['uuid']}", headers=acme.viewer.headers).json()["name"]
        == "Still here"
    )
    assert_invariants(db)


def test_rate_limit_is_429(database_url: str, db: Database, acme: TenantFixture) -> None:
    with eset_client(
        database_url, db, rate_limit_enabled=True, rate_limit="3 per minute"
    ) as client:
        for _ in range(3):
            assert client.get("/v1/device_groups", headers=acme.viewer.headers).status_code == 200
        limited = client.get("/v1/device_groups", headers=acme.viewer.headers)
        body = assert_eset_error(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.RetryInfo"
        # the count is per credential: another caller is not throttled by this one
        assert client.get("/v1/device_groups", headers=acme.editor.headers).status_code == 200
        assert_eset_error(
            client.delete(f"/v1/groups/{acme.root_id}", headers=acme.viewer.headers), 429
        )
    assert_invariants(db)


def test_maintenance_is_503(client: TestClient, acme: TenantFixture, db: Database) -> None:
    group = eset_group(client, acme.editor.headers, acme.root_id, "Maintained")
    with transaction(db) as uow:
        system.set_maintenance(uow, enabled=True, message="upgrading", now=system_clock())
    for response in (
        client.get("/v1/device_groups", headers=acme.viewer.headers),
        client.delete(f"/v1/groups/{group['uuid']}", headers=acme.editor.headers),
        client.post(
            "/oauth/token",
            data={"grant_type": "password", "username": acme.editor.username, "password": PASSWORD},
        ),
    ):
        body = assert_eset_error(response, 503)
        assert body["message"] == "upgrading"
        assert response.headers["retry-after"]
    with transaction(db) as uow:
        system.set_maintenance(uow, enabled=False, message="", now=system_clock())
    assert (
        client.get(
            f"/v1/device_groups/{group['uuid']}/devices", headers=acme.viewer.headers
        ).status_code
        == 200
    )
    assert_invariants(db)


# groups ------------------------------------------------------------------------------
def test_create_move_rename(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    chosen, owner = str(uuid.uuid4()), str(uuid.uuid4())
    customers = eset_group(client, h, acme.root_id, "Customers", description="all of them")
    assert customers == {
        "uuid": customers["uuid"],
        "displayName": "Customers",
        "description": "all of them",
        "parentGroupUuid": acme.root_id,
        "linkedEntityType": UNSPECIFIED,
    }
    contoso = eset_group(
        client,
        h,
        customers["uuid"],
        "Contoso",
        uuid=chosen,
        ownerUuid=owner,
        linkedEntityType="CUSTOMER",
    )
    assert contoso["uuid"] == chosen and contoso["ownerUuid"] == owner
    assert contoso["linkedEntityType"] == "CUSTOMER"
    msp = eset_group(client, h, acme.root_id, "MSP", linkedEntityType="GROUP_ENTITY_TYPE_MSP")
    assert msp["linkedEntityType"] == "MSP"
    # the same group through the native API: one set of services underneath
    native = client.get(f"/api/v1/groups/{chosen}", headers=h).json()
    assert native["linkedEntity"] == {"type": "CUSTOMER", "ref": None}
    assert native["agentId"] == owner and native["parentId"] == customers["uuid"]
    plain = client.get(f"/api/v1/groups/{customers['uuid']}", headers=h).json()
    assert plain["linkedEntity"] is None

    moved = client.post(f"/v1/groups/{chosen}:move", json={"newParentUuid": msp["uuid"]}, headers=h)
    assert moved.status_code == 200, moved.text
    assert_request_id(moved)
    assert moved.json()["group"]["parentGroupUuid"] == msp["uuid"]
    renamed = client.post(
        f"/v1/groups/{chosen}:rename", json={"displayName": "Contoso Ltd"}, headers=h
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["group"]["displayName"] == "Contoso Ltd"
    assert renamed.json()["group"]["parentGroupUuid"] == msp["uuid"]
    assert client.get(f"/api/v1/groups/{chosen}", headers=h).json()["name"] == "Contoso Ltd"
    assert_invariants(db)


def test_group_errors(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    sales = eset_group(client, h, acme.root_id, "Sales")
    child = eset_group(client, h, sales["uuid"], "Inside")

    def post(path: str, body: dict[str, Any]) -> httpx.Response:
        return client.post(path, json=body, headers=h)

    def create_body(**fields: Any) -> dict[str, Any]:
        return {"group": {"displayName": "X", "parentGroupUuid": acme.root_id, **fields}}

    clash = post("/v1/groups", create_body(displayName="Sales"))
    assert "Sales" in assert_eset_error(clash, 409)["message"]
    taken = post("/v1/groups", create_body(uuid=sales["uuid"]))
    assert_eset_error(taken, 409)
    cases = [
        (create_body(linkedEntityType="PARTNER"), "group.linkedEntityType"),
        (create_body(parentGroupUuid="not-a-uuid"), "group.parentGroupUuid"),
        (create_body(uuid="12"), "uuid"),
        (create_body(ownerUuid="me"), "group.ownerUuid"),
        (create_body(displayName=" padded "), "group.displayName"),
    ]
    for body, violated in cases:
        assert field_violations(assert_eset_error(post("/v1/groups", body), 400)) == [violated]
    for body, named in (
        ({"group": {"displayName": "X"}}, "parentGroupUuid"),
        ({"displayName": "X"}, "displayName"),
        ({"group": {**create_body()["group"], "colour": "red"}}, "colour"),
    ):
        assert named in assert_eset_error(post("/v1/groups", body), 400)["message"]
    not_json = client.post(
        "/v1/groups", content=b"displayName=X", headers={**h, "Content-Type": FORM}
    )
    assert_eset_error(not_json, 415)
    unknown_parent = post("/v1/groups", create_body(parentGroupUuid=str(uuid.uuid4())))
    assert_eset_error(unknown_parent, 404)
    foreign_parent = post("/v1/groups", create_body(parentGroupUuid=globex.root_id))
    assert_eset_error(foreign_parent, 404)
    # user groups are not ESET groups
    assert_eset_error(
        post(f"/v1/groups/{acme.admin_group_id}:rename", {"displayName": "Root"}), 404
    )
    into_self = post(f"/v1/groups/{sales['uuid']}:move", {"newParentUuid": child["uuid"]})
    body = assert_eset_error(into_self, 400)
    assert body["details"][0]["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure"
    bad_parent = post(f"/v1/groups/{sales['uuid']}:move", {"newParentUuid": "x"})
    assert field_violations(assert_eset_error(bad_parent, 400)) == ["newParentUuid"]
    assert_eset_error(post(f"/v1/groups/{acme.root_id}:rename", {"displayName": "Everything"}), 400)
    assert_eset_error(
        post(f"/v1/groups/{acme.lost_and_found_id}:move", {"newParentUuid": sales["uuid"]}), 400
    )
    empty_name = post(f"/v1/groups/{sales['uuid']}:rename", {"displayName": ""})
    assert field_violations(assert_eset_error(empty_name, 400)) == ["displayName"]
    assert_eset_error(post(f"/v1/groups/{uuid.uuid4()}:rename", {"displayName": "Y"}), 404)
    assert_eset_error(post("/v1/groups/nope:rename", {"displayName": "Y"}), 400)
    # another tenant's group does not exist for this caller
    gh = globex.editor.headers
    assert_eset_error(
        client.post(f"/v1/groups/{sales['uuid']}:rename", headers=gh, json={"displayName": "Mine"}),
        404,
    )
    assert_eset_error(
        client.post(
            f"/v1/groups/{sales['uuid']}:move", headers=gh, json={"newParentUuid": globex.root_id}
        ),
        404,
    )
    native = client.get(f"/api/v1/groups/{sales['uuid']}", headers=h).json()
    assert native["name"] == "Sales" and native["parentId"] == acme.root_id
    assert_invariants(db)


# device management -------------------------------------------------------------------
def test_device_groups_paging(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    h = acme.viewer.headers
    linked = eset_group(client, acme.editor.headers, acme.root_id, "Site", linkedEntityType="SITE")
    first = client.get("/v1/device_groups", headers=h)
    assert first.status_code == 200
    assert_request_id(first)
    page = first.json()
    assert "nextPageToken" not in page  # one page holds every group
    by_name = {g["displayName"]: g for g in page["deviceGroups"]}
    assert set(by_name) == {"All", "Lost & found", "Site"}  # no user group "Admin"
    assert by_name["Site"] == {
        "uuid": linked["uuid"],
        "displayName": "Site",
        "parentGroupUuid": acme.root_id,
        "linkedEntityType": "SITE",
        "isSecurityGroup": False,
        "etag": '"1"',
    }
    assert "parentGroupUuid" not in by_name["All"]
    build_tree(client, acme.editor.headers, acme.root_id, fanout=10, depth=3)  # 1,110 groups
    seen: list[str] = []
    token_: str | None = None
    pages = 0
    while True:
        params = {"pageSize": "400", **({"pageToken": token_} if token_ else {})}
        body = client.get("/v1/device_groups", params=params, headers=h).json()
        seen.extend(g["uuid"] for g in body["deviceGroups"])
        pages += 1
        token_ = body.get("nextPageToken")
        if token_ is None:
            break
        assert token_
    assert pages == 3 and len(seen) == len(set(seen)) == 1113
    assert len(client.get("/v1/device_groups", headers=h).json()["deviceGroups"]) == 50
    lowered = client.get("/v1/device_groups", params={"pageSize": "5000"}, headers=h).json()
    assert len(lowered["deviceGroups"]) == 1000 and lowered["nextPageToken"]
    zero = client.get("/v1/device_groups", params={"pageSize": "0"}, headers=h).json()
    assert len(zero["deviceGroups"]) == 50
    for params, violated in (
        ({"pageSize": "-1"}, "pageSize"),
        ({"pageSize": "ten"}, "pageSize"),
        ({"pageToken": "garbage!"}, "pageToken"),
    ):
        response = client.get("/v1/device_groups", params=params, headers=h)
        assert field_violations(assert_eset_error(response, 400)) == [violated]
    other = client.get("/v1/device_groups", headers=globex.viewer.headers).json()
    assert {g["displayName"] for g in other["deviceGroups"]} == {"All", "Lost & found"}
    assert_invariants(db)


def test_devices_import_list_get(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    seats = licence(client, h, "ESET PROTECT Entry", 100)
    mail = licence(client, h, "ESET Mail Security", 50, unit_kind="user")
    office = eset_group(client, h, acme.root_id, "Office")
    floor = eset_group(client, h, office["uuid"], "Floor 1")
    chosen = str(uuid.uuid4())
    response = client.post(
        "/v1/devices:batchImport",
        headers=h,
        json={
            "devices": [
                {
                    "displayName": "mail-01",
                    "groupUuid": office["uuid"],
                    "uuid": chosen,
                    "activeProducts": [
                        "ESET PROTECT Entry",
                        {"product": "ESET Mail Security", "units": 20},
                    ],
                },
                {"displayName": "pc-01", "groupUuid": floor["uuid"]},
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert_request_id(response)
    imported = response.json()["devices"]
    assert imported[0] == {
        "uuid": chosen,
        "displayName": "mail-01",
        "groupUuid": office["uuid"],
        "activeProducts": [
            {"product": "ESET Mail Security", "units": 20},
            {"product": "ESET PROTECT Entry", "units": 1},
        ],
    }
    assert imported[1]["activeProducts"] == []
    import_devices(client, h, floor["uuid"], 7, [{"product": "ESET PROTECT Entry"}])
    assert used_units(client, h, seats["id"]) == 8
    assert used_units(client, h, mail["id"]) == 20

    got = client.get(f"/v1/devices/{chosen}", headers=acme.viewer.headers)
    assert got.status_code == 200
    assert got.json() == {"device": imported[0]}
    direct = client.get(
        f"/v1/device_groups/{office['uuid']}/devices", headers=acme.viewer.headers
    ).json()
    assert direct["totalSize"] == 1 and "nextPageToken" not in direct
    assert [d["uuid"] for d in direct["devices"]] == [chosen]
    collected: list[dict[str, Any]] = []
    params: dict[str, str] = {"recurseSubgroups": "true", "pageSize": "3"}
    while True:
        page = client.get(
            f"/v1/device_groups/{office['uuid']}/devices",
            params=params,
            headers=acme.viewer.headers,
        ).json()
        assert page["totalSize"] == 9
        collected.extend(page["devices"])
        if "nextPageToken" not in page:
            break
        params["pageToken"] = page["nextPageToken"]
    assert len({d["uuid"] for d in collected}) == 9
    # a user is an object, not a device
    person = create(
        client,
        h,
        "/api/v1/objects",
        {"kind": "user", "name": "ann", "loginName": "ann", "homeGroupId": office["uuid"]},
    )
    assert_eset_error(client.get(f"/v1/devices/{person['id']}", headers=h), 404)
    assert (
        client.get(f"/v1/device_groups/{office['uuid']}/devices", headers=h).json()["totalSize"]
        == 1
    )
    assert_eset_error(client.get(f"/v1/devices/{chosen}", headers=globex.viewer.headers), 404)
    assert_eset_error(
        client.get(f"/v1/device_groups/{office['uuid']}/devices", headers=globex.viewer.headers),
        404,
    )
    assert_eset_error(
        client.get(f"/v1/device_groups/{acme.admin_group_id}/devices", headers=h), 404
    )
    assert_eset_error(client.get("/v1/devices/xyz", headers=h), 400)
    assert_eset_error(
        client.get(
            f"/v1/device_groups/{office['uuid']}/devices",
            params={"recurseSubgroups": "perhaps"},
            headers=h,
        ),
        400,
    )
    assert_invariants(db)


def test_batch_import_refusals_change_nothing(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    seats = licence(client, h, "EP", 10)
    group = eset_group(client, h, acme.root_id, "Imports")

    def devices(count: int, **extra: Any) -> list[dict[str, Any]]:
        return [{"displayName": f"d{i}", "groupUuid": group["uuid"], **extra} for i in range(count)]

    def batch(items: list[dict[str, Any]]) -> httpx.Response:
        return client.post("/v1/devices:batchImport", json={"devices": items}, headers=h)

    too_many = batch(devices(1001))
    assert field_violations(assert_eset_error(too_many, 400)) == ["devices"]
    assert "1000" in too_many.json()["message"]
    assert_eset_error(batch([]), 400)
    short = batch(devices(11, activeProducts=["EP"]))
    body = assert_eset_error(short, 400)
    assert "free units" in body["message"]
    assert body["details"][0]["violations"][0]["type"] == "INSUFFICIENT_UNITS"
    assert_eset_error(batch(devices(2, activeProducts=["No Such Product"])), 404)
    assert_eset_error(batch(devices(1, groupUuid=str(uuid.uuid4()))), 404)
    bad_group = batch(devices(1, groupUuid="nope"))
    assert field_violations(assert_eset_error(bad_group, 400)) == ["devices.groupUuid"]
    zero_units = batch(devices(1, activeProducts=[{"product": "EP", "units": 0}]))
    assert_eset_error(zero_units, 400)
    duplicate = batch(devices(1, activeProducts=["EP", "EP"]))
    assert_eset_error(duplicate, 409)
    assert used_units(client, h, seats["id"]) == 0
    listed = client.get(f"/v1/device_groups/{group['uuid']}/devices", headers=h).json()
    assert listed == {"devices": [], "totalSize": 0}
    assert len(import_devices(client, h, group["uuid"], 1000, [])) == 1000
    assert_invariants(db)


# the dialect is a translator ---------------------------------------------------------
def test_dialect_reaches_data_only_through_services() -> None:
    """No query, model or tree rule in the ESET package: it imports services, not the
    store (the unit of work type aside, which async handlers pass to services)."""
    import ast
    from pathlib import Path

    import groupd.api.eset as package

    imported: set[str] = set()
    for path in Path(package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
    assert "groupd.services.deletion" in imported and "groupd.services.groups" in imported
    forbidden = {
        name
        for name in imported
        if name.startswith(("sqlalchemy", "groupd.store"))
        and name not in ("groupd.store.db", "groupd.store.db.UnitOfWork")
    }
    assert not forbidden


def test_both_faces_apply_the_same_guard(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    top = eset_group(client, h, acme.root_id, "Partners")
    msp = eset_group(client, h, top["uuid"], "Fabrikam", linkedEntityType="MSP")
    native = client.delete(f"/api/v1/groups/{top['uuid']}", headers=h)
    assert native.status_code == 409 and native.json()["code"] == "linked_entity"
    eset = assert_eset_error(client.delete(f"/v1/groups/{top['uuid']}", headers=h), 400)
    assert [b["groupId"] for b in native.json()["blockers"]] == [msp["uuid"]]
    assert [v["subject"] for v in eset["details"][0]["violations"]] == [f"groups/{msp['uuid']}"]
    assert eset["message"] == native.json()["detail"]
    assert_invariants(db)
