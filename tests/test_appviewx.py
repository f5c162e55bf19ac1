"""AppViewX user groups: the seed's delete, add/search/assign, sessions, service tokens,
gwsource and gwkey, lock-out and idle expiry on a hand-moved clock."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import PASSWORD, Caller, TenantFixture, make_settings
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import ManualClock, system_clock
from groupd.services import accounts
from groupd.store.db import Database, transaction
from helpers import create, user
from invariants import assert_invariants

GW = "gwsource=external"
SAMPLE_BODY = {
    "response": "UserGroup deleted successfully",
    "message": "UserGroup deleted successfully",
    "appStatusCode": None,
    "tags": None,
    "headers": None,
}
ENVELOPE_KEYS = ["response", "message", "appStatusCode", "tags", "headers"]


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with a small cost for these tests: still the real hash and check, but each
    costs a millisecond instead of 0.2 s of CPU, and this file logs in a lot (autouse, so
    it is in place before the tenant fixtures create their accounts)."""
    monkeypatch.setattr(
        accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    )


# helpers ------------------------------------------------------------------------------
def login(
    client: TestClient, username: str, password: str = PASSWORD, query: str = GW
) -> httpx.Response:
    return client.post(
        f"/avxapi/login?{query}", json={}, headers={"username": username, "password": password}
    )


def session_of(client: TestClient, username: str) -> dict[str, str]:
    response = login(client, username)
    assert response.status_code == 200, response.text
    return {"sessionId": response.json()["response"]["sessionId"]}


def session_for(db: Database, caller: Caller) -> dict[str, str]:
    """A session opened straight through the service, skipping the login's argon2 check
    (the login itself is tested below): tests that only need a session stay fast."""
    with transaction(db) as uow:
        account = accounts.get_account(uow, username=caller.username)
        session = accounts.open_session(
            uow, account=account, now=system_clock(), idle_timeout_seconds=900
        )
    return {"sessionId": session.secret}


def add_group(
    client: TestClient, auth: dict[str, str], name: str, description: str = "", query: str = GW
) -> httpx.Response:
    return client.post(
        f"/avxapi/usergroup?{query}",
        headers=auth,
        json={"payload": {"name": name, "description": description}},
    )


def search(
    client: TestClient, auth: dict[str, str], query: str = GW, **payload: Any
) -> httpx.Response:
    return client.post(f"/avxapi/usergroup-search?{query}", headers=auth, json={"payload": payload})


def assign(
    client: TestClient, auth: dict[str, str], payload: dict[str, Any], query: str = GW
) -> httpx.Response:
    return client.put(
        f"/avxapi/user-updateUsergroups?{query}", headers=auth, json={"payload": payload}
    )


def delete(client: TestClient, auth: dict[str, str], name: str, query: str = GW) -> httpx.Response:
    return client.delete(f"/avxapi/userGroup?userGroupName={name};{query}", headers=auth)


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def service_token(
    client: TestClient, username: str, password: str = PASSWORD, query: str = GW
) -> httpx.Response:
    return client.post(
        f"/avxapi/acctmgmt-get-service-token?{query}",
        headers=basic(username, password),
        data={"grant_type": "client_credentials"},
    )


