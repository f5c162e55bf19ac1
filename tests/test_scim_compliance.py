"""scim2-tester against a real ``groupd serve``: Users and Groups, on both databases.

The client checks every answer's status code and content type (``application/scim+json``);
every check scim2-tester runs must conform (no ERROR or CRITICAL result).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

from conftest import TenantFixture
from servers import ServerProcess, server_env

pytestmark = pytest.mark.usefixtures("check_invariants")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(server_env(database_url), tmp_path / "groupd.log") as process:
        process.start()
        yield process


def test_scim2_tester_passes_for_users_and_groups(
    server: ServerProcess, acme: TenantFixture
) -> None:
    with httpx2.Client(
        base_url=f"{server.base_url}/scim/v2", headers=acme.editor.headers, timeout=30
    ) as http:
        client = SyncSCIMClient(
            http, check_response_status_codes=True, check_response_content_type=True
        )
        results = check_server(client, resource_types=["User", "Group"])
    assert len(results) > 40, results
    failed = [r for r in results if r.status in (Status.ERROR, Status.CRITICAL)]
    assert not failed, "\n".join(f"{r.resource_type} {r.title}: {r.reason}" for r in failed)
    ran = {r.resource_type for r in results if r.status is Status.SUCCESS}
    assert {"User", "Group"} <= ran, ran
