"""Okta's and Microsoft Entra's SCIM request sequences, replayed as their guides publish
them, with the answers they expect and the directory they must leave, on both databases.

Okta: lookup by userName, create, PUT updates, deactivate by ``replace`` without a path,
push a group (``members: []``), rename by ``replace`` of ``{"id","displayName"}``, add and
remove members by filtered path, page with ``startIndex``/``count``, unlink and delete.
Entra: lookup, create with the enterprise extension, ``Replace`` with capitalised ops and
string booleans, ``Add`` to a filtered path that matches nothing, soft delete (``active``
"False") then delete, groups fetched with ``excludedAttributes=members``, members removed
with the member in the value (the default) and by filtered path (the compliance flag).
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.clock import system_clock
from groupd.services import objects
from groupd.services.common import system_actor
from groupd.services.provisioning.home import set_provisioning_home
from groupd.store.db import Database, transaction
from groupd.store.models import DirectoryObject, Group, Membership
from servers import run_groupd, server_env

pytestmark = pytest.mark.usefixtures("check_invariants")

SCIM = "/scim/v2"
SCIM_JSON = "application/scim+json"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"


class Idp:
    """An identity provider's client: its token, its media type, and checked answers."""

    def __init__(self, client: TestClient, tenant: TenantFixture) -> None:
        self.client = client
        self.headers = {**tenant.editor.headers, "Content-Type": SCIM_JSON}

    def send(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response: httpx.Response = self.client.request(
            method, SCIM + path, headers=headers, **kwargs
        )
        assert response.status_code == status, f"{method} {path}: {response.text}"
        if status == 204:
            assert not response.content
            return None
        assert response.headers["content-type"].startswith(SCIM_JSON), response.headers
        return response.json()

    def patch(self, path: str, *operations: dict[str, Any], status: int = 200) -> Any:
        body = {"schemas": [PATCH], "Operations": list(operations)}
        return self.send("PATCH", path, status, json=body)

    def search(self, path: str, total: int, **params: str) -> list[dict[str, Any]]:
        found = self.send("GET", path, 200, params=params)
        assert found["schemas"] == [LIST]
        assert found["totalResults"] == total, found
        resources: list[dict[str, Any]] = found.get("Resources", [])
        return resources


def members_of(db: Database, group_id: str) -> set[str]:
    with db.engine.connect() as connection:
        rows = connection.execute(
            select(DirectoryObject.uuid)
            .join(Membership, Membership.object_id == DirectoryObject.id)
            .join(Group, Group.id == Membership.group_id)
            .where(Group.uuid == group_id)
        )
        return {str(row[0]) for row in rows}


def live_group(db: Database, group_id: str) -> bool:
    with db.engine.connect() as connection:
        state = connection.execute(
            select(Group.state).where(Group.uuid == group_id)
        ).scalar_one_or_none()
    return state == "live"


def status_of(db: Database, user_id: str) -> str | None:
    with db.engine.connect() as connection:
        found: str | None = connection.execute(
            select(DirectoryObject.status).where(DirectoryObject.uuid == user_id)
        ).scalar_one_or_none()
    return found


def okta_user(login: str, given: str = "Test", family: str = "User") -> dict[str, Any]:
    return {
        "schemas": [USER],
        "userName": login,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": True, "value": login, "type": "work"}],
        "displayName": f"{given} {family}",
        "locale": "en-US",
        "externalId": f"00u{abs(hash(login)) % 10**12}",
        "groups": [],
        "password": "1mOkta!2",
        "active": True,
    }


def test_okta_sequence(client: TestClient, acme: TenantFixture, db: Database) -> None:
    okta = Idp(client, acme)
    login = "test.user@acme-corp.com"
    # Is the user there? (Okta asks before it creates.)
    okta.search("/Users", 0, filter=f'userName eq "{login}"', startIndex="1", count="100")
    user = okta.send("POST", "/Users", 201, json=okta_user(login))
    uid = user["id"]
    assert user["userName"] == login and user["active"] is True
    assert user["meta"]["version"] == '"1"' and "password" not in user
    assert okta.send("GET", f"/Users/{uid}", 200)["name"]["familyName"] == "User"
    # The profile changes in Okta: a PUT of the whole user.
    updated = okta.send("PUT", f"/Users/{uid}", 200, json=okta_user(login, "Test", "Renamed"))
    assert updated["name"]["familyName"] == "Renamed" and updated["meta"]["version"] == '"2"'
    # Deactivate, then reactivate: replace without a path.
    off = okta.patch(f"/Users/{uid}", {"op": "replace", "value": {"active": False}})
    assert off["active"] is False and status_of(db, uid) == "inactive"
    on = okta.patch(f"/Users/{uid}", {"op": "replace", "value": {"active": True}})
    assert on["active"] is True and status_of(db, uid) == "active"
    other = okta.send("POST", "/Users", 201, json=okta_user("second@acme-corp.com"))["id"]

    # Push a group: created with no members, then members added.
    group = okta.send(
        "POST", "/Groups", 201, json={"schemas": [GROUP], "displayName": "Okta Push", "members": []}
    )
    gid = group["id"]
    assert group.get("members", []) == []
    (found,) = okta.search("/Groups", 1, filter='displayName eq "Okta Push"', startIndex="1")
    assert found["id"] == gid
    added = okta.patch(
        f"/Groups/{gid}",
        {
            "op": "add",
            "path": "members",
            "value": [{"value": uid, "display": login}, {"value": other, "display": "second"}],
        },
    )
    assert {m["value"] for m in added["members"]} == {uid, other}
    # Rename: replace of {"id", "displayName"} without a path.
    renamed = okta.patch(
        f"/Groups/{gid}", {"op": "replace", "value": {"id": gid, "displayName": "Okta Renamed"}}
    )
    assert renamed["displayName"] == "Okta Renamed"
    # Remove one member by filtered path.
    okta.patch(f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{uid}"]'})
    assert members_of(db, gid) == {other}
    # Replace the whole member list.
    okta.patch(f"/Groups/{gid}", {"op": "replace", "path": "members", "value": [{"value": uid}]})
    assert members_of(db, gid) == {uid}
    # Okta pages with startIndex and count=100.
    page = okta.send("GET", "/Users", 200, params={"startIndex": "2", "count": "1"})
    assert page["startIndex"] == 2 and page["itemsPerPage"] == 1 and page["totalResults"] >= 2
    # Unlink the pushed group and delete it in the app: the member is active, and the
    # provider's delete is not refused for it (the users stay).
    okta.send("DELETE", f"/Groups/{gid}", 204)
    okta.send("GET", f"/Groups/{gid}", 404)
    assert not live_group(db, gid)
    assert status_of(db, uid) == "active" and status_of(db, other) == "active"


def test_entra_sequence(client: TestClient, acme: TenantFixture, db: Database) -> None:
    entra = Idp(client, acme)
    login = "Test_User_dfeef4c5@contoso.com"
    entra.search("/Users", 0, filter=f'userName eq "{login}"')
    created = entra.send(
        "POST",
        "/Users",
        201,
        json={
            "schemas": [USER, ENTERPRISE],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
            "userName": login,
            "active": True,
            "emails": [{"primary": True, "type": "work", "value": login}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "givenName familyName", "familyName": "familyName"},
            "roles": [],
            ENTERPRISE: {"employeeNumber": "7", "department": "Tour Operations"},
        },
    )
    uid = created["id"]
    assert created[ENTERPRISE]["department"] == "Tour Operations"
    # Entra matches on userName ignoring case, and on externalId.
    (by_name,) = entra.search("/Users", 1, filter=f'userName eq "{login.upper()}"')
    assert by_name["id"] == uid
    entra.search("/Users", 1, filter='externalId eq "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"')
    entra.search("/Users", 1, filter=f'emails.value eq "{login.lower()}"')
    # Capitalised ops, a filtered path, a sub-attribute.
    patched = entra.patch(
        f"/Users/{uid}",
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updated@contoso.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
        {"op": "Add", "path": 'emails[type eq "home"].value', "value": "home@contoso.com"},
    )
    assert patched["name"]["familyName"] == "updatedFamilyName"
    assert {e["value"] for e in patched["emails"]} == {"updated@contoso.com", "home@contoso.com"}
    entra.search("/Users", 1, filter='emails.value eq "home@contoso.com"')
    entra.search("/Users", 0, filter=f'emails.value eq "{login}"')

    # A group with members, fetched as Entra does, members removed in both forms.
    members = [uid] + [
        entra.send("POST", "/Users", 201, json={"schemas": [USER], "userName": f"m{i}@contoso"})[
            "id"
        ]
        for i in range(3)
    ]
    group = entra.send(
        "POST",
        "/Groups",
        201,
        json={
            "schemas": [GROUP],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "displayName",
            "meta": {"resourceType": "Group"},
        },
    )
    gid = group["id"]
    (lean,) = entra.search("/Groups", 1, excludedAttributes="members", filter=f'id eq "{gid}"')
    assert "members" not in lean and lean["externalId"].startswith("8aa1a0c0")
    entra.search("/Groups", 1, excludedAttributes="members", filter='displayName eq "displayName"')
    entra.patch(
        f"/Groups/{gid}",
        {"op": "Add", "path": "members", "value": [{"$ref": None, "value": m} for m in members]},
    )
    assert members_of(db, gid) == set(members)
    # Entra's default: the member to remove is in the value. Only that one goes.
    entra.patch(
        f"/Groups/{gid}",
        {"op": "Remove", "path": "members", "value": [{"$ref": None, "value": members[1]}]},
    )
    assert members_of(db, gid) == {members[0], members[2], members[3]}
    # With the compliance flag: a filtered path.
    entra.patch(f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{members[2]}"]'})
    assert members_of(db, gid) == {members[0], members[3]}
    renamed = entra.patch(
        f"/Groups/{gid}", {"op": "Replace", "path": "displayName", "value": "1879db59-new"}
    )
    assert renamed["displayName"] == "1879db59-new"
    # Soft delete: active "False" (a string unless flagged), then the delete itself.
    off = entra.patch(f"/Users/{uid}", {"op": "Replace", "path": "active", "value": "False"})
    assert off["active"] is False and status_of(db, uid) == "inactive"
    entra.send("DELETE", f"/Users/{uid}", 204)
    entra.send("GET", f"/Users/{uid}", 404)
    assert status_of(db, uid) is None and members_of(db, gid) == {members[3]}
    # The group goes although its last member is active: the provider decides.
    entra.send("DELETE", f"/Groups/{gid}", 204)
    entra.search("/Groups", 0, filter=f'id eq "{gid}"')


def test_provisioned_users_live_in_a_protected_group_under_all(
    client: TestClient, acme: TenantFixture
) -> None:
    idp = Idp(client, acme)
    uid = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "p@x"})["id"]
    home = client.get(f"/api/v1/objects/{uid}", headers=acme.admin.headers).json()["homeGroupId"]
    group = client.get(f"/api/v1/groups/{home}", headers=acme.admin.headers).json()
    assert group["name"] == "Provisioned" and group["protected"] is True
    assert group["parentId"] == acme.root_id
    refused = client.delete(f"/api/v1/groups/{home}", headers=acme.admin.headers)
    assert refused.status_code == 409, refused.text
    # The same group for the next one.
    other = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "q@x"})["id"]
    again = client.get(f"/api/v1/objects/{other}", headers=acme.admin.headers).json()
    assert again["homeGroupId"] == home


