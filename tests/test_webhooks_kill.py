"""SIGKILL of the server while it delivers: every event still arrives, in order of first
arrival, and a repeat carries the webhook-id and body of its first sending."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants
from servers import ServerProcess, server_env
from webhook_receiver import Receiver

EVENTS = 40


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(
        database_url,
        webhook_allowed_networks="127.0.0.0/8",
        webhook_poll_seconds=0.05,
        webhook_lease_seconds=1,
        webhook_retry_schedule="0.2",
        worker_poll_seconds=0.1,
    )
    with ServerProcess(env, tmp_path / "groupd.log") as process:
        yield process


@pytest.mark.slow
def test_sigkill_during_deliveries_loses_nothing(
    server: ServerProcess, acme: TenantFixture, db: Database
) -> None:
    receiver = Receiver()
    receiver.delay = 0.05  # each claim's batch is in flight for a while
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, headers=acme.admin.headers) as client:
            hook = client.post(
                "/api/v1/webhooks", json={"url": receiver.url, "events": ["group.created"]}
            ).json()
            names = [f"k{i:02d}" for i in range(EVENTS)]
            for name in names:
                made = client.post("/api/v1/groups", json={"name": name, "parentId": acme.root_id})
                assert made.status_code == 201, made.text
        for threshold in (8, 18, 28):
            receiver.wait_for(threshold, timeout=30)
            server.kill()
            server.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if len({item.webhook_id for item in receiver.received}) >= EVENTS:
                break
            time.sleep(0.05)
        # A claim killed after sending everything is sent again by the next process
        # (at least once): those repeats may still be arriving. Stopped, it sends no more.
        server.stop()
        bodies = receiver.verified(str(hook["secret"]))
    finally:
        receiver.stop()
    first: dict[str, bytes] = {}
    order: list[str] = []
    for item, body in zip(receiver.received, bodies, strict=True):
        if item.webhook_id in first:
            assert first[item.webhook_id] == item.body, "a repeat differs from its first sending"
        else:
            first[item.webhook_id] = item.body
            order.append(body["data"]["group"]["name"])
    assert order == names
    assert len(receiver.received) > EVENTS, "a kill mid-batch sends some again"
    assert_invariants(db)
