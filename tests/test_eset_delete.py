"""ESET's DELETE /v1/groups/{groupUuid}: the seed's answers and the response-id protocol."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture
from groupd.clock import ManualClock, system_clock
from groupd.services import operations
from groupd.services.common import system_actor
from groupd.store.db import Database, transaction
from helpers import licence
from invariants import assert_invariants
from test_eset import (
    assert_eset_error,
    assert_request_id,
    eset_client,
    eset_group,
    field_violations,
    import_devices,
    used_units,
)


def snapshot(db: Database) -> dict[str, int]:
    """Row counts that any accepted delete would change."""
    with db.engine.connect() as connection:
        counts = {
            table: connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one()
            for table in ("groups", "objects", "activations", "operations")
        }
        counts["live"] = connection.execute(
            text("SELECT COUNT(*) FROM groups WHERE state = 'live'")
        ).scalar_one()
        counts["used"] = connection.execute(
            text("SELECT COALESCE(SUM(used_units), 0) FROM licences")
        ).scalar_one()
    return counts


def delete(
    client: TestClient,
    headers: dict[str, str],
    group: str,
    *,
    release: bool | None = None,
    response_id: str | None = None,
) -> httpx.Response:
    params = {} if release is None else {"releaseConsumedUnits": str(release).lower()}
    extra = {} if response_id is None else {"response-id": response_id}
    return client.delete(f"/v1/groups/{group}", params=params, headers={**headers, **extra})


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert_request_id(response)
    assert response.json() == {}


def assert_pending(response: httpx.Response) -> str:
    """The seed's 202: ``response-id`` and ``request-id`` headers, body ``[]``."""
    assert response.status_code == 202, response.text
    assert_request_id(response)
    assert response.json() == []
    response_id = response.headers["response-id"]
    assert str(uuid.UUID(response_id)) == response_id
    return response_id