def test_if_match_names_the_version_a_change_applies_to(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """RFC 9110 conditions, as the native API reads them (api/conditional.py), answered
    in SCIM's error form."""
    idp = Idp(client, acme)
    user = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "etag@x"})
    uid, version = user["id"], user["meta"]["version"]
    assert version == '"1"'
    body = {"schemas": [USER], "userName": "etag@x", "active": False}
    stale = idp.send("PUT", f"/Users/{uid}", 412, json=body, headers={"If-Match": '"7"'})
    assert stale["status"] == "412" and "version 1" in stale["detail"], stale
    # A weak tag never matches If-Match (strong comparison), nor does one never issued.
    idp.send("PUT", f"/Users/{uid}", 412, json=body, headers={"If-Match": 'W/"1"'})
    idp.send("PATCH", f"/Users/{uid}", 412, json=_deactivate(), headers={"If-Match": '"x"'})
    idp.send("PUT", f"/Users/{uid}", 412, json=body, headers={"If-None-Match": "*"})
    malformed = idp.send("PUT", f"/Users/{uid}", 400, json=body, headers={"If-Match": "1"})
    assert malformed["scimType"] == "invalidValue" and "If-Match" in malformed["detail"]
    assert status_of(db, uid) == "active"
    changed = idp.send(
        "PUT", f"/Users/{uid}", 200, json=body, headers={"If-Match": f'"9", {version}'}
    )
    assert changed["meta"]["version"] == '"2"'
    group = idp.send("POST", "/Groups", 201, json={"schemas": [GROUP], "displayName": "E"})
    idp.send("PATCH", f"/Groups/{group['id']}", 412, json=_rename("F"), headers={"If-Match": '"2"'})
    renamed = idp.send(
        "PATCH", f"/Groups/{group['id']}", 200, json=_rename("F"), headers={"If-Match": '"1"'}
    )
    assert renamed["displayName"] == "F" and renamed["meta"]["version"] == '"2"'
    idp.send("DELETE", f"/Groups/{group['id']}", 412, headers={"If-Match": '"1"'})
    idp.send("DELETE", f"/Users/{uid}", 412, headers={"If-Match": version})
    idp.send("DELETE", f"/Users/{uid}", 204, headers={"If-Match": '"2"'})


