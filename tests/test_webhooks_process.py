"""``groupd serve`` delivers from a child process of its own (decision 0076): started once
a subscription exists, started again when it dies, gone when its server is gone, even a
server killed with SIGKILL; and the API's process sends nothing itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conftest import TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants
from servers import ServerProcess, server_env
from webhook_receiver import Receiver


def children(pid: int) -> list[int]:
    """The processes ``pid`` started that are still running."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.extend(int(child) for child in text)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(
        database_url,
        webhook_allowed_networks="127.0.0.0/8",
        webhook_poll_seconds=0.05,
        # A child killed between sending and recording holds its lease this long.
        webhook_lease_seconds=1,
        worker_poll_seconds=0.1,
    )
    with ServerProcess(env, tmp_path / "groupd.log") as process:
        yield process


def group_names(receiver: Receiver, secret: str) -> list[str]:
    """The names of the groups whose events arrived, in arrival order (signatures checked)."""
    return [body["data"]["group"]["name"] for body in receiver.verified(secret)]


@pytest.mark.slow
def test_the_server_delivers_from_a_child_that_it_restarts_and_that_ends_with_it(
    server: ServerProcess, acme: TenantFixture, db: Database
) -> None:
    receiver = Receiver()
    try:
        server.start()
        with httpx.Client(base_url=server.base_url, headers=acme.admin.headers) as client:
            time.sleep(0.5)  # several looks of the watch thread
            assert children(server.pid) == [], "a delivery process with nothing to deliver"
            hook = client.post(
                "/api/v1/webhooks", json={"url": receiver.url, "events": ["group.created"]}
            ).json()
            wait_until(lambda: children(server.pid), 10, "a delivery process starts")
            (child,) = children(server.pid)
            assert child != server.pid

            def create(name: str) -> None:
                made = client.post("/api/v1/groups", json={"name": name, "parentId": acme.root_id})
                assert made.status_code == 201, made.text

            create("first")
            receiver.wait_for(1)

            # The child dies: the server starts another, and nothing is lost.
            os.kill(child, signal.SIGKILL)
            wait_until(lambda: not running(child), 5, "the child is gone")
            create("second")
            wait_until(
                lambda: children(server.pid) not in ([], [child]), 10, "a new delivery process"
            )
            # At least once: "first" may come again (the killed child had not recorded
            # it) before "second" does, so wait for "second" itself.
            wait_until(
                lambda: "second" in group_names(receiver, hook["secret"]), 20, "'second' arrives"
            )
            (second_child,) = children(server.pid)

        # The server dies alone (SIGKILL, no handler runs): its child leaves by itself.
        os.kill(server.pid, signal.SIGKILL)
        wait_until(lambda: not running(second_child), 5, "the orphaned child leaves")
        server.kill()  # reap the server
        names = group_names(receiver, hook["secret"])
        assert list(dict.fromkeys(names)) == ["first", "second"]  # in order, at least once
    finally:
        receiver.stop()
    assert_invariants(db)


def test_the_child_gets_the_settings_the_server_was_built_with(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from groupd.api.context import AppContext
    from groupd.delivery.process import DeliveryProcess, settings_environment
    from groupd.settings import Settings

    settings = Settings(
        database_url=database_url,
        webhook_allowed_networks="10.0.0.0/8",
        webhook_retry_schedule="2,4",
        rate_limit_enabled=False,
        redis_url=None,
    )
    ctx = AppContext.create(settings)
    try:
        assert isinstance(ctx.delivery, DeliveryProcess), "the default is a process"
    finally:
        ctx.db.dispose()
    # The server's own environment says otherwise: the child must not read it.
    monkeypatch.setenv("GROUPD_WEBHOOK_RETRY_SCHEDULE", "9")
    monkeypatch.setenv("GROUPD_REDIS_URL", "redis://127.0.0.1:6379/9")
    env = settings_environment(settings)
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().model_dump() == settings.model_dump()