def test_delete_releases_units_or_keeps_them(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    seats = licence(client, h, "ESET PROTECT Entry", 50)
    mail = licence(client, h, "ESET Mail Security", 100, unit_kind="user")
    released = eset_group(client, h, acme.root_id, "Released")
    inner = eset_group(client, h, released["uuid"], "Inner")
    kept = eset_group(client, h, acme.root_id, "Kept")
    products = ["ESET PROTECT Entry", {"product": "ESET Mail Security", "units": 5}]
    import_devices(client, h, inner["uuid"], 6, products)
    import_devices(client, h, kept["uuid"], 4, products)
    assert (used_units(client, h, seats["id"]), used_units(client, h, mail["id"])) == (10, 50)
    assert_ok(delete(client, h, released["uuid"], release=True))
    # seats and user units both come back (groupd goes beyond ESET's "only seats")
    assert (used_units(client, h, seats["id"]), used_units(client, h, mail["id"])) == (4, 20)
    assert_ok(delete(client, h, kept["uuid"]))  # releaseConsumedUnits defaults to false
    assert (used_units(client, h, seats["id"]), used_units(client, h, mail["id"])) == (4, 20)
    orphans = client.get(
        f"/api/v1/licenses/{seats['id']}/activations", params={"orphaned": "true"}, headers=h
    ).json()["items"]
    assert len(orphans) == 4
    for group in (released, inner, kept):
        assert_eset_error(delete(client, h, group["uuid"]), 404)
        assert_eset_error(client.get(f"/v1/device_groups/{group['uuid']}/devices", headers=h), 404)
    names = {
        g["displayName"] for g in client.get("/v1/device_groups", headers=h).json()["deviceGroups"]
    }
    assert names == {"All", "Lost & found"}
    assert_invariants(db)


def test_refusals_are_400_and_change_nothing(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    h = acme.editor.headers
    customers = eset_group(client, h, acme.root_id, "Customers")
    region = eset_group(client, h, customers["uuid"], "Region")
    contoso = eset_group(client, h, region["uuid"], "Contoso", linkedEntityType="CUSTOMER")
    unlinked = eset_group(
        client, h, acme.root_id, "Plain", linkedEntityType="GROUP_ENTITY_TYPE_UNSPECIFIED"
    )
    licence(client, h, "EP", 10)
    import_devices(client, h, contoso["uuid"], 3, ["EP"])
    before = snapshot(db)
    for target in (customers, region, contoso):
        refused = delete(client, h, target["uuid"], release=True)
        body = assert_eset_error(refused, 400)
        assert "Contoso" in body["message"] and "CUSTOMER" in body["message"]
        (detail,) = body["details"]
        assert detail["@type"] == "type.googleapis.com/google.rpc.PreconditionFailure"
        assert detail["violations"][0]["type"] == "LINKED_ENTITY"
        assert detail["violations"][0]["subject"] == f"groups/{contoso['uuid']}"
    for protected in (acme.root_id, acme.lost_and_found_id):
        body = assert_eset_error(delete(client, h, protected), 400)
        assert body["details"][0]["violations"][0]["type"] == "PROTECTED_GROUP"
    bad_flag = client.delete(
        f"/v1/groups/{customers['uuid']}", params={"releaseConsumedUnits": "maybe"}, headers=h
    )
    assert field_violations(assert_eset_error(bad_flag, 400)) == ["releaseConsumedUnits"]
    malformed = client.delete("/v1/groups/not-a-uuid", headers=h)
    assert field_violations(assert_eset_error(malformed, 400)) == ["groupUuid"]
    assert_eset_error(delete(client, h, str(uuid.uuid4())), 404)
    assert_eset_error(delete(client, h, acme.admin_group_id), 404)  # a user group
    assert snapshot(db) == before
    assert_ok(delete(client, h, unlinked["uuid"]))  # UNSPECIFIED links nothing
    assert_invariants(db)


def test_other_tenants_group_is_404(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    group = eset_group(client, acme.editor.headers, acme.root_id, "Acme only")
    before = snapshot(db)
    assert_eset_error(delete(client, globex.editor.headers, group["uuid"]), 404)
    assert_eset_error(delete(client, globex.editor.headers, acme.root_id), 404)
    assert snapshot(db) == before
    assert_invariants(db)


def _pending_delete(
    client: TestClient, headers: dict[str, str], parent: str, name: str
) -> tuple[str, str]:
    group = eset_group(client, headers, parent, name)
    child = eset_group(client, headers, group["uuid"], f"{name} child")
    import_devices(client, headers, child["uuid"], 5, [])
    return group["uuid"], assert_pending(delete(client, headers, group["uuid"], release=True))


def test_response_id_protocol(
    database_url: str, db: Database, acme: TenantFixture, globex: TenantFixture
) -> None:
    h = acme.editor.headers
    with eset_client(database_url, db, clock=ManualClock(), eset_wait_seconds=0) as client:
        worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
        worker.stop()  # the delete stays in phase 2 until the test lets it run
        other = eset_group(client, h, acme.root_id, "Other")
        group, response_id = _pending_delete(client, h, acme.root_id, "Slow")
        # the subtree is gone from every read at once
        assert_eset_error(client.get(f"/v1/device_groups/{group}/devices", headers=h), 404)
        assert response_id == assert_pending(
            delete(client, h, group, release=True, response_id=response_id)
        )
        # only the identical request of the same tenant collects
        for response in (
            delete(client, globex.editor.headers, group, release=True, response_id=response_id),
            delete(client, h, other["uuid"], release=True, response_id=response_id),
            delete(client, h, group, release=False, response_id=response_id),
            delete(client, h, group, release=True, response_id=str(uuid.uuid4())),
        ):
            assert_eset_error(response, 404)
        bad = delete(client, h, group, release=True, response_id="soon")
        assert field_violations(assert_eset_error(bad, 400)) == ["response-id"]
        assert worker.run_until_idle() == 1
        assert_ok(delete(client, h, group, release=True, response_id=response_id))
        gone = delete(client, h, group, release=True, response_id=response_id)
        assert "collected" in assert_eset_error(gone, 404)["message"]
    assert_invariants(db)


def test_poll_timeout_is_504(database_url: str, db: Database, acme: TenantFixture) -> None:
    h = acme.editor.headers
    clock = ManualClock()
    with eset_client(
        database_url, db, clock=clock, eset_wait_seconds=0, eset_poll_timeout_seconds=120
    ) as client:
        worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
        worker.stop()
        group, response_id = _pending_delete(client, h, acme.root_id, "Stuck")
        clock.advance(119)
        assert_pending(delete(client, h, group, release=True, response_id=response_id))
        clock.advance(1)
        timed_out = delete(client, h, group, release=True, response_id=response_id)
        body = assert_eset_error(timed_out, 504)
        assert "timeout" in body["message"]
        assert_eset_error(delete(client, h, group, release=True, response_id=response_id), 504)
        # the delete itself is durable: it finishes, and its result can still be fetched once
        worker.run_until_idle()
        assert_ok(delete(client, h, group, release=True, response_id=response_id))
        assert_eset_error(delete(client, h, group, release=True, response_id=response_id), 404)
    assert_invariants(db)


def test_uncollected_result_is_dropped(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    h = acme.editor.headers
    clock = ManualClock()
    with eset_client(
        database_url, db, clock=clock, eset_wait_seconds=0, eset_uncollected_ttl_seconds=600
    ) as client:
        worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
        worker.stop()
        first, first_id = _pending_delete(client, h, acme.root_id, "Collected in time")
        second, second_id = _pending_delete(client, h, acme.root_id, "Left too long")
        assert worker.run_until_idle() == 2
        clock.advance(599)
        assert_ok(delete(client, h, first, release=True, response_id=first_id))
        clock.advance(1)
        late = delete(client, h, second, release=True, response_id=second_id)
        assert "no longer kept" in assert_eset_error(late, 404)["message"]
    assert_invariants(db)


def test_fast_delete_answers_at_once(database_url: str, db: Database, acme: TenantFixture) -> None:
    h = acme.editor.headers
    with eset_client(database_url, db, eset_wait_seconds=30) as client:
        group = eset_group(client, h, acme.root_id, "Quick")
        response = delete(client, h, group["uuid"], release=True)
        assert_ok(response)
        assert "response-id" not in response.headers
        events: list[Any] = client.get(
            "/api/v1/audit", params={"target": group["uuid"]}, headers=h
        ).json()["items"]
        # the same audit trail as a native delete, marked as coming from the ESET face
        assert [(e["action"], e["source"]) for e in events] == [
            ("group.create", "eset"),
            ("group.delete.accepted", "eset"),
            ("group.delete.succeeded", "eset"),
        ]
    assert_invariants(db)


def test_failed_operation_is_500(database_url: str, db: Database, acme: TenantFixture) -> None:
    """Unreachable by design (a failed delete is a bug); forced here through the service
    the worker uses when a delete cannot finish, to check the answer's shape."""
    h = acme.editor.headers
    with eset_client(database_url, db, eset_wait_seconds=0) as client:
        worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
        worker.stop()
        group, response_id = _pending_delete(client, h, acme.root_id, "Doomed")
        with transaction(db) as uow:
            operation = operations.get_operation(
                uow, actor=system_actor(acme.id), operation_id=response_id, now=system_clock()
            )
            operations.fail(
                uow, operation_id=operation.id, error="simulated", now=system_clock(), ttl=60
            )
        failed = delete(client, h, group, release=True, response_id=response_id)
        body = assert_eset_error(failed, 500)
        assert body["details"] == [
            {
                "@type": "type.googleapis.com/google.rpc.RequestInfo",
                "requestId": failed.headers["request-id"],
            }
        ]
        assert_eset_error(delete(client, h, group, release=True, response_id=response_id), 404)
    # the failed operation's groups stay hidden for an operator: not a settled state
    assert_invariants(db, settled=False)
