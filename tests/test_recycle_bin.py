"""The recycle bin: delete to the bin, restore exactly, every conflict at once, purge."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings, seed_tenant
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import ManualClock, system_clock
from groupd.errors import Conflict
from groupd.services import deletion, groups, operations
from groupd.services import restore as bin_restore
from groupd.services.common import Actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.worker import Worker
from helpers import build_tree, create, devices, licence, user, wait_operation
from invariants import assert_invariants
from test_appviewx import add_group, session_for, user_group_id
from test_appviewx import delete as avx_delete
from test_appviewx import search as avx_search
from test_oaa import BASE as OAA
from test_oaa import create_json, native_policy_group, token_basic

# An hour, not the default week: the fixtures' tokens live a day.
RETENTION = 3600
DUMPED = ("groups", "objects", "memberships", "activations", "licences", "bin_entries")


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, retention_seconds=RETENTION)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def context(settings: Settings, db: Database, clock: ManualClock) -> AppContext:
    return AppContext.create(settings, db=db, clock=clock)


@pytest.fixture
def client(context: AppContext) -> Iterator[TestClient]:
    with TestClient(create_app(context=context), raise_server_exceptions=True) as test_client:
        yield test_client


def dump(db: Database) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tables a delete and a restore touch, in key order."""
    with db.engine.connect() as connection:
        return {
            table: [
                tuple(row) for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
            ]
            for table in DUMPED
        }


def delete(client: TestClient, headers: dict[str, str], group: str, **params: Any) -> Any:
    query = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
    return client.delete(f"/api/v1/groups/{group}", params=query, headers=headers)


def restore(client: TestClient, headers: dict[str, str], group: str, **body: Any) -> Any:
    return client.post(f"/api/v1/deleted-groups/{group}/restore", json=body, headers=headers)


def used(client: TestClient, headers: dict[str, str], licence_id: str) -> int:
    body = client.get(f"/api/v1/licenses/{licence_id}", headers=headers).json()
    return int(body["usedUnits"])


