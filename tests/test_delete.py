"""Deleting groups: guards, dry run, licence arithmetic, If-Match, 202 + polling."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.store.db import Database
from helpers import build_tree, create, devices, licence, user, wait_operation
from invariants import assert_invariants


def table_counts(db: Database) -> dict[str, int]:
    tables = (
        "groups",
        "objects",
        "memberships",
        "activations",
        "licences",
        "operations",
        "audit_events",
    )
    with db.engine.connect() as connection:
        counts = {
            t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables
        }
        counts["used_units"] = connection.execute(
            text("SELECT COALESCE(SUM(used_units), 0) FROM licences")
        ).scalar_one()
        counts["deleting"] = connection.execute(
            text("SELECT COUNT(*) FROM groups WHERE state <> 'live'")
        ).scalar_one()
    return counts


def delete(client: TestClient, headers: dict[str, str], group: str, **params: Any) -> Any:
    query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
    return client.delete(f"/api/v1/groups/{group}", params=query, headers=headers)


def test_delete_subtree_releasing_units(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    ids = build_tree(client, h, acme.root_id, fanout=3, depth=3)
    seats = licence(client, h, "Endpoint Security", 100)
    devices(client, h, ids[-1], 5, product="Endpoint Security", units=2)
    devices(client, h, ids[0], 3, product="Endpoint Security")
    assert client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()["usedUnits"] == 13
    response = delete(client, h, ids[0], releaseConsumedUnits=True)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["state"] == "succeeded"
    deleted = body["result"]["body"]["deleted"]
    # ids[0] is a level-1 group: itself, 3 children, 9 grandchildren.
    assert deleted["groups"] == 13
    assert body["result"]["body"]["unitsReleased"] == 3
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 404
    assert client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()["usedUnits"] == 10
    assert_invariants(db)


def test_delete_keeping_units_leaves_orphaned_activations(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    group = create(client, h, "/api/v1/groups", {"name": "Lab", "parentId": acme.root_id})
    seats = licence(client, h, "EDR", 10)
    devices(client, h, group["id"], 4, product="EDR")
    response = delete(client, h, group["id"])
    assert response.status_code == 200, response.text
    assert response.json()["result"]["body"]["unitsKeptConsumed"] == 4
    lic = client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()
    assert lic["usedUnits"] == 4
    orphans = client.get(
        f"/api/v1/licenses/{seats['id']}/activations", params={"orphaned": "true"}, headers=h
    ).json()["items"]
    assert len(orphans) == 4 and all(a["orphaned"] for a in orphans)
    released = client.delete(
        f"/api/v1/licenses/{seats['id']}/activations/{orphans[0]['id']}", headers=h
    )
    assert released.status_code == 204
    assert client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()["usedUnits"] == 3
    assert_invariants(db)


def test_guards_refuse_and_change_nothing(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    top = create(client, h, "/api/v1/groups", {"name": "Customers", "parentId": acme.root_id})
    linked = create(
        client,
        h,
        "/api/v1/groups",
        {
            "name": "Contoso",
            "parentId": top["id"],
            "linkedEntity": {"type": "CUSTOMER", "ref": "c-42"},
        },
    )
    before = table_counts(db)
    refused = delete(client, h, top["id"])
    assert refused.status_code == 409
    problem = refused.json()
    assert problem["code"] == "linked_entity"
    assert problem["blockers"][0]["groupId"] == linked["id"]
    assert problem["blockers"][0]["linkedEntityType"] == "CUSTOMER"
    assert "Contoso" in problem["detail"]
    assert table_counts(db) == before
    protected = delete(client, h, acme.root_id)
    assert protected.status_code == 409
    assert protected.json()["code"] == "protected_group"
    assert table_counts(db) == before
    # user groups with active members
    people = create(client, h, "/api/v1/groups", {"name": "People", "parentId": acme.root_id})
    team = create(client, h, "/api/v1/groups", {"name": "Team", "kind": "user"})
    alice = user(client, h, people["id"], "alice")
    bob = user(client, h, people["id"], "bob", status="inactive")
    for member in (alice, bob):
        assert (
            client.put(f"/api/v1/groups/{team['id']}/members/{member['id']}", headers=h).status_code
            == 201
        )
    before = table_counts(db)
    blocked = delete(client, h, team["id"])
    assert blocked.status_code == 409
    assert blocked.json()["code"] == "active_members"
    assert blocked.json()["blockers"][0]["activeMembers"] == 1
    assert table_counts(db) == before
    client.patch(f"/api/v1/objects/{alice['id']}", json={"status": "inactive"}, headers=h)
    done = delete(client, h, team["id"])
    assert done.status_code == 200, done.text
    assert done.json()["result"]["body"]["deleted"]["memberships"] == 2
    assert client.get(f"/api/v1/objects/{alice['id']}", headers=h).status_code == 200
    assert_invariants(db)


def test_deleting_the_home_of_members_ends_their_memberships(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """Users homed in the subtree go, and with them their memberships of user groups
    elsewhere; the user groups stay, and so do their other members."""
    h = acme.editor.headers
    people = create(client, h, "/api/v1/groups", {"name": "Leaving", "parentId": acme.root_id})
    staying = create(client, h, "/api/v1/groups", {"name": "Staying", "parentId": acme.root_id})
    team = create(client, h, "/api/v1/groups", {"name": "Crew", "kind": "user"})
    leavers = [user(client, h, people["id"], name, status="inactive") for name in ("carol", "dave")]
    stayer = user(client, h, staying["id"], "erin", status="inactive")
    devices(client, h, people["id"], 3)
    for member in (*leavers, stayer):
        added = client.put(f"/api/v1/groups/{team['id']}/members/{member['id']}", headers=h)
        assert added.status_code == 201, added.text
    done = delete(client, h, people["id"])
    assert done.status_code == 200, done.text
    deleted = done.json()["result"]["body"]["deleted"]
    assert deleted["memberships"] == 2
    assert deleted["users"] == 2 and deleted["devices"] == 3
    members = client.get(f"/api/v1/groups/{team['id']}/members", headers=h).json()["items"]
    assert [m["id"] for m in members] == [stayer["id"]]
    assert_invariants(db)


def test_dry_run_changes_nothing(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    ids = build_tree(client, h, acme.root_id, fanout=2, depth=3)
    licence(client, h, "AV", 50, unit_kind="user")
    devices(client, h, ids[0], 6, product="AV", units=3)
    before = table_counts(db)
    preview = delete(client, h, ids[0], dryRun=True, releaseConsumedUnits=True)
    assert preview.status_code == 200, preview.text
    impact = preview.json()["impact"]
    assert impact["groups"]["total"] == 7
    assert impact["objects"]["devices"] == 6
    assert impact["activations"] == 6
    assert impact["units"]["released"] == 18
    assert impact["units"]["byLicence"][0]["unitKind"] == "user"
    assert impact["blockers"] == []
    assert table_counts(db) == before
    assert_invariants(db)


def test_if_match_on_delete(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    group = create(client, h, "/api/v1/groups", {"name": "Temp", "parentId": acme.root_id})
    stale = client.delete(f"/api/v1/groups/{group['id']}", headers={**h, "If-Match": '"7"'})
    assert stale.status_code == 412
    ok = client.delete(f"/api/v1/groups/{group['id']}", headers={**h, "If-Match": '"1"'})
    assert ok.status_code == 200
    assert_invariants(db)


def test_202_then_poll(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    ids = build_tree(client, h, acme.root_id, fanout=4, depth=3)
    response = delete(client, h, ids[0], wait=0)
    assert response.status_code == 202, response.text
    operation_id = response.headers["response-id"]
    assert response.headers["location"] == f"/api/v1/operations/{operation_id}"
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 404
    final = wait_operation(client, h, operation_id)
    assert final["state"] == "succeeded"
    assert final["progress"]["groups"]["done"] == final["progress"]["groups"]["total"] == 21
    audit = client.get("/api/v1/audit", params={"target": ids[0]}, headers=h).json()["items"]
    assert [e["action"] for e in audit][-2:] == ["group.delete.accepted", "group.delete.succeeded"]
    assert_invariants(db)


def test_create_under_deleting_subtree_is_404(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    ids = build_tree(client, h, acme.root_id, fanout=3, depth=2)
    client.app.state.ctx.worker.stop()  # keep the subtree in phase 2 while we try
    response = delete(client, h, ids[0], wait=0)
    assert response.status_code == 202
    inside = ids[3]  # the first child of ids[0] (build_tree lists level by level)
    child = client.post("/api/v1/groups", json={"name": "late", "parentId": inside}, headers=h)
    assert child.status_code == 404
    moved = client.post(f"/api/v1/groups/{ids[-1]}/move", json={"parentId": inside}, headers=h)
    assert moved.status_code == 404
    escape = client.post(f"/api/v1/groups/{inside}/move", json={"parentId": ids[1]}, headers=h)
    assert escape.status_code == 404
    obj = client.post(
        "/api/v1/objects", json={"kind": "device", "name": "d", "homeGroupId": inside}, headers=h
    )
    assert obj.status_code == 404
    client.app.state.ctx.worker.run_until_idle()
    assert_invariants(db)
