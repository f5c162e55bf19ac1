"""The audit trail is written by the services: every change, through every API surface
that offers it, leaves exactly one event; no HTTP handler records events itself."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

import groupd
from conftest import TenantFixture
from groupd.store.db import Database
from helpers import create
from invariants import assert_invariants
from test_appviewx import add_group, assign, login, service_token
from test_oaa import AGENT, BASE, create_json, token_basic


class Trail:
    """The tenant's audit trail as ``GET /api/v1/audit`` shows it, read as it grows."""

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers
        self.seen = 0

    def new(self) -> list[dict[str, Any]]:
        """The events recorded since the last call, oldest first."""
        events: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params = {"limit": "1000", **({"cursor": cursor} if cursor else {})}
            page = self.client.get("/api/v1/audit", params=params, headers=self.headers)
            assert page.status_code == 200, page.text
            body = page.json()
            events.extend(e for e in body["items"] if e["id"] > self.seen)
            cursor = body["nextCursor"]
            if cursor is None:
                break
        if events:
            self.seen = events[-1]["id"]
        return events

    def one(
        self,
        response: httpx.Response,
        action: str,
        target_type: str,
        target_id: str | None,
        **expected: Any,
    ) -> dict[str, Any]:
        """Exactly one event since the last look: ``action`` on the target, succeeded, with
        the request's id (and the ``expected`` fields, by their wire names)."""
        events = self.new()
        assert len(events) == 1, [e["action"] for e in events]
        (event,) = events
        assert event["action"] == action, event
        assert event["targetType"] == target_type, event
        assert event["targetId"] == target_id, event
        assert event["outcome"] == "succeeded", event
        assert event["requestId"] == response.headers["request-id"], event
        for name, value in expected.items():
            assert event[name] == value, (name, event)
        return event

    def none(self) -> None:
        assert self.new() == []


def ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json() if response.content else {}


def account_id(client: TestClient, tenant: TenantFixture, username: str) -> str:
    listed = ok(client.get("/api/v1/accounts", headers=tenant.admin.headers))["items"]
    (found,) = [a["id"] for a in listed if a["username"] == username]
    return str(found)