def branch_with_devices(
    client: TestClient, acme: TenantFixture, *, product: str = "EDR", total: int = 100
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """A three-level subtree with devices holding units, a user homed in it who is a
    member of a user group outside it; returns the groups, the licence and the user."""
    h = acme.editor.headers
    ids = build_tree(client, h, acme.root_id, fanout=2, depth=3)
    seats = licence(client, h, product, total)
    devices(client, h, ids[0], 3, product=product, units=2)
    devices(client, h, ids[1], 4, product=product)  # outside the subtree of ids[0]
    person = user(client, h, ids[2], "pat")
    team = create(client, h, "/api/v1/groups", {"name": "Team", "kind": "user"})
    put = client.put(f"/api/v1/groups/{team['id']}/members/{person['id']}", headers=h)
    assert put.status_code in (200, 201, 204), put.text
    return ids, seats, person


def test_delete_to_the_bin_and_restore_leave_every_table_as_it_was(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    ids, seats, person = branch_with_devices(client, acme)
    before = dump(db)
    assert used(client, h, seats["id"]) == 10
    response = delete(client, h, ids[0], releaseConsumedUnits=True)
    assert response.status_code == 200, response.text
    result = response.json()["result"]["body"]
    assert result["binned"]["groups"] == 7 and result["unitsReleased"] == 6
    # Gone from every read at once; the units are back.
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 404
    assert client.get(f"/api/v1/objects/{person['id']}", headers=h).status_code == 404
    listed = client.get(f"/api/v1/licenses/{seats['id']}/activations", headers=h).json()
    assert len(listed["items"]) == 4  # only the devices outside the subtree
    assert used(client, h, seats["id"]) == 4
    assert_invariants(db)
    entry = client.get(f"/api/v1/deleted-groups/{ids[0]}", headers=h).json()
    assert entry["counts"] == {
        "groups": 7,
        "devices": 3,
        "users": 1,
        "memberships": 1,
        "activations": 3,
    }
    assert entry["units"] == [
        {
            "licenceId": seats["id"],
            "product": "EDR",
            "unitKind": "seat",
            "activations": 3,
            "units": 6,
        }
    ]
    assert entry["pathNames"] == ["All", "g0-0"] and entry["deletedBy"] == acme.editor.username
    listing = client.get("/api/v1/deleted-groups", headers=h).json()
    assert [item["id"] for item in listing["items"]] == [ids[0]]

    restored = restore(client, h, ids[0])
    assert restored.status_code == 200, restored.text
    assert restored.json()["result"]["body"]["unitsTaken"] == 6
    assert dump(db) == before
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 200
    assert client.get("/api/v1/deleted-groups", headers=h).json()["items"] == []
    assert_invariants(db)


def test_a_restore_is_an_operation_with_progress_per_kind(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """A restore that does not end within ``wait`` answers 202 with where to poll, and
    its operation shows, per kind, what it brings back before and after it ran."""
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    deleted = delete(client, h, ids[0], releaseConsumedUnits=True)
    assert deleted.status_code == 200, deleted.text
    worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
    worker.stop()  # the restore waits in its operation while we look
    response = client.post(
        f"/api/v1/deleted-groups/{ids[0]}/restore", params={"wait": 0}, json={}, headers=h
    )
    assert response.status_code == 202, response.text
    operation_id = response.headers["response-id"]
    assert response.headers["location"] == f"/api/v1/operations/{operation_id}"
    waiting = client.get(f"/api/v1/operations/{operation_id}", headers=h).json()
    assert waiting["state"] == "accepted"
    expected = {"groups": 7, "devices": 3, "users": 1, "memberships": 1, "activations": 3}
    assert {kind: waiting["progress"][kind] for kind in expected} == {
        kind: {"done": 0, "total": total} for kind, total in expected.items()
    }
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 404
    worker.run_until_idle()
    final = wait_operation(client, h, operation_id)
    assert final["state"] == "succeeded", final
    assert {kind: final["progress"][kind] for kind in expected} == {
        kind: {"done": total, "total": total} for kind, total in expected.items()
    }
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 200
    assert used(client, h, seats["id"]) == 10
    assert_invariants(db)


def test_a_delete_to_the_bin_counted_in_its_write_records_the_same_entry(
    client: TestClient,
    acme: TenantFixture,
    db: Database,
    settings: Settings,
    clock: ManualClock,
) -> None:
    """The worker counts a binned subtree in a snapshot before the delete's write; a
    step run without that count (it failed) counts in the write, to the same entry."""
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    client.app.state.ctx.worker.stop()  # type: ignore[attr-defined]
    response = delete(client, h, ids[0], releaseConsumedUnits=True, wait=0)
    assert response.status_code == 202, response.text
    operation_uuid = response.headers["response-id"]
    worker = Worker(db, settings)
    with transaction(db) as uow:
        operation_id = operations.claim(
            uow, worker_id=worker.id, host="test", now=clock(), lease_seconds=60
        )
    assert operation_id is not None
    with transaction(db) as uow:
        step = deletion.run_delete_chunk(
            uow,
            operation_id=operation_id,
            worker_id=worker.id,
            now=clock(),
            lease_seconds=60,
            chunk_groups=400,
            chunk_objects=40_000,
            result_ttl_seconds=3600,
        )
    assert step.finished
    final = wait_operation(client, h, operation_uuid)
    assert final["result"]["body"]["binned"] == {
        "groups": 7,
        "devices": 3,
        "users": 1,
        "memberships": 1,
        "activations": 3,
    }
    entry = client.get(f"/api/v1/deleted-groups/{ids[0]}", headers=h).json()
    assert entry["units"][0]["units"] == 6 and entry["counts"]["devices"] == 3
    assert used(client, h, seats["id"]) == 4
    assert_invariants(db)


def test_a_subtree_is_neither_restored_nor_purged_before_its_delete_has_run(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    """The delete's operation gives the units back and fills the entry: until it has
    run, a restore or a purge of that entry is refused (409), nothing changed."""
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
    worker.stop()
    response = delete(client, h, ids[0], releaseConsumedUnits=True, wait=0)
    assert response.status_code == 202, response.text
    early = restore(client, h, ids[0])
    assert early.status_code == 409 and early.json()["code"] == "delete_pending", early.text
    purge = client.delete(f"/api/v1/deleted-groups/{ids[0]}", headers=acme.admin.headers)
    assert purge.status_code == 409 and purge.json()["code"] == "delete_pending", purge.text
    worker.run_until_idle()
    assert used(client, h, seats["id"]) == 4
    again = client.post(
        f"/api/v1/deleted-groups/{ids[0]}/restore", params={"wait": 0}, json={}, headers=h
    )
    assert again.status_code == 202, again.text  # the worker is stopped: it waits
    worker.run_until_idle()
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).status_code == 200
    assert used(client, h, seats["id"]) == 10
    assert_invariants(db)


def test_without_releasing_units_they_stay_consumed_in_the_bin_and_orphan_at_purge(
    client: TestClient, acme: TenantFixture, db: Database, clock: ManualClock, context: AppContext
) -> None:
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    before = dump(db)
    assert delete(client, h, ids[0]).status_code == 200
    assert used(client, h, seats["id"]) == 10
    assert restore(client, h, ids[0]).status_code == 200
    assert dump(db) == before
    assert delete(client, h, ids[0]).status_code == 200
    # The purge runs here, not on the app's worker thread, which would otherwise start it
    # too and leave nothing for this call while it runs (the check below would race it).
    context.worker.stop()
    clock.advance(RETENTION + 1)
    context.worker.run_until_idle()
    assert client.get(f"/api/v1/deleted-groups/{ids[0]}", headers=h).status_code == 404
    orphans = client.get(
        f"/api/v1/licenses/{seats['id']}/activations", params={"orphaned": "true"}, headers=h
    ).json()["items"]
    assert len(orphans) == 3 and used(client, h, seats["id"]) == 10
    assert_invariants(db)


def test_purge_by_retention_removes_the_rows_and_says_so(
    client: TestClient, acme: TenantFixture, db: Database, clock: ManualClock, context: AppContext
) -> None:
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    assert delete(client, h, ids[0], releaseConsumedUnits=True).status_code == 200
    context.worker.stop()  # the purge runs here (see above)
    clock.advance(RETENTION - 60)
    context.worker.run_until_idle()
    assert client.get(f"/api/v1/deleted-groups/{ids[0]}", headers=h).status_code == 200
    clock.advance(120)
    context.worker.run_until_idle()
    assert client.get(f"/api/v1/deleted-groups/{ids[0]}", headers=h).status_code == 404
    with db.engine.connect() as connection:
        left = connection.execute(text("SELECT count(*) FROM groups WHERE state <> 'live'"))
        assert left.scalar_one() == 0
        activations = connection.execute(text("SELECT count(*) FROM activations"))
        assert activations.scalar_one() == 4
    assert used(client, h, seats["id"]) == 4
    events = client.get(
        "/api/v1/audit", params={"action": "group.purge"}, headers=acme.admin.headers
    )
    purged = [e for e in events.json()["items"] if e["action"] == "group.purge"]
    assert purged and purged[0]["counts"]["deleted"]["groups"] == 7
    assert_invariants(db)


def test_purge_now_is_for_admins(client: TestClient, acme: TenantFixture, db: Database) -> None:
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    assert delete(client, h, ids[0], releaseConsumedUnits=True).status_code == 200
    url = f"/api/v1/deleted-groups/{ids[0]}"
    assert client.delete(url, headers=h).status_code == 403
    purged = client.delete(url, headers=acme.admin.headers)
    assert purged.status_code == 200, purged.text
    assert client.get(url, headers=h).status_code == 404
    assert restore(client, h, ids[0]).status_code == 404
    assert used(client, h, seats["id"]) == 4
    assert_invariants(db)


def test_permanent_delete_skips_the_bin_for_admins_only(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    ids, seats, _person = branch_with_devices(client, acme)
    assert delete(client, acme.editor.headers, ids[0], permanent=True).status_code == 403
    response = delete(client, acme.admin.headers, ids[0], permanent=True, releaseConsumedUnits=True)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["body"]["deleted"]["groups"] == 7
    assert client.get("/api/v1/deleted-groups", headers=acme.admin.headers).json()["items"] == []
    with db.engine.connect() as connection:
        # Those of the devices outside the subtree.
        assert connection.execute(text("SELECT count(*) FROM activations")).scalar_one() == 4
    assert used(client, acme.admin.headers, seats["id"]) == 4
    assert_invariants(db)


def test_a_permanent_delete_takes_along_a_subtree_binned_inside_it(
    client: TestClient, acme: TenantFixture, db: Database, clock: ManualClock, context: AppContext
) -> None:
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme)
    inner = ids[2]  # g1-0 under g0-0, where the user lives
    devices(client, h, ids[6], 2, product="EDR")  # g2-0 under g1-0
    assert delete(client, h, inner, releaseConsumedUnits=True).status_code == 200
    assert used(client, h, seats["id"]) == 10
    response = delete(
        client, acme.admin.headers, ids[0], permanent=True, releaseConsumedUnits=True, wait=0
    )
    assert response.status_code == 202, response.text
    # The delete waits for the purge of the subtree binned inside it, then goes on (a
    # while later by the clock: the injected one is moved on here).
    for _ in range(40):
        clock.advance(5)
        context.worker.run_until_idle()
        done = client.get(f"/api/v1/operations/{response.json()['id']}", headers=h).json()
        if done["state"] == "succeeded":
            break
        time.sleep(0.05)  # the app's own worker may hold it for a moment
    assert done["state"] == "succeeded", done
    assert client.get("/api/v1/deleted-groups", headers=h).json()["items"] == []
    assert used(client, h, seats["id"]) == 4
    assert_invariants(db)


def test_every_conflict_is_named_at_once(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    ids, seats, _person = branch_with_devices(client, acme, total=10)
    assert delete(client, h, ids[0], releaseConsumedUnits=True).status_code == 200
    create(client, h, "/api/v1/groups", {"name": "g0-0", "parentId": acme.root_id})
    devices(client, h, acme.lost_and_found_id, 5, product="EDR")
    before = dump(db)
    refused = restore(client, h, ids[0])
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "restore_conflict"
    kinds = {item["kind"]: item for item in problem["conflicts"]}
    assert kinds["name_taken"]["name"] == "g0-0"
    assert kinds["units_unavailable"] == {
        "kind": "units_unavailable",
        "licenceId": seats["id"],
        "product": "EDR",
        "needed": 6,
        "free": 1,
    }
    assert dump(db) == before
    # Under another name, and once units are free, it comes back.
    held = client.get(f"/api/v1/licenses/{seats['id']}/activations", headers=h).json()["items"]
    for item in held[-5:]:
        client.delete(f"/api/v1/licenses/{seats['id']}/activations/{item['id']}", headers=h)
    back = restore(client, h, ids[0], name="g0-0 (restored)")
    assert back.status_code == 200, back.text
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).json()["name"] == "g0-0 (restored)"
    assert_invariants(db)


def test_parent_gone_and_names_taken_in_one_answer(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    top = create(client, h, "/api/v1/groups", {"name": "Staff", "kind": "user"})
    mid = create(
        client, h, "/api/v1/groups", {"name": "Ops", "kind": "user", "parentId": top["id"]}
    )
    leaf = create(
        client, h, "/api/v1/groups", {"name": "Oncall", "kind": "user", "parentId": mid["id"]}
    )
    assert delete(client, h, mid["id"]).status_code == 200
    assert delete(client, h, top["id"]).status_code == 200
    create(client, h, "/api/v1/groups", {"name": "Ops", "kind": "user"})
    create(client, h, "/api/v1/groups", {"name": "Oncall", "kind": "user"})
    refused = restore(client, h, mid["id"])
    assert refused.status_code == 409, refused.text
    conflicts = refused.json()["conflicts"]
    assert sorted(c["kind"] for c in conflicts) == ["name_taken", "name_taken", "parent_gone"]
    assert {c["groupId"] for c in conflicts if c["kind"] == "name_taken"} == {mid["id"], leaf["id"]}
    # The parent first; then the child under it, renamed, with its own child renamed away.
    assert restore(client, h, top["id"]).status_code == 200
    other = create(client, h, "/api/v1/groups", {"name": "Elsewhere", "kind": "user"})
    still = restore(client, h, mid["id"], name="Ops 2", parentId=other["id"])
    assert [c["kind"] for c in still.json()["conflicts"]] == ["name_taken"]
    assert_invariants(db)


def test_another_tenants_bin_ids_answer_404(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    globex = seed_tenant(db, "globex")
    group = create(
        client, acme.editor.headers, "/api/v1/groups", {"name": "Lab", "parentId": acme.root_id}
    )
    assert delete(client, acme.editor.headers, group["id"]).status_code == 200
    url = f"/api/v1/deleted-groups/{group['id']}"
    assert client.get(url, headers=globex.admin.headers).status_code == 404
    assert client.post(f"{url}/restore", headers=globex.admin.headers).status_code == 404
    assert client.delete(url, headers=globex.admin.headers).status_code == 404
    assert client.get("/api/v1/deleted-groups", headers=globex.admin.headers).json()["items"] == []
    assert_invariants(db)


def test_a_restore_racing_a_create_of_the_same_name_lets_exactly_one_win(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    actor = Actor(tenant_id=acme.id, account_id=None, username="racer", role="editor")
    outcomes: list[tuple[str, str]] = []
    for round_ in range(6):
        name = f"Race {round_}"
        group = create(
            client, acme.editor.headers, "/api/v1/groups", {"name": name, "kind": "user"}
        )
        assert delete(client, acme.editor.headers, group["id"]).status_code == 200
        start = threading.Barrier(2)
        results: dict[str, str] = {}

        def restoring(
            group_id: str = group["id"],
            start: threading.Barrier = start,
            results: dict[str, str] = results,
        ) -> None:
            start.wait()
            try:
                with transaction(db) as uow:
                    bin_restore.restore(uow, actor=actor, group_id=group_id, now=system_clock())
                results["restore"] = "won"
            except Conflict as error:
                results["restore"] = error.code

        def creating(
            name: str = name,
            start: threading.Barrier = start,
            results: dict[str, str] = results,
        ) -> None:
            start.wait()
            try:
                with transaction(db) as uow:
                    groups.create_group(
                        uow,
                        actor=actor,
                        spec=groups.GroupSpec(name=name, kind="user"),
                        now=system_clock(),
                    )
                results["create"] = "won"
            except Conflict as error:
                results["create"] = error.code

        threads = [threading.Thread(target=restoring), threading.Thread(target=creating)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(results.values()).count("won") == 1, results
        outcomes.append((results["restore"], results["create"]))
        listed = client.get(
            "/api/v1/groups", params={"kind": "user", "name": name}, headers=acme.editor.headers
        ).json()["items"]
        assert len(listed) == 1
        assert_invariants(db)
    # A refused restore names the taken name and leaves the subtree in the bin.
    for restore_outcome, _create in outcomes:
        assert restore_outcome in ("won", "restore_conflict")


def test_dialect_deletes_land_in_the_bin_and_restored_groups_show_through_them(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    # ESET: a device group.
    office = create(client, h, "/api/v1/groups", {"name": "Office", "parentId": acme.root_id})
    assert client.delete(f"/v1/groups/{office['id']}", headers=h).status_code == 200
    # OAA: a policy group.
    basic = token_basic(acme.editor)
    policy = create_json(client, basic, groupname="Factors")
    policy_id = native_policy_group(client, acme, "Factors")["id"]
    assert client.delete(f"{OAA}/{policy['groupid']}", headers=basic).status_code == 200
    # AppViewX: a user group.
    session = session_for(db, acme.editor)
    assert add_group(client, session, "Operators").status_code in (200, 201)
    operators = user_group_id(client, acme, "Operators")
    assert avx_delete(client, session, "Operators").status_code == 200
    binned = {
        item["id"] for item in client.get("/api/v1/deleted-groups", headers=h).json()["items"]
    }
    assert binned == {office["id"], policy_id, operators}
    assert client.get(f"/v1/device_groups/{office['id']}/devices", headers=h).status_code == 404
    assert client.get(f"{OAA}/{policy['groupid']}", headers=basic).status_code == 404
    for group in binned:
        assert restore(client, h, group).status_code == 200
    assert client.get(f"/v1/device_groups/{office['id']}/devices", headers=h).status_code == 200
    assert client.get(f"{OAA}/{policy['groupid']}", headers=basic).status_code == 200
    found = avx_search(client, session, filterValue="Operators").json()
    assert found["response"]["totalRecords"] == 1
    assert_invariants(db)


def test_a_restore_under_another_parent_moves_the_whole_subtree(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    ids, seats, person = branch_with_devices(client, acme)
    assert delete(client, h, ids[2]).status_code == 200  # g1-0, binned inside g0-0 later
    assert delete(client, h, ids[0], releaseConsumedUnits=True).status_code == 200
    assert restore(client, h, ids[2]).json()["conflicts"][0]["kind"] == "parent_gone"
    back = restore(client, h, ids[0], parentId=ids[1])
    assert back.status_code == 200, back.text
    assert client.get(f"/api/v1/groups/{ids[0]}", headers=h).json()["parentId"] == ids[1]
    # The subtree binned inside it moved with it, and comes back under it.
    assert restore(client, h, ids[2]).status_code == 200
    assert client.get(f"/api/v1/objects/{person['id']}", headers=h).status_code == 200
    under = client.get(
        f"/api/v1/groups/{ids[1]}/objects", params={"recursive": "true"}, headers=h
    ).json()["items"]
    assert len(under) == 3 + 4 + 1  # its own devices, the moved subtree's devices and user
    assert used(client, h, seats["id"]) == 10
    assert_invariants(db)