def _deactivate() -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": False}}]}


def _rename(name: str) -> dict[str, Any]:
    return {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": name}],
    }


def test_filters_and_pages_in_a_stable_order(client: TestClient, acme: TenantFixture) -> None:
    idp = Idp(client, acme)
    made = [
        idp.send(
            "POST",
            "/Users",
            201,
            json={
                "schemas": [USER],
                "userName": f"page{i}@x",
                "displayName": f"Page {i}",
                "active": i % 2 == 0,
                **({"externalId": f"ext-{i}"} if i < 3 else {}),
            },
        )["id"]
        for i in range(7)
    ]
    pages = [
        [
            u["id"]
            for u in idp.search(
                "/Users", 7, filter='userName sw "page"', startIndex=str(s), count="3"
            )
        ]
        for s in (1, 4, 7)
    ]
    assert [i for page in pages for i in page] == made
    idp.search("/Users", 4, filter='userName sw "page" and active eq true')
    idp.search("/Users", 3, filter='externalId pr and userName co "age"')
    idp.search("/Users", 2, filter='displayName eq "page 1" or externalId eq "ext-2"')
    idp.search("/Users", 6, filter='userName sw "page" and displayName ne "Page 3"')
    idp.search("/Users", 4, filter='userName sw "page" and not (externalId pr)')
    idp.search("/Users", 1, filter=f'id eq "{made[5]}"')
    trimmed = idp.search("/Users", 7, filter='userName sw "page"', attributes="userName")
    assert set(trimmed[0]) == {"schemas", "id", "userName"}
    assert idp.search("/Users", 7, filter='userName sw "page"', count="0") == []