def test_tenant_built_ins_are_recorded_by_the_system(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    events = Trail(client, acme.admin.headers).new()
    assert [(e["action"], e["targetId"], e["actor"]) for e in events] == [
        ("group.create", acme.root_id, "system"),
        ("group.create", acme.lost_and_found_id, "system"),
        ("group.create", acme.admin_group_id, "system"),
    ]
    assert_invariants(db)


def test_native_changes_each_leave_one_event(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    trail = Trail(client, acme.admin.headers)
    trail.new()  # the tenant's built-ins
    editor = {"actor": acme.editor.username, "source": None}

    # groups
    made = client.post(
        "/api/v1/groups", json={"name": "Sites", "parentId": acme.root_id}, headers=h
    )
    sites = ok(made, 201)["id"]
    trail.one(made, "group.create", "group", sites, targetName="Sites", **editor)
    batch_ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    batch = client.post(
        "/api/v1/groups:batchCreate",
        json={
            "groups": [
                {"id": batch_ids[0], "name": "North", "parentId": sites},
                {"id": batch_ids[1], "name": "South", "parentId": batch_ids[0]},
            ]
        },
        headers=h,
    )
    ok(batch, 201)
    trail.one(batch, "group.batch_create", "group", None, counts={"groups": 2}, **editor)
    renamed = client.patch(f"/api/v1/groups/{sites}", json={"name": "Places"}, headers=h)
    ok(renamed)
    trail.one(renamed, "group.update", "group", sites, targetName="Places")
    moved = client.post(f"/api/v1/groups/{batch_ids[1]}/move", json={"parentId": sites}, headers=h)
    ok(moved)
    trail.one(moved, "group.move", "group", batch_ids[1], targetName="South")
    refused = client.post(f"/api/v1/groups/{sites}/move", json={"parentId": sites}, headers=h)
    assert refused.status_code == 409
    trail.none()

    # objects
    made = client.post(
        "/api/v1/objects", json={"kind": "device", "name": "pc-1", "homeGroupId": sites}, headers=h
    )
    device = ok(made, 201)["id"]
    trail.one(made, "object.create", "device", device, targetName="pc-1")
    imported = client.post(
        "/api/v1/objects:batchImport",
        json={
            "objects": [
                {"kind": "device", "name": f"pc-{i}", "homeGroupId": sites} for i in (2, 3, 4)
            ]
        },
        headers=h,
    )
    ok(imported, 201)
    trail.one(imported, "object.batch_import", "object", None, counts={"objects": 3})
    updated = client.patch(f"/api/v1/objects/{device}", json={"name": "pc-one"}, headers=h)
    ok(updated)
    trail.one(updated, "object.update", "device", device, targetName="pc-one")
    rehomed = client.post(
        f"/api/v1/objects/{device}/move", json={"groupId": batch_ids[0]}, headers=h
    )
    ok(rehomed)
    trail.one(rehomed, "object.move", "device", device)

    # memberships
    made = client.post(
        "/api/v1/objects",
        json={"kind": "user", "name": "Alice", "loginName": "alice", "homeGroupId": sites},
        headers=h,
    )
    alice = ok(made, 201)["id"]
    trail.one(made, "object.create", "user", alice)
    team = create(client, h, "/api/v1/groups", {"name": "Team", "kind": "user"})["id"]
    trail.new()
    added = client.put(f"/api/v1/groups/{team}/members/{alice}", headers=h)
    assert added.status_code == 201
    trail.one(added, "membership.add", "group", team, targetName=None, detail=f"member {alice}")
    again = client.put(f"/api/v1/groups/{team}/members/{alice}", headers=h)
    assert again.status_code == 204  # already a member: no change, no event
    trail.none()
    removed = client.delete(f"/api/v1/groups/{team}/members/{alice}", headers=h)
    assert removed.status_code == 204
    trail.one(removed, "membership.remove", "group", team, detail=f"member {alice}")

    # licences
    made = client.post(
        "/api/v1/licenses", json={"product": "EP", "unitKind": "seat", "totalUnits": 10}, headers=h
    )
    licence = ok(made, 201)["id"]
    trail.one(made, "license.create", "license", licence, targetName="EP")
    activated = client.post(
        f"/api/v1/licenses/{licence}/activations", json={"objectId": device, "units": 2}, headers=h
    )
    activation = ok(activated, 201)["id"]
    trail.one(
        activated,
        "license.activate",
        "license",
        licence,
        counts={"units": 2},
        detail=f"object {device}",
    )
    released = client.delete(f"/api/v1/licenses/{licence}/activations/{activation}", headers=h)
    assert released.status_code == 204
    trail.one(released, "license.release", "license", licence, detail=f"activation {activation}")

    # accounts and credentials: only the API token and the account are recorded
    token = client.post("/api/v1/tokens", json={"label": "ci"}, headers=h)
    ok(token, 201)
    editor_id = account_id(client, acme, acme.editor.username)
    trail.one(
        token, "token.create", "account", editor_id, targetName=acme.editor.username, **editor
    )
    account = client.post(
        "/api/v1/accounts",
        json={"username": "carol@acme", "role": "viewer", "password": "a long password"},
        headers=acme.admin.headers,
    )
    carol = ok(account, 201)["id"]
    trail.one(account, "account.create", "account", carol, actor=acme.admin.username)
    granted = client.post(
        "/api/v1/auth/token",
        json={"grantType": "password", "username": "carol@acme", "password": "a long password"},
    )
    refreshed = client.post(
        "/api/v1/auth/token",
        json={"grantType": "refresh_token", "refreshToken": ok(granted)["refreshToken"]},
    )
    ok(refreshed)
    trail.none()
    assert_invariants(db)


def test_eset_changes_each_leave_one_event(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    trail = Trail(client, acme.admin.headers)
    trail.new()
    eset = {"actor": acme.editor.username, "source": "eset"}

    made = client.post(
        "/v1/groups",
        json={"group": {"displayName": "Branch", "parentGroupUuid": acme.root_id}},
        headers=h,
    )
    branch = ok(made)["group"]["uuid"]
    trail.one(made, "group.create", "group", branch, targetName="Branch", **eset)
    other = ok(
        client.post(
            "/v1/groups",
            json={"group": {"displayName": "Other", "parentGroupUuid": acme.root_id}},
            headers=h,
        )
    )["group"]["uuid"]
    trail.new()
    moved = client.post(f"/v1/groups/{branch}:move", json={"newParentUuid": other}, headers=h)
    ok(moved)
    trail.one(moved, "group.move", "group", branch, **eset)
    renamed = client.post(f"/v1/groups/{branch}:rename", json={"displayName": "Office"}, headers=h)
    ok(renamed)
    trail.one(renamed, "group.update", "group", branch, targetName="Office", **eset)
    devices = [{"displayName": f"pc-{i}", "groupUuid": branch} for i in range(3)]
    imported = client.post("/v1/devices:batchImport", json={"devices": devices}, headers=h)
    ok(imported)
    trail.one(imported, "object.batch_import", "object", None, counts={"objects": 3}, **eset)
    assert_invariants(db)


def test_oaa_changes_each_leave_one_event(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    basic = token_basic(acme.editor)
    trail = Trail(client, acme.admin.headers)
    trail.new()
    made = client.post(
        BASE,
        json={"agentid": AGENT, "grouptype": "Actions", "groupname": "Rules", "values": ["a"]},
        headers=basic,
    )
    group = ok(made, 201)["group"]
    native = ok(
        client.get(
            "/api/v1/groups",
            params={"kind": "policy", "name": "Rules"},
            headers=acme.viewer.headers,
        )
    )["items"][0]["id"]
    trail.one(made, "group.create", "group", native, targetName="Rules", actor=acme.editor.username)
    updated = client.put(
        f"{BASE}/{group['groupid']}",
        json={"groupname": "Rules 2", "addvalues": ["b"]},
        headers=basic,
    )
    ok(updated)
    trail.one(updated, "group.update", "group", native, targetName="Rules 2")
    create_json(client, basic, groupname="More")
    assert [e["action"] for e in trail.new()] == ["group.create"]
    assert_invariants(db)


def test_appviewx_changes_each_leave_one_event(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    trail = Trail(client, acme.admin.headers)
    trail.new()
    editor_id = account_id(client, acme, acme.editor.username)
    external = {"actor": acme.editor.username, "source": "external"}

    session = login(client, acme.editor.username)
    ok(session)
    trail.one(session, "session.create", "account", editor_id, **external)
    auth = {"sessionId": session.json()["response"]["sessionId"]}
    token = service_token(client, acme.editor.username)
    ok(token)
    trail.one(token, "token.create", "account", editor_id, **external)

    added = add_group(client, auth, "Helpdesk", "first line")
    ok(added, 201)
    helpdesk = ok(
        client.get(
            "/api/v1/groups",
            params={"kind": "user", "name": "Helpdesk"},
            headers=acme.viewer.headers,
        )
    )["items"][0]["id"]
    trail.one(added, "group.create", "group", helpdesk, targetName="Helpdesk", **external)

    home = create(
        client, acme.editor.headers, "/api/v1/groups", {"name": "People", "parentId": acme.root_id}
    )
    create(
        client,
        acme.editor.headers,
        "/api/v1/objects",
        {"kind": "user", "name": "Dave", "loginName": "dave", "homeGroupId": home["id"]},
    )
    trail.new()
    assigned = assign(client, auth, {"loginName": "dave", "assignUserGroups": ["Helpdesk"]})
    ok(assigned)
    trail.one(
        assigned,
        "membership.add",
        "group",
        helpdesk,
        targetName="Helpdesk",
        detail="member 'dave'",
        **external,
    )
    unchanged = assign(client, auth, {"loginName": "dave", "assignUserGroups": ["Helpdesk"]})
    ok(unchanged)
    trail.none()
    unassigned = assign(client, auth, {"loginName": "dave", "unassignUserGroups": ["Helpdesk"]})
    ok(unassigned)
    trail.one(
        unassigned,
        "membership.remove",
        "group",
        helpdesk,
        targetName="Helpdesk",
        detail="member 'dave'",
        **external,
    )
    assert_invariants(db)


# the handlers do not audit -------------------------------------------------------------
RECORDERS = ("record_event", "record_group_change")


def audit_recordings(source: str) -> tuple[bool, list[str]]:
    """Whether a module imports ``groupd.services.audit``, and where it records events."""
    tree = ast.parse(source)
    names: set[str] = set()  # what the audit module is called in this module
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "groupd.services":
            names.update(a.asname or a.name for a in node.names if a.name == "audit")
        elif isinstance(node, ast.ImportFrom) and node.module == "groupd.services.audit":
            names.add("groupd.services.audit")
            found += [
                f"line {node.lineno}: imports {a.name}"
                for a in node.names
                if a.name in RECORDERS or a.name == "*"
            ]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "groupd.services.audit":
                    names.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in RECORDERS
            and ast.unparse(node.value) in names
        ):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return bool(names), found


def test_no_handler_records_audit_events() -> None:
    """Events are the services' business: a new surface gets them by calling services."""
    api = Path(groupd.__file__).parent / "api"
    modules = sorted(api.rglob("*.py"))
    importing = []
    offenders = []
    for path in modules:
        imports_audit, found = audit_recordings(path.read_text())
        if imports_audit:
            importing.append(path.relative_to(api).as_posix())
        offenders += [f"{path.relative_to(api)} {where}" for where in found]
    assert not offenders
    # Reading the trail is fine (and shows the check sees the imports).
    assert "native/audit.py" in importing


def test_the_guard_catches_each_way_of_recording() -> None:
    for source in (
        "from groupd.services import audit\naudit.record_event(uow)",
        "from groupd.services import audit as trail\ntrail.record_group_change(uow)",
        "import groupd.services.audit\ngroupd.services.audit.record_event(uow)",
        "from groupd.services.audit import record_event",
    ):
        assert audit_recordings(source)[1], source
