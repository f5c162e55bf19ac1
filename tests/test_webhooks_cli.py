"""``groupd webhooks list|create|deliveries|retry`` against a served API, read as a
person reads them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TenantFixture
from servers import ServerProcess, run_groupd, server_env
from webhook_receiver import Receiver


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    env = server_env(
        database_url, webhook_allowed_networks="127.0.0.0/8", webhook_poll_seconds=0.05
    )
    with ServerProcess(env, tmp_path / "groupd.log") as process:
        process.start()
        yield process


def cli(server: ServerProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPD_")}
    env.update(GROUPD_URL=server.base_url, GROUPD_TOKEN=token, COLUMNS="200")
    return run_groupd("webhooks", *args, env=env, timeout=60)


@pytest.mark.slow
def test_the_webhooks_commands(served: ServerProcess, acme: TenantFixture) -> None:
    receiver = Receiver()
    try:
        made = cli(served, acme.admin.token, "create", receiver.url, "--event", "webhook.*")
        assert made.returncode == 1 and "names no event type" in made.stderr
        made = cli(served, acme.admin.token, "create", receiver.url, "--event", "group.*")
        assert made.returncode == 0, made.stderr
        secret = made.stdout.strip()
        assert secret.startswith("whsec_") and "shown once" in made.stderr
        webhook_id = made.stderr.split()[1]

        listed = cli(served, acme.admin.token, "list")
        assert webhook_id in listed.stdout and receiver.url in listed.stdout

        import httpx

        httpx.post(
            f"{served.base_url}/api/v1/groups",
            json={"name": "from-cli-test", "parentId": acme.root_id},
            headers=acme.admin.headers,
        )
        receiver.wait_for(1)
        shown = cli(served, acme.admin.token, "deliveries", webhook_id)
        assert "group.created" in shown.stdout and "succeeded" in shown.stdout
        delivery_id = next(
            line.split("│")[1].strip()
            for line in shown.stdout.splitlines()
            if "group.created" in line
        )
        again = cli(served, acme.admin.token, "retry", webhook_id, delivery_id)
        assert again.returncode == 0 and "queued again" in again.stdout, again.stderr
        receiver.wait_for(2)
        first, second = receiver.received
        assert first.webhook_id == second.webhook_id  # a retry is the same message

        refused = cli(served, acme.editor.token, "list")
        assert refused.returncode == 1 and "403" in refused.stderr
    finally:
        receiver.stop()