def test_a_tenant_names_the_home_of_its_provisioned_users(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    idp = Idp(client, acme)
    chosen = client.post(
        "/api/v1/groups",
        headers=acme.admin.headers,
        json={"name": "People", "parentId": acme.root_id},
    ).json()["id"]
    with transaction(db) as uow:
        set_provisioning_home(uow, actor=system_actor(acme.id), group_id=chosen)
    uid = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "h@x"})["id"]
    home = client.get(f"/api/v1/objects/{uid}", headers=acme.admin.headers).json()
    assert home["homeGroupId"] == chosen
    # Deleted with its users: the next create names the problem and changes nothing.
    gone = client.delete(f"/api/v1/groups/{chosen}", headers=acme.admin.headers)
    assert gone.status_code == 200, gone.text
    refused = idp.send("POST", "/Users", 409, json={"schemas": [USER], "userName": "i@x"})
    assert "provisioning home" in refused["detail"]
    idp.search("/Users", 0, filter='userName eq "i@x"')


def test_the_cli_names_and_clears_the_provisioning_home(
    client: TestClient, acme: TenantFixture, database_url: str
) -> None:
    chosen = client.post(
        "/api/v1/groups",
        headers=acme.admin.headers,
        json={"name": "Staff", "parentId": acme.root_id},
    ).json()["id"]
    env = server_env(database_url)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return run_groupd("tenant", "provisioning-home", *args, env=env)

    named = cli("acme", chosen)
    assert named.returncode == 0 and named.stdout.strip() == chosen, named
    user_group = client.get(
        "/api/v1/groups", headers=acme.admin.headers, params={"name": "Admin"}
    ).json()["items"][0]["id"]
    refused = cli("acme", user_group)
    assert refused.returncode == 1 and "users live in static groups" in refused.stderr, refused
    cleared = cli("acme")
    assert cleared.returncode == 0 and "default" in cleared.stdout, cleared
    uid = Idp(client, acme).send("POST", "/Users", 201, json={"schemas": [USER], "userName": "c@x"})
    home = client.get(f"/api/v1/objects/{uid['id']}", headers=acme.admin.headers).json()
    assert home["homeGroupId"] != chosen