def fails(response: httpx.Response, status: int, code: str, message: str | None = None) -> None:
    """The answer is the envelope with this status, appStatusCode and (exact) message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ENVELOPE_KEYS
    assert body["appStatusCode"] == code, body
    if message is not None:
        assert body["message"] == message, body
    assert body["tags"]["requestId"] == response.headers["request-id"]


def table_counts(db: Database) -> dict[str, int]:
    tables = ("groups", "objects", "memberships", "operations", "audit_events")
    with db.engine.connect() as connection:
        counts = {
            t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables
        }
        counts["not_live"] = connection.execute(
            text("SELECT COUNT(*) FROM groups WHERE state <> 'live'")
        ).scalar_one()
    return counts


def audit_sources(db: Database, action: str) -> list[str | None]:
    """The sources of the events of ``action`` made by requests (the "system" actor's,
    such as the creation of a tenant's built-in groups, come from no request)."""
    with db.engine.connect() as connection:
        return [
            row[0]
            for row in connection.execute(
                text(
                    "SELECT source FROM audit_events WHERE action = :a AND actor <> 'system' "
                    "ORDER BY id"
                ),
                {"a": action},
            )
        ]


def user_group_id(client: TestClient, tenant: TenantFixture, name: str) -> str:
    items = client.get(
        "/api/v1/groups", params={"kind": "user", "name": name}, headers=tenant.editor.headers
    ).json()["items"]
    assert len(items) == 1, items
    return str(items[0]["id"])


def member_logins(client: TestClient, tenant: TenantFixture, group: str) -> list[str]:
    gid = user_group_id(client, tenant, group)
    items = client.get(f"/api/v1/groups/{gid}/members", headers=tenant.editor.headers)
    return sorted(item["loginName"] for item in items.json()["items"])


@pytest.fixture
def people(client: TestClient, acme: TenantFixture) -> dict[str, dict[str, Any]]:
    """A static group with two users: alice (active) and bob (inactive)."""
    home = create(
        client, acme.editor.headers, "/api/v1/groups", {"name": "People", "parentId": acme.root_id}
    )
    return {
        "alice": user(client, acme.editor.headers, home["id"], "alice"),
        "bob": user(client, acme.editor.headers, home["id"], "bob", status="inactive"),
    }


# the seed ------------------------------------------------------------------------------
def test_seed_sample_request_answers_the_sample_body(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    auth = session_of(client, acme.editor.username)
    added = add_group(client, auth, "group_1", "the seed's group", query="gwsource=web")
    assert added.status_code == 201, added.text
    assert added.json() == {
        "response": "Usergroup added successfully",
        "message": "Usergroup added successfully",
        "appStatusCode": None,
        "tags": None,
        "headers": None,
    }
    response = client.delete(
        "/avxapi/userGroup?userGroupName=group_1;gwsource=external", headers=auth
    )
    assert response.status_code == 200, response.text
    assert response.json() == SAMPLE_BODY
    assert list(response.json()) == ENVELOPE_KEYS
    fails(
        search(client, auth, filterValue="group_1"),
        404,
        "NO_RECORDS_FOUND",
        "No matching records found.",
    )
    # gwsource is the audit events' source, through phase 2's closing event too.
    assert audit_sources(db, "group.create") == ["web"]
    assert audit_sources(db, "group.delete.accepted") == ["external"]
    assert audit_sources(db, "group.delete.succeeded") == ["external"]
    # The seed's URL as printed has a blank before the name; '&' separates as well as ';'.
    assert add_group(client, auth, "group_2").status_code == 201
    spaced = client.delete(
        "/avxapi/userGroup?userGroupName=%20group_2&gwsource=external", headers=auth
    )
    assert spaced.json() == SAMPLE_BODY
    assert_invariants(db)


def test_delete_of_an_unknown_group_is_404(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    auth = session_for(db, acme.editor)
    before = table_counts(db)
    fails(delete(client, auth, "group_1"), 404, "ACCT_USERGROUP_030", "UserGroup doesnot exist.")
    fails(
        client.delete(f"/avxapi/userGroup?{GW}", headers=auth),
        400,
        "ACCT_USERGROUP_001",
        "Mandatory field 'userGroupName' is missing or empty.",
    )
    fails(
        client.delete(f"/avxapi/userGroup?userGroupName=a;userGroupName=b;{GW}", headers=auth),
        400,
        "INVALID_REQUEST",
    )
    assert table_counts(db) == before
    assert_invariants(db)


def test_delete_by_a_viewer_is_403(client: TestClient, acme: TenantFixture, db: Database) -> None:
    assert add_group(client, session_for(db, acme.editor), "group_1").status_code == 201
    viewer = session_for(db, acme.viewer)
    before = table_counts(db)
    fails(
        delete(client, viewer, "group_1"),
        403,
        "AVX_GW_005",
        "User does not have access to the targeted API",
    )
    assert table_counts(db) == before
    assert search(client, viewer, filterValue="group_1").json()["response"]["totalRecords"] == 1
    assert_invariants(db)


def test_delete_of_a_group_with_active_users_is_400(
    client: TestClient, acme: TenantFixture, db: Database, people: dict[str, dict[str, Any]]
) -> None:
    auth = session_for(db, acme.editor)
    assert add_group(client, auth, "team").status_code == 201
    for login_name in ("alice", "bob"):
        assert (
            assign(
                client, auth, {"loginName": login_name, "assignUserGroups": ["team"]}
            ).status_code
            == 200
        )
    before = table_counts(db)
    refused = delete(client, auth, "team")
    fails(refused, 400, "RBAC_US_019", "Usergroup(s) which have active user(s) cannot be deleted")
    blockers = refused.json()["tags"]["blockers"]
    assert [(b["rule"], b["groupName"], b["activeMembers"]) for b in blockers] == [
        ("active_members", "team", 1)
    ]
    assert table_counts(db) == before
    # Inactive members do not block: the memberships go, the users stay.
    deactivated = client.patch(
        f"/api/v1/objects/{people['alice']['id']}",
        json={"status": "inactive"},
        headers=acme.editor.headers,
    )
    assert deactivated.status_code == 200, deactivated.text
    assert delete(client, auth, "team").json() == SAMPLE_BODY
    after = table_counts(db)
    assert after["memberships"] == before["memberships"] - 2
    assert after["objects"] == before["objects"]
    for person in people.values():
        assert (
            client.get(f"/api/v1/objects/{person['id']}", headers=acme.editor.headers).status_code
            == 200
        )
    assert_invariants(db)


def test_delete_of_the_admin_group_is_405(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    auth = session_for(db, acme.admin)
    before = table_counts(db)
    refused = delete(client, auth, "Admin")
    fails(refused, 405, "RBAC_US_015", "Admin usergroup cannot be deleted")
    assert refused.json()["tags"]["blockers"][0]["rule"] == "protected_group"
    assert table_counts(db) == before
    assert_invariants(db)


def test_a_slow_delete_answers_202_and_completes(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    ctx = AppContext.create(make_settings(database_url, delete_wait_seconds=0.0), db=db)
    with TestClient(create_app(context=ctx, start_worker=False)) as client:
        auth = session_for(db, acme.editor)
        assert add_group(client, auth, "slow").status_code == 201
        response = delete(client, auth, "slow")
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["appStatusCode"] is None
        operation = body["tags"]["operationId"]
        assert response.headers["Location"] == f"/api/v1/operations/{operation}"
        # Gone from every read at once, though phase 2 has not run.
        fails(delete(client, auth, "slow"), 404, "ACCT_USERGROUP_030")
        assert ctx.worker.run_until_idle() == 1
        done = client.get(f"/api/v1/operations/{operation}", headers=acme.editor.headers)
        assert done.json()["state"] == "succeeded"
    assert_invariants(db)


# gwsource, gwkey, credentials ------------------------------------------------------------
def test_gwsource_is_mandatory_everywhere(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    missing = "Mandatory field is missing or invalid - gwsource"
    fails(login(client, acme.editor.username, query=""), 400, "MANDATORY_FIELD_MISSING", missing)
    fails(
        service_token(client, acme.editor.username, query="gwkey=acme"),
        400,
        "MANDATORY_FIELD_MISSING",
        missing,
    )
    auth = session_for(db, acme.editor)
    assert add_group(client, auth, "group_1").status_code == 201
    before = table_counts(db)
    fails(
        add_group(client, auth, "group_2", query="gwsource="),
        400,
        "MANDATORY_FIELD_MISSING",
        missing,
    )
    fails(search(client, auth, query="gwkey=acme"), 400, "MANDATORY_FIELD_MISSING", missing)
    fails(assign(client, auth, {"loginName": "x"}, query=""), 400, "MANDATORY_FIELD_MISSING")
    fails(
        client.delete("/avxapi/userGroup?userGroupName=group_1", headers=auth),
        400,
        "MANDATORY_FIELD_MISSING",
        missing,
    )
    fails(
        delete(client, auth, "group_1", query="gwsource=not%20a%20source"),
        400,
        "MANDATORY_FIELD_MISSING",
        missing,
    )
    # Without credentials either, the missing gwsource is what is named.
    fails(
        client.delete("/avxapi/userGroup?userGroupName=group_1"),
        400,
        "MANDATORY_FIELD_MISSING",
        missing,
    )
    assert table_counts(db) == before
    assert_invariants(db)


def test_credentials_are_required_and_checked(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    invalid = "Authentication failed, reason - Invalid Credentials."
    fails(search(client, {}), 401, "AVX_GW_003", invalid)
    fails(search(client, {"sessionId": "gds_not-a-session"}), 401, "AVX_GW_003", invalid)
    # A native API token is neither a session nor a service token.
    fails(search(client, {"token": acme.editor.token}), 401, "AVX_GW_003", invalid)
    fails(search(client, acme.editor.headers), 401, "AVX_GW_003", invalid)
    session = session_for(db, acme.editor)
    fails(search(client, {"token": session["sessionId"]}), 401, "AVX_GW_003")
    assert search(client, session).status_code == 200
    assert_invariants(db)


def test_gwkey_names_the_tenant(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    acme_auth = session_for(db, acme.editor)
    globex_auth = session_for(db, globex.editor)
    assert add_group(client, globex_auth, "shared", query=f"{GW}&gwkey=globex").status_code == 201
    assert add_group(client, acme_auth, "shared", query=f"{GW}&gwkey=acme").status_code == 201
    # A session used under another tenant's key, or an unknown key: 401 alike.
    for key in ("globex", "nobody"):
        fails(search(client, acme_auth, query=f"{GW}&gwkey={key}"), 401, "AVX_GW_003")
        fails(
            login(client, acme.editor.username, query=f"{GW}&gwkey={key}"),
            401,
            "AVX_GW_003",
            "Login failed. Invalid credentials",
        )
    keyed = login(client, acme.editor.username, query=f"{GW};gwkey=acme")
    assert keyed.status_code == 200, keyed.text
    # Names are per tenant: acme's delete never reaches globex's group of the same name.
    before = table_counts(db)
    assert delete(client, acme_auth, "shared", query=f"{GW}&gwkey=acme").json() == SAMPLE_BODY
    assert table_counts(db)["groups"] == before["groups"] - 1
    found = search(client, globex_auth, filterValue="shared").json()["response"]
    assert [item["name"] for item in found["data"]] == ["shared"]
    fails(delete(client, acme_auth, "shared"), 404, "ACCT_USERGROUP_030")
    assert_invariants(db)


# login, sessions, lock-out ---------------------------------------------------------------
def test_login_answers(client: TestClient, acme: TenantFixture, db: Database) -> None:
    ok = login(client, acme.viewer.username)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert list(body) == ENVELOPE_KEYS
    assert list(body["response"]) == [
        "status",
        "appStatusCode",
        "statusDescription",
        "sessionId",
        "availableLoginAttemptCount",
    ]
    assert body["response"]["status"] == "SUCCESS"
    assert body["response"]["appStatusCode"] is None
    assert body["response"]["statusDescription"] is None
    assert body["response"]["availableLoginAttemptCount"] == 10
    assert isinstance(body["response"]["sessionId"], str)
    assert [body["message"], body["appStatusCode"], body["tags"], body["headers"]] == [
        None,
        None,
        None,
        None,
    ]
    assert audit_sources(db, "session.create") == ["external"]
    empty = "Username or password cannot be null or empty"
    fails(login(client, acme.viewer.username, ""), 400, "MANDATORY_FIELD_MISSING", empty)
    fails(
        client.post(f"/avxapi/login?{GW}", headers={"username": acme.viewer.username}),
        400,
        "MANDATORY_FIELD_MISSING",
        empty,
    )
    wrong = login(client, acme.viewer.username, "not the password")
    fails(wrong, 401, "AVX_GW_003", "Login failed. Invalid credentials")
    assert wrong.json()["response"] == {
        "status": "FAILURE",
        "appStatusCode": "AVX_GW_003",
        "statusDescription": "Login failed. Invalid credentials",
        "sessionId": None,
        "availableLoginAttemptCount": 9,
    }
    # A success starts the count afresh.
    assert (
        login(client, acme.viewer.username).json()["response"]["availableLoginAttemptCount"] == 10
    )
    assert_invariants(db)


@pytest.fixture
def clocked(database_url: str, db: Database) -> Iterator[tuple[TestClient, ManualClock]]:
    clock = ManualClock()
    settings = make_settings(database_url, login_max_failures=3, login_lockout_seconds=300)
    ctx = AppContext.create(settings, db=db, clock=clock)
    with TestClient(create_app(context=ctx)) as client:
        yield client, clock


def failed_logins(db: Database, username: str) -> int:
    with db.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT failed_logins FROM accounts WHERE username = :u"), {"u": username}
            ).scalar_one()
        )


def test_lockout_after_failures_then_cool_down(
    clocked: tuple[TestClient, ManualClock], acme: TenantFixture, db: Database
) -> None:
    client, clock = clocked
    name = acme.editor.username
    first = login(client, name, "wrong password")
    assert first.json()["response"]["availableLoginAttemptCount"] == 2
    assert failed_logins(db, name) == 1  # the refusal kept its count
    assert login(client, name, "wrong again").json()["response"]["availableLoginAttemptCount"] == 1
    locked = login(client, name, "wrong a third time")
    fails(locked, 401, "GROUPD_ACCOUNT_LOCKED")
    assert locked.json()["response"]["availableLoginAttemptCount"] == 0
    assert locked.headers["Retry-After"] == "300"
    # Locked means locked: the right password, and every other login path, wait too.
    fails(login(client, name), 401, "GROUPD_ACCOUNT_LOCKED")
    fails(service_token(client, name), 401, "GROUPD_ACCOUNT_LOCKED")
    token_grant = client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": name, "password": PASSWORD},
    )
    assert token_grant.status_code in (400, 401)
    clock.advance(299)
    fails(login(client, name), 401, "GROUPD_ACCOUNT_LOCKED")
    clock.advance(2)
    again = login(client, name)
    assert again.status_code == 200, again.text
    assert again.json()["response"]["availableLoginAttemptCount"] == 3
    assert_invariants(db)


def test_sessions_expire_when_idle(
    clocked: tuple[TestClient, ManualClock], acme: TenantFixture, db: Database
) -> None:
    client, clock = clocked
    session = session_of(client, acme.editor.username)
    service = {"token": service_token(client, acme.editor.username).json()["response"]}
    # Each use moves the idle deadline (15 minutes by default).
    for _ in range(3):
        clock.advance(14 * 60)
        assert search(client, session).status_code == 200
    clock.advance(15 * 60 + 1)
    fails(search(client, session), 401, "AVX_GW_003")
    fails(search(client, session), 401, "AVX_GW_003")
    # A service token has no idle limit, only its lifetime (the access-token TTL, 1 h).
    assert search(client, service).status_code == 200
    clock.advance(3600 - 42 * 60 - 15 * 60)
    fails(search(client, service), 401, "AVX_GW_003")
    assert search(client, session_of(client, acme.editor.username)).status_code == 200
    assert_invariants(db)


def test_service_token(client: TestClient, acme: TenantFixture, db: Database) -> None:
    issued = service_token(client, acme.viewer.username)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert list(body) == ENVELOPE_KEYS and body["appStatusCode"] is None
    token = body["response"]
    assert search(client, {"token": token}).status_code == 200
    fails(search(client, {"sessionId": token}), 401, "AVX_GW_003")
    # The JSON form of AppViewX's OAuth page, grant type in any case.
    as_json = client.post(
        f"/avxapi/acctmgmt-get-service-token?{GW}",
        headers=basic(acme.viewer.username),
        json={"payload": {"grant_type": "Client_Credentials"}},
    )
    assert as_json.status_code == 200, as_json.text
    fails(
        service_token(client, acme.viewer.username, "wrong secret"),
        400,
        "OAUTH_CLNT_015",
        "Client Password is incorrect::[Invalid Client credential]",
    )
    fails(service_token(client, "nobody@acme", "wrong secret"), 400, "OAUTH_CLNT_015")
    fails(
        client.post(
            f"/avxapi/acctmgmt-get-service-token?{GW}", data={"grant_type": "client_credentials"}
        ),
        400,
        "ACCT_SA_001",
    )
    fails(
        client.post(
            f"/avxapi/acctmgmt-get-service-token?{GW}",
            headers=basic(acme.viewer.username),
            data={"grant_type": "password"},
        ),
        400,
        "ACCT_SA_001",
    )
    assert audit_sources(db, "token.create") == ["external", "external"]
    assert_invariants(db)


# add, search, assign ----------------------------------------------------------------------
def test_add_user_group(client: TestClient, acme: TenantFixture, db: Database) -> None:
    auth = session_for(db, acme.editor)
    viewer = session_for(db, acme.viewer)
    assert add_group(client, auth, "team", "the team").status_code == 201
    before = table_counts(db)
    fails(add_group(client, auth, "team"), 409, "RBAC_US_023", "Usergroup already exists.")
    fails(add_group(client, auth, "Admin"), 409, "RBAC_US_023")
    missing = "Mandatory field 'userGroupName' is missing or empty."
    fails(add_group(client, auth, "  "), 400, "ACCT_USERGROUP_001", missing)
    fails(
        client.post(
            f"/avxapi/usergroup?{GW}", headers=auth, json={"payload": {"description": "no name"}}
        ),
        400,
        "ACCT_USERGROUP_001",
        missing,
    )
    fails(
        client.post(f"/avxapi/usergroup?{GW}", headers=auth, json={}),
        400,
        "ACCT_USERGROUP_001",
        missing,
    )
    unknown = client.post(
        f"/avxapi/usergroup?{GW}", headers=auth, json={"payload": {"name": "x", "roles": ["admin"]}}
    )
    fails(unknown, 400, "INVALID_REQUEST")
    assert "roles" in unknown.json()["message"]
    fails(add_group(client, auth, "bad\u0000name"), 400, "INVALID_REQUEST")
    fails(
        client.post(f"/avxapi/usergroup?{GW}", headers=auth, content=b"name=x"),
        415,
        "GROUPD_UNSUPPORTED_MEDIA_TYPE",
    )
    fails(add_group(client, viewer, "other"), 403, "AVX_GW_005")
    assert table_counts(db) == before
    assert_invariants(db)


def test_search_user_groups(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    auth = session_for(db, acme.editor)
    for number in range(1, 6):
        assert add_group(client, auth, f"g0{number}", f"Team {number}").status_code == 201
    assert add_group(client, auth, "nights", "Night SHIFT").status_code == 201
    assert add_group(client, session_for(db, globex.editor), "g09").status_code == 201
    viewer = session_for(db, acme.viewer)
    page = search(
        client,
        viewer,
        startIndex=2,
        maxSize=2,
        sortColumn="name",
        sortOrder="asc",
        filterValue="G0",
    )
    assert page.status_code == 200, page.text
    assert page.json()["message"] == "Matching results found for the given input."
    result = page.json()["response"]
    assert result == {
        "data": [
            {"name": "g02", "description": "Team 2", "state": "A", "_id": "g02"},
            {"name": "g03", "description": "Team 3", "state": "A", "_id": "g03"},
        ],
        "totalRecords": 5,
        "obtainedRecords": 2,
        "obtainedRecordRange": {"start": 2, "end": 3},
    }
    desc = search(client, viewer, startIndex=1, maxSize=2, sortOrder="DESC", filterValue="g0")
    assert [i["name"] for i in desc.json()["response"]["data"]] == ["g05", "g04"]
    shift = search(client, viewer, filterValue="shift").json()["response"]
    assert [i["name"] for i in shift["data"]] == ["nights"]
    everything = search(client, viewer, maxSize=100).json()["response"]
    assert everything["totalRecords"] == 7  # with Admin, without globex's group
    assert "g09" not in [i["name"] for i in everything["data"]]
    by_description = search(client, viewer, sortColumn="description", filterValue="team")
    assert [i["name"] for i in by_description.json()["response"]["data"]] == [
        "g01",
        "g02",
        "g03",
        "g04",
        "g05",
    ]
    assert search(client, viewer, sortColumn="_id").status_code == 200
    no_match = "No matching records found."
    fails(search(client, viewer, filterValue="nothing like it"), 404, "NO_RECORDS_FOUND", no_match)
    fails(search(client, viewer, filterValue="%"), 404, "NO_RECORDS_FOUND", no_match)
    fails(search(client, viewer, startIndex=8, filterValue=""), 404, "NO_RECORDS_FOUND", no_match)
    for bad in (
        {"sortOrder": "up"},
        {"sortColumn": "state"},
        {"startIndex": 0},
        {"maxSize": 0},
        {"maxSize": 1001},
        {"startIndex": "1"},
    ):
        fails(search(client, viewer, **bad), 400, "INVALID_REQUEST")
    assert_invariants(db)


def test_assign_and_unassign_users(
    client: TestClient, acme: TenantFixture, db: Database, people: dict[str, dict[str, Any]]
) -> None:
    auth = session_for(db, acme.editor)
    for name in ("team1", "team2", "team3"):
        assert add_group(client, auth, name).status_code == 201
    modified = assign(client, auth, {"loginName": "alice", "assignUserGroups": ["team1", "team2"]})
    assert modified.status_code == 200, modified.text
    assert modified.json() == {
        "response": "Successfully modified user-usergroup association",
        "message": "Successfully modified user-usergroup association",
        "appStatusCode": None,
        "tags": None,
        "headers": None,
    }
    assert member_logins(client, acme, "team1") == ["alice"]
    moved = assign(
        client,
        auth,
        {
            "loginName": "alice",
            "assignUserGroups": ["team1", "team3"],
            "unassignUserGroups": ["team2"],
        },
    )
    assert moved.status_code == 200, moved.text
    assert [member_logins(client, acme, g) for g in ("team1", "team2", "team3")] == [
        ["alice"],
        [],
        ["alice"],
    ]
    # Already so, either way: no change, no error. The 2020 spelling works too.
    again = assign(
        client,
        auth,
        {"loginName": "alice", "assignUserGroups": ["team1"], "unAssignUserGroups": ["team2"]},
    )
    assert again.status_code == 200, again.text
    assert audit_sources(db, "membership.add") == ["external"] * 3
    assert audit_sources(db, "membership.remove") == ["external"]
    before = table_counts(db)
    unknown = assign(
        client,
        auth,
        {
            "loginName": "alice",
            "assignUserGroups": ["team2", "nope"],
            "unassignUserGroups": ["team1", "gone"],
        },
    )
    fails(unknown, 404, "ACCT_USERGROUP_030")
    assert unknown.json()["tags"]["names"] == ["nope", "gone"]
    fails(
        assign(client, auth, {"loginName": "carol", "assignUserGroups": ["team2"]}),
        404,
        "GROUPD_USER_NOT_FOUND",
    )
    fails(
        assign(client, auth, {"assignUserGroups": ["team2"]}),
        400,
        "ACCT_US_015",
        "Mandatory Field 'loginName' is missing or empty",
    )
    fails(
        assign(
            client,
            auth,
            {"loginName": "alice", "assignUserGroups": ["team2"], "unassignUserGroups": ["team2"]},
        ),
        400,
        "INVALID_REQUEST",
    )
    fails(
        assign(
            client,
            auth,
            {
                "loginName": "alice",
                "unassignUserGroups": ["team1"],
                "unAssignUserGroups": ["team3"],
            },
        ),
        400,
        "INVALID_REQUEST",
    )
    fails(
        assign(client, auth, {"loginName": "alice", "assignUserGroups": [""]}),
        400,
        "ACCT_USERGROUP_001",
    )
    fails(
        assign(
            client,
            session_for(db, acme.viewer),
            {"loginName": "alice", "assignUserGroups": ["team2"]},
        ),
        403,
        "AVX_GW_005",
    )
    assert table_counts(db) == before
    assert [member_logins(client, acme, g) for g in ("team1", "team2", "team3")] == [
        ["alice"],
        [],
        ["alice"],
    ]
    # The member now blocks the delete of either of her groups.
    fails(delete(client, auth, "team3"), 400, "RBAC_US_019")
    assert delete(client, auth, "team2").json() == SAMPLE_BODY
    assert_invariants(db)
