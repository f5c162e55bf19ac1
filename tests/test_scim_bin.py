"""A SCIM group's delete goes to the recycle bin like every delete, and a restore brings
it back with its id and memberships; a user's delete removes the user at once (decision
0056); the page's ``totalResults`` comes from kept counts that every create, move, delete
and restore leaves exact (decision 0055)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.settings import Settings
from groupd.store.db import Database
from helpers import create, user
from test_scim_providers import GROUP, USER, Idp

pytestmark = pytest.mark.usefixtures("check_invariants")
RETENTION = 3600  # an hour: the fixtures' tokens live a day


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, retention_seconds=RETENTION)


@pytest.fixture
def client(settings: Settings, db: Database) -> Iterator[TestClient]:
    context = AppContext.create(settings, db=db)
    with TestClient(create_app(context=context), raise_server_exceptions=True) as test_client:
        yield test_client


def bin_entry(client: TestClient, acme: TenantFixture, name: str) -> dict[str, Any]:
    listed = client.get("/api/v1/deleted-groups", headers=acme.admin.headers)
    assert listed.status_code == 200, listed.text
    (entry,) = [e for e in listed.json()["items"] if e["name"] == name]
    return entry  # type: ignore[no-any-return]


def restore(client: TestClient, acme: TenantFixture, entry_id: str) -> None:
    answer = client.post(
        f"/api/v1/deleted-groups/{entry_id}/restore", json={}, headers=acme.admin.headers
    )
    assert answer.status_code == 200, answer.text


def members(idp: Idp, group_id: str) -> set[str]:
    group = idp.send("GET", f"/Groups/{group_id}", 200)
    return {m["value"] for m in group.get("members", [])}


def test_a_deleted_user_is_removed_at_once_and_its_name_is_free_again(
    client: TestClient, acme: TenantFixture
) -> None:
    """A user is an object, not a subtree: a provider's delete removes it as the native
    API's does (decision 0056), so the provider can create the same userName again."""
    idp = Idp(client, acme)
    ann = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "ann@x"})["id"]
    bob = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "bob@x"})["id"]
    team = idp.send(
        "POST",
        "/Groups",
        201,
        json={
            "schemas": [GROUP],
            "displayName": "Team",
            "members": [{"value": ann}, {"value": bob}],
        },
    )["id"]
    idp.search("/Users", 2)

    idp.send("DELETE", f"/Users/{ann}", 204)
    idp.send("GET", f"/Users/{ann}", 404)
    idp.search("/Users", 1)
    idp.search("/Users", 0, filter='userName eq "ann@x"')
    assert members(idp, team) == {bob}
    listed = client.get("/api/v1/deleted-groups", headers=acme.admin.headers).json()["items"]
    assert listed == []
    again = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "ann@x"})
    assert again["id"] != ann
    idp.search("/Users", 2)


def test_a_deleted_group_waits_in_the_bin_and_comes_back_with_its_members(
    client: TestClient, acme: TenantFixture
) -> None:
    idp = Idp(client, acme)
    ann = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "ann@x"})["id"]
    team = idp.send(
        "POST",
        "/Groups",
        201,
        json={"schemas": [GROUP], "displayName": "Team", "members": [{"value": ann}]},
    )["id"]
    idp.send("DELETE", f"/Groups/{team}", 204)
    idp.send("GET", f"/Groups/{team}", 404)
    idp.search("/Groups", 0, filter='displayName eq "Team"')
    idp.send("GET", f"/Users/{ann}", 200)  # the members stay
    restore(client, acme, bin_entry(client, acme, "Team")["id"])
    assert members(idp, team) == {ann}


def test_the_page_total_is_every_live_user_after_creates_moves_deletes_and_restores(
    client: TestClient, acme: TenantFixture
) -> None:
    """``totalResults`` of an unfiltered page (the kept counts) against the same total
    counted row by row (a filter every user passes)."""
    idp = Idp(client, acme)
    h = acme.editor.headers

    def totals_agree(expected: int) -> None:
        idp.search("/Users", expected)
        idp.search("/Users", expected, filter="userName pr")

    scim = idp.send("POST", "/Users", 201, json={"schemas": [USER], "userName": "s@x"})["id"]
    office = create(client, h, "/api/v1/groups", {"name": "Office", "parentId": acme.root_id})
    desk = create(client, h, "/api/v1/groups", {"name": "Desk", "parentId": office["id"]})
    people = [user(client, h, desk["id"], f"p{i}@x")["id"] for i in range(3)]
    create(
        client,
        h,
        "/api/v1/objects",
        {"kind": "device", "name": "laptop", "homeGroupId": desk["id"]},
    )
    totals_agree(4)
    moved = client.post(
        f"/api/v1/objects/{people[0]}/move", json={"groupId": office["id"]}, headers=h
    )
    assert moved.status_code == 200, moved.text
    moved = client.post(f"/api/v1/objects/{scim}/move", json={"groupId": desk["id"]}, headers=h)
    assert moved.status_code == 200, moved.text
    totals_agree(4)
    gone = client.delete(f"/api/v1/groups/{desk['id']}", headers=h)
    assert gone.status_code == 200, gone.text
    totals_agree(1)  # p0, moved out of the desk before it went
    restore(client, acme, desk["id"])
    totals_agree(4)
    idp.send("DELETE", f"/Users/{people[1]}", 204)
    totals_agree(3)
    purged = client.delete(
        f"/api/v1/groups/{office['id']}", params={"permanent": "true"}, headers=acme.admin.headers
    )
    assert purged.status_code == 200, purged.text
    totals_agree(0)