def test_a_membership_patch_is_set_based(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """As many statements for 500 members as for 5: none runs per member."""
    idp = Idp(client, acme)
    first = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "s0@x"})
    home = client.get(f"/api/v1/objects/{first['id']}", headers=acme.admin.headers).json()
    with transaction(db) as uow:
        made = objects.import_objects(
            uow,
            actor=system_actor(acme.id),
            specs=[
                objects.ObjectSpec(
                    kind="user",
                    name=f"s{i}",
                    home_group_uuid=uuid.UUID(home["homeGroupId"]),
                    login_name=f"s{i}@x",
                )
                for i in range(1, 506)
            ],
            now=system_clock(),
        )
    ids = [str(view.uuid) for view in made]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        # The app's own threads (the delete worker, webhook delivery) use the same engine.
        if not threading.current_thread().name.startswith("groupd-"):
            statements.append(statement)

    def add(group_id: str, members: list[str]) -> int:
        statements.clear()
        event.listen(db.engine, "before_cursor_execute", record)
        try:
            idp.patch(
                f"/Groups/{group_id}",
                {"op": "add", "path": "members", "value": [{"value": m} for m in members]},
            )
        finally:
            event.remove(db.engine, "before_cursor_execute", record)
        return len(statements)

    small = idp.send("POST", "/Groups", 201, json={"schemas": [GROUP], "displayName": "Few"})
    big = idp.send("POST", "/Groups", 201, json={"schemas": [GROUP], "displayName": "Many"})
    few = add(small["id"], ids[:5])
    assert few == add(big["id"], ids[5:]), statements
    assert len(members_of(db, big["id"])) == 500
