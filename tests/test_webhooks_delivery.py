"""Events delivered to a real receiver on loopback: every type, signed, in order, through
outages; nothing from a rolled-back change; nothing across tenants."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import ManualClock, system_clock
from groupd.delivery.dispatcher import Dispatcher
from groupd.services import audit, groups
from groupd.services.common import system_actor
from groupd.services.webhooks import addresses, outbox, relay, subscriptions
from groupd.services.webhooks import deliveries as deliveries_service
from groupd.services.webhooks.catalogue import EVENT_TYPES
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.store.models import AuditEvent, WebhookDelivery, WebhookSubscription
from groupd.store.queue import queue_file
from helpers import create, devices, licence, user, wait_operation
from invariants import assert_invariants
from webhook_receiver import Receiver


@pytest.fixture
def settings(database_url: str) -> Settings:
    # Deliveries run when a test says so (``run_until_idle``), on the injected clock.
    return make_settings(
        database_url, webhook_delivery_enabled=False, webhook_allowed_networks="127.0.0.0/8"
    )


@pytest.fixture
def context(settings: Settings, db: Database, clock: ManualClock) -> AppContext:
    return AppContext.create(settings, db=db, clock=clock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


def subscribe(
    client: TestClient,
    tenant: TenantFixture,
    url: str,
    events: list[str] | None = None,
    **body: Any,
) -> dict[str, Any]:
    return create(
        client,
        tenant.admin.headers,
        "/api/v1/webhooks",
        {"url": url, "events": events or ["*"], **body},
    )


def test_every_event_type_arrives_signed_with_its_actor_and_request_id(
    client: TestClient, context: AppContext, acme: TenantFixture, receiver: Receiver
) -> None:
    hook = subscribe(client, acme, receiver.url)
    h = acme.admin.headers
    parent = create(client, h, "/api/v1/groups", {"name": "sites", "parentId": acme.root_id})
    child = create(client, h, "/api/v1/groups", {"name": "paris", "parentId": acme.root_id})
    client.patch(f"/api/v1/groups/{child['id']}", json={"description": "HQ"}, headers=h)
    client.post(f"/api/v1/groups/{child['id']}/move", json={"parentId": parent["id"]}, headers=h)
    member = user(client, h, child["id"], "ada")
    client.patch(f"/api/v1/objects/{member['id']}", json={"name": "Ada"}, headers=h)
    client.post(f"/api/v1/objects/{member['id']}/move", json={"groupId": parent["id"]}, headers=h)
    team = create(client, h, "/api/v1/groups", {"name": "team", "kind": "user"})
    assert client.put(f"/api/v1/groups/{team['id']}/members/{member['id']}", headers=h).is_success
    assert client.delete(
        f"/api/v1/groups/{team['id']}/members/{member['id']}", headers=h
    ).is_success
    pool = licence(client, h, "edr", 10)
    activation = create(
        client,
        h,
        f"/api/v1/licenses/{pool['id']}/activations",
        {"objectId": member["id"], "units": 2},
    )
    released = client.delete(
        f"/api/v1/licenses/{pool['id']}/activations/{activation['id']}", headers=h
    )
    assert released.status_code == 204
    devices(client, h, parent["id"], 3, product="edr", units=1)
    deleted = client.delete(
        f"/api/v1/groups/{parent['id']}",
        params={"wait": 10, "releaseConsumedUnits": "true"},
        headers=h,
    )
    assert deleted.status_code in (200, 202), deleted.text
    if deleted.status_code == 202:
        wait_operation(client, h, deleted.json()["id"])
    # The bin's actions and the two kinds no surface emits yet, through the one seam.
    now = context.clock()
    with transaction(context.db) as uow:
        for action in ("group.restore", "group.purge", "object.delete", "group.delete.failed"):
            audit.record_event(
                uow,
                actor=system_actor(acme.id),
                action=action,
                target_type="group",
                target_uuid=uuid.UUID(parent["id"]),
                target_name="sites",
                outcome="succeeded",
                now=now,
            )

    context.webhooks.run_until_idle()
    bodies = receiver.verified(str(hook["secret"]))
    assert {body["type"] for body in bodies} == set(EVENT_TYPES)
    for body in bodies:
        assert set(body) == {"type", "timestamp", "data"}
        assert body["data"]["actor"] in ("admin@acme", "system")
    by_type: dict[str, dict[str, Any]] = {}
    for body in bodies:
        by_type.setdefault(body["type"], body["data"])
    assert by_type["group.created"]["group"]["name"] == "sites"
    assert by_type["group.moved"]["group"]["parentId"] == parent["id"]
    assert by_type["group.deleted"]["target"]["id"] == parent["id"]
    assert by_type["group.deleted"]["group"]["name"] == "sites"  # the root as it was
    assert by_type["group.deleted"]["counts"]["groups"] == {"static": 2}
    completed = by_type["group.delete.completed"]
    assert completed["counts"]["deleted"]["devices"] == 3
    assert completed["unitsByLicence"] == [{"licenceId": pool["id"], "product": "edr", "units": 3}]
    released = [b["data"] for b in bodies if b["type"] == "licence.units_released"]
    assert [item["units"] for item in released] == [2, 3]
    assert released[1]["operationId"] == completed["operationId"]
    assert by_type["object.updated"]["requestId"]
    assert by_type["object.created"]["object"]["loginName"] == "ada"
    assert by_type["object.moved"]["object"]["homeGroupId"] == parent["id"]
    assert by_type["membership.removed"]["memberId"] == member["id"]
    assert by_type["membership.added"]["groupId"] == team["id"]
    assert by_type["licence.units_released"]["units"] == 2
    assert by_type["licence.units_released"]["licenceId"] == pool["id"]
    # Each change once, in commit order, and the webhook-ids all differ.
    assert len({item.webhook_id for item in receiver.received}) == len(receiver.received)
    types = receiver.types()
    assert types.index("group.created") < types.index("group.updated") < types.index("group.moved")
    assert types.index("group.deleted") < types.index("group.delete.completed")
    assert_invariants(context.db)


def test_a_cloudevents_subscription_gets_structured_events(
    client: TestClient, context: AppContext, acme: TenantFixture, receiver: Receiver
) -> None:
    hook = subscribe(client, acme, receiver.url, ["group.created"], format="cloudevents")
    create(client, acme.admin.headers, "/api/v1/groups", {"name": "x", "parentId": acme.root_id})
    context.webhooks.run_until_idle()
    (event,) = receiver.verified(str(hook["secret"]))
    assert receiver.received[0].headers["content-type"] == "application/cloudevents+json"
    assert event["specversion"] == "1.0" and event["type"] == "group.created"
    assert event["id"] == receiver.received[0].webhook_id
    assert event["data"]["group"]["name"] == "x"


def test_a_receiver_down_for_a_minute_then_gets_everything_in_order(
    client: TestClient,
    context: AppContext,
    clock: ManualClock,
    acme: TenantFixture,
    receiver: Receiver,
) -> None:
    hook = subscribe(client, acme, receiver.url, ["group.created"])
    receiver.stop()
    names = [f"g{i}" for i in range(12)]
    for name in names:
        create(
            client, acme.admin.headers, "/api/v1/groups", {"name": name, "parentId": acme.root_id}
        )
    for _ in range(60):  # a minute on the injected clock, the schedule's 1, 5, 30 s retries
        context.webhooks.run_until_idle()
        clock.advance(1)
    receiver.start()
    clock.advance(120)
    context.webhooks.run_until_idle()
    bodies = receiver.verified(str(hook["secret"]))
    assert [body["data"]["group"]["name"] for body in bodies] == names
    listed = client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=acme.admin.headers)
    items = listed.json()["items"]
    assert {item["status"] for item in items} == {"succeeded"}
    assert max(item["attempts"] for item in items) >= 4  # the first one waited out the outage
    assert_invariants(context.db)


def test_a_subscription_failing_for_a_day_is_disabled_with_an_audit_event(
    client: TestClient,
    context: AppContext,
    clock: ManualClock,
    acme: TenantFixture,
    receiver: Receiver,
) -> None:
    hook = subscribe(client, acme, receiver.url, ["group.*"])
    receiver.status = 500
    create(client, acme.admin.headers, "/api/v1/groups", {"name": "a", "parentId": acme.root_id})
    for _ in range(40):
        context.webhooks.run_until_idle()
        clock.advance(3600)
    with context.db.unit_of_work(write=False) as uow:
        sub = uow.session.execute(select(WebhookSubscription)).scalar_one()
        assert not sub.enabled and "failed" in (sub.disabled_reason or "")
        delivery = uow.session.execute(select(WebhookDelivery)).scalar_one()
        assert delivery.state == "failed" and delivery.last_status == 500
        # 1, 5, 30 s, 2, 10 min, 1 h, then hourly up to 24 h.
        assert 24 <= delivery.attempts <= 31
        # The clock has moved past the tokens' lifetime: the trail is read below the API.
        disabled = uow.session.execute(
            select(AuditEvent.target_uuid).where(AuditEvent.action == "webhook.disable")
        ).scalars()
        assert [str(key) for key in disabled] == [hook["id"]]


def test_a_rolled_back_change_emits_nothing(
    client: TestClient, context: AppContext, acme: TenantFixture, receiver: Receiver
) -> None:
    subscribe(client, acme, receiver.url)
    actor = system_actor(acme.id)
    with pytest.raises(RuntimeError), context.db.unit_of_work() as uow:
        groups.create_group(
            uow,
            actor=actor,
            spec=groups.GroupSpec(name="ghost", parent_uuid=uuid.UUID(acme.root_id)),
            now=context.clock(),
        )
        raise RuntimeError("the change fails after its event was written")
    taken = client.post(
        "/api/v1/groups",
        json={"name": "Lost & found", "parentId": acme.root_id},
        headers=acme.admin.headers,
    )
    assert taken.status_code == 409
    create(client, acme.admin.headers, "/api/v1/groups", {"name": "real", "parentId": acme.root_id})
    context.webhooks.run_until_idle()
    assert [item.document["data"]["group"]["name"] for item in receiver.received] == ["real"]


def test_a_tenants_subscription_never_sees_another_tenants_changes(
    client: TestClient,
    context: AppContext,
    acme: TenantFixture,
    globex: TenantFixture,
    receiver: Receiver,
) -> None:
    other = Receiver()
    try:
        subscribe(client, acme, receiver.url)
        subscribe(client, globex, other.url)
        for tenant in (acme, globex, acme):
            create(
                client,
                tenant.admin.headers,
                "/api/v1/groups",
                {"name": f"of-{tenant.name}-{time.monotonic_ns()}", "parentId": tenant.root_id},
            )
        context.webhooks.run_until_idle()
        assert len(receiver.received) == 2 and len(other.received) == 1
        assert all(
            r.document["data"]["group"]["name"].startswith("of-acme") for r in receiver.received
        )
        assert other.received[0].document["data"]["group"]["name"].startswith("of-globex")
    finally:
        other.stop()
    assert_invariants(context.db)


def test_a_name_resolving_to_a_private_address_is_refused_at_delivery(
    settings: Settings, db: Database, acme: TenantFixture, receiver: Receiver
) -> None:
    strict = make_settings(settings.database_url, webhook_delivery_enabled=False)
    ctx = AppContext.create(strict, db=db)
    # The name passes when subscribed; at delivery it resolves to loopback (a rebinding).
    ctx.webhooks = Dispatcher(db, strict, resolver=lambda host, port: ["127.0.0.1"])
    with TestClient(create_app(context=ctx)) as client:
        hook = subscribe(client, acme, f"https://hooks.example.com:{receiver.port}/hook")
        create(
            client, acme.admin.headers, "/api/v1/groups", {"name": "x", "parentId": acme.root_id}
        )
        ctx.webhooks.run_until_idle()
        items = client.get(
            f"/api/v1/webhooks/{hook['id']}/deliveries", headers=acme.admin.headers
        ).json()["items"]
    assert receiver.received == []
    assert items[0]["status"] == "pending" and "127.0.0.1" in items[0]["lastError"]
    assert items[0]["nextAttemptAt"] is not None


def test_a_slow_subscriber_does_not_hold_up_another(
    database_url: str, db: Database, acme: TenantFixture, receiver: Receiver
) -> None:
    slow = Receiver()
    slow.delay = 1.0
    running = make_settings(
        database_url,
        webhook_allowed_networks="127.0.0.0/8",
        webhook_poll_seconds=0.05,
        webhook_delivery_threads=2,
    )
    ctx = AppContext.create(running, db=db)
    try:
        with TestClient(create_app(context=ctx)) as client:
            subscribe(client, acme, slow.url)
            subscribe(client, acme, receiver.url)
            started = time.monotonic()
            for i in range(5):
                create(
                    client,
                    acme.admin.headers,
                    "/api/v1/groups",
                    {"name": f"s{i}", "parentId": acme.root_id},
                )
            receiver.wait_for(5, timeout=10)
            fast_done = time.monotonic() - started
            assert len(slow.received) < 5, "the slow one must still be busy"
            slow.wait_for(5, timeout=20)
        assert fast_done < 4.0, f"the fast subscriber waited {fast_done:.1f} s"
    finally:
        slow.stop()


def test_a_relay_wakes_one_delivery_thread_per_subscription_at_once(
    database_url: str,
    db: Database,
    acme: TenantFixture,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Polls far apart: only the relay's wake-up can send these within the test. Four
    # threads, one subscription: one thread wakes (a lease), not four.
    running = make_settings(
        database_url,
        webhook_allowed_networks="127.0.0.0/8",
        webhook_poll_seconds=60,
        webhook_delivery_threads=4,
    )
    with transaction(db) as uow:
        subscriptions.create_subscription(
            uow,
            actor=system_actor(acme.id),
            url=receiver.url,
            events=["*"],
            policy=subscriptions.Policy(networks=addresses.parse_networks("127.0.0.0/8")),
            now=system_clock(),
        )
    looks: list[str] = []
    leases: list[str] = []
    has_due, lease_next = deliveries_service.has_due, deliveries_service.lease_next

    def looked(*args: Any, **kwargs: Any) -> Any:
        looks.append(threading.current_thread().name)
        return has_due(*args, **kwargs)

    def leased(*args: Any, **kwargs: Any) -> Any:
        leases.append(threading.current_thread().name)
        return lease_next(*args, **kwargs)

    has_unrelayed = relay.has_unrelayed

    def relay_looked(*args: Any, **kwargs: Any) -> Any:
        looks.append(threading.current_thread().name)
        return has_unrelayed(*args, **kwargs)

    dispatcher = Dispatcher(db, running)
    while dispatcher.relay_once():  # what the set-up emitted, before the subscription
        pass
    monkeypatch.setattr(deliveries_service, "has_due", looked)
    monkeypatch.setattr(deliveries_service, "lease_next", leased)
    monkeypatch.setattr(relay, "has_unrelayed", relay_looked)
    dispatcher.start()
    try:
        # Each delivery thread and the relay look once, find nothing, and wait.
        deadline = time.monotonic() + 10
        while len(set(looks)) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(set(looks)) == 5 and leases == [], (looks, leases)
        with transaction(db) as uow:
            for index in range(3):
                outbox.emit(
                    uow,
                    tenant_id=acme.id,
                    event_type="group.updated",
                    data={"n": index},
                    now=system_clock(),
                )
        assert dispatcher.relay_once() == 3
        receiver.wait_for(3, timeout=10)
        time.sleep(0.5)  # any other woken thread would have tried its lease by now
        assert len(leases) == 1, leases
    finally:
        dispatcher.stop()
        dispatcher.close()
    assert_invariants(db)


def test_two_processes_share_the_deliveries_each_subscription_in_order(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    shared = make_settings(
        database_url,
        webhook_allowed_networks="127.0.0.0/8",
        webhook_poll_seconds=0.02,
        webhook_delivery_threads=2,
        webhook_batch=4,
    )
    receivers = [Receiver() for _ in range(3)]
    # Two dispatchers on one database stand for two processes: the relay's lock and the
    # subscriptions' SKIP LOCKED claims are all they share.
    dispatchers = [Dispatcher(Database.from_settings(shared), shared) for _ in range(2)]
    actor = system_actor(acme.id)
    try:
        with transaction(db) as uow:
            for receiver in receivers:
                subscriptions.create_subscription(
                    uow,
                    actor=actor,
                    url=receiver.url,
                    events=["group.created"],
                    policy=subscriptions.Policy(networks=addresses.parse_networks("127.0.0.0/8")),
                    now=system_clock(),
                )
        for dispatcher in dispatchers:
            dispatcher.start()
        names = [f"p{i:02d}" for i in range(30)]
        for name in names:
            with transaction(db) as uow:
                groups.create_group(
                    uow,
                    actor=actor,
                    spec=groups.GroupSpec(name=name, parent_uuid=uuid.UUID(acme.root_id)),
                    now=system_clock(),
                )
        for receiver in receivers:
            receiver.wait_for(len(names))
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()
            dispatcher.close()
            dispatcher.db.dispose()
        for receiver in receivers:
            receiver.stop()
    for receiver in receivers:
        assert [r.document["data"]["group"]["name"] for r in receiver.received] == names
    assert_invariants(db)


def test_a_relay_stopped_before_marking_its_events_gives_each_event_once(
    client: TestClient, context: AppContext, acme: TenantFixture, receiver: Receiver
) -> None:
    """The relay gives events out in the queue, then marks them relayed in the outbox:
    one that stops in between gives them again, and the queue keeps one of each."""
    subscribe(client, acme, receiver.url, ["group.created"])
    for name in ("a", "b", "c"):
        create(
            client, acme.admin.headers, "/api/v1/groups", {"name": name, "parentId": acme.root_id}
        )
    db = context.db
    with transaction(db.queue) as queue:
        given = relay.give_out(queue, now=context.clock())
    assert given is not None and len(given.wanted) == 3  # ... and then it stopped
    assert context.webhooks.relay_once() == len(given)  # the same events, given again
    context.webhooks.run_until_idle()
    assert [r.document["data"]["group"]["name"] for r in receiver.received] == ["a", "b", "c"]
    with db.unit_of_work(write=False) as uow:
        assert len(uow.session.execute(select(WebhookDelivery)).all()) == 3
    assert_invariants(db)


def test_a_test_event_goes_to_its_subscription_alone_as_the_delivery_promised(
    client: TestClient, context: AppContext, acme: TenantFixture, receiver: Receiver
) -> None:
    other = Receiver()
    try:
        hook = subscribe(client, acme, receiver.url)
        subscribe(client, acme, other.url)
        queued = client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=acme.admin.headers)
        assert queued.status_code == 202
        context.webhooks.run_until_idle()
        assert [r.type for r in receiver.received] == ["webhook.test"] and other.received == []
        assert receiver.received[0].webhook_id == queued.json()["eventId"]
        listed = client.get(
            f"/api/v1/webhooks/{hook['id']}/deliveries", headers=acme.admin.headers
        ).json()["items"]
        assert [(d["id"], d["status"]) for d in listed] == [(queued.json()["id"], "succeeded")]
        # Deleting a subscription takes what the queue held of it along.
        assert client.delete(
            f"/api/v1/webhooks/{hook['id']}", headers=acme.admin.headers
        ).is_success
    finally:
        other.stop()
    assert_invariants(context.db)


def test_sqlite_api_writes_never_wait_for_the_delivery_queues_lock(
    client: TestClient, context: AppContext, acme: TenantFixture, receiver: Receiver
) -> None:
    """On SQLite the queue is a file of its own, attached read-only to the API's
    connections: a delivery process holding the queue's write lock holds up no API write."""
    db = context.db
    if not db.is_sqlite:
        pytest.skip("PostgreSQL locks rows, not the database")
    subscribe(client, acme, receiver.url)
    path = queue_file(Path(db.engine.url.database or ""))
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as the delivery process does for each write
    try:
        started = time.monotonic()
        create(
            client, acme.admin.headers, "/api/v1/groups", {"name": "x", "parentId": acme.root_id}
        )
        assert time.monotonic() - started < 2.0
        with db.unit_of_work() as uow, pytest.raises(OperationalError, match="readonly"):
            uow.session.execute(text("DELETE FROM webhook_deliveries"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    context.webhooks.run_until_idle()
    assert [r.type for r in receiver.received] == ["group.created"]
    assert_invariants(db)
