"""The ``groupd`` command, run as a user would: serve on a fresh SQLite file, tokens,
tenants, accounts, and the remote delete with its progress display."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from servers import free_port, run_groupd

GROUPD = str(Path(sys.executable).with_name("groupd"))


def run_cli(
    *args: str, env: dict[str, str], stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The command's ``main`` in a forked process (``servers.run_groupd``); ``served``
    starts the installed ``groupd`` command itself."""
    return run_groupd(*args, env=env, stdin=stdin, cwd=cwd)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], str]]:
    """``groupd serve`` in an empty directory, as the README's first command runs it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPD_")}
    env["GROUPD_PORT"] = str(port)
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [GROUPD, "serve"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        output = (tmp_path / "serve.log").read_text()
        token = re.search(r"API token: (\S+)", output)
        assert token, output
        env["GROUPD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'groupd.db'}"
        yield base, env, token.group(1)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_serve_bootstraps_and_token_create_works_as_bearer(
    served: tuple[str, dict[str, str], str], tmp_path: Path
) -> None:
    base, env, bootstrap_token = served
    assert (tmp_path / "groupd.db").exists()
    first = httpx.get(
        f"{base}/api/v1/groups", headers={"Authorization": f"Bearer {bootstrap_token}"}
    )
    assert first.status_code == 200
    names = {g["name"] for g in first.json()["items"]}
    assert names == {"All", "Lost & found", "Admin"}
    created = run_cli(
        "token", "create", "--tenant", "default", "--username", "admin", "--ttl", "1h", env=env
    )
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert "\n" not in token and token.startswith("gdk_")
    listed = httpx.get(f"{base}/api/v1/groups", headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200
    unauthenticated = httpx.get(f"{base}/api/v1/groups")
    assert unauthenticated.status_code == 401
    docs = httpx.get(f"{base}/docs")
    assert docs.status_code == 200 and "/docs/static/swagger-ui-bundle.js" in docs.text
    assert httpx.get(f"{base}/docs/init.js").status_code == 200
    assert httpx.get(f"{base}/docs/static/swagger-ui-bundle.js").status_code == 200
    assert httpx.get(f"{base}/metrics").text.count("groupd_http_requests_total") > 0


def test_tenant_account_and_remote_delete(served: tuple[str, dict[str, str], str]) -> None:
    base, env, admin_token = served
    tenant = run_cli("tenant", "create", "initech", env=env)
    assert tenant.returncode == 0, tenant.stderr
    account = run_cli(
        "account",
        "create",
        "--tenant",
        "initech",
        "--username",
        "peter",
        "--role",
        "editor",
        "--password-stdin",
        env=env,
        stdin="a long enough password\n",
    )
    assert account.returncode == 0, account.stderr
    short = run_cli(
        "account",
        "create",
        "--tenant",
        "initech",
        "--username",
        "milton",
        "--role",
        "editor",
        "--password-stdin",
        env=env,
        stdin="short\n",
    )
    assert short.returncode == 1 and "password" in short.stderr
    login = httpx.post(
        f"{base}/api/v1/auth/token",
        json={"grantType": "password", "username": "peter", "password": "a long enough password"},
    )
    assert login.status_code == 200, login.text
    token = login.json()["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    root = httpx.get(f"{base}/api/v1/groups", params={"name": "All"}, headers=headers)
    root_id = root.json()["items"][0]["id"]
    group = httpx.post(
        f"{base}/api/v1/groups", headers=headers, json={"name": "Old office", "parentId": root_id}
    ).json()
    httpx.post(
        f"{base}/api/v1/licenses",
        headers=headers,
        json={"product": "AV", "unitKind": "seat", "totalUnits": 10},
    )
    imported = httpx.post(
        f"{base}/api/v1/objects:batchImport",
        headers=headers,
        json={
            "objects": [
                {
                    "kind": "device",
                    "name": f"pc-{i}",
                    "homeGroupId": group["id"],
                    "activations": [{"product": "AV"}],
                }
                for i in range(4)
            ]
        },
    )
    assert imported.status_code == 201, imported.text
    cli_env = {**env, "GROUPD_URL": base, "GROUPD_TOKEN": token}
    preview = run_cli("groups", "delete", group["id"], "--dry-run", "--release-units", env=cli_env)
    assert preview.returncode == 0, preview.stderr
    assert "devices" in preview.stdout and "4" in preview.stdout
    assert "released" in preview.stdout
    done = run_cli("groups", "delete", group["id"], "--release-units", env=cli_env)
    assert done.returncode == 0, done.stderr
    # the result reads as the dry run's table does: one row per kind, counts aligned
    rows = {
        cells[0]: cells[1]
        for line in done.stdout.splitlines()
        if len(cells := [c.strip() for c in line.strip("│┃ ").split("│")]) == 2
    }
    assert rows["devices"] == "4" and rows["groups"] == "1" and rows["activations"] == "4"
    assert rows["units released"] == "4" and rows["units kept consumed"] == "0"
    # The server keeps deletes in the recycle bin by default: the answer says so, and how
    # to bring the group back.
    assert "{" not in done.stdout
    assert f"Moved to the recycle bin: group {group['id']}" in done.stdout
    assert f"groupd bin restore {group['id']}" in done.stdout
    gone = httpx.get(f"{base}/api/v1/groups/{group['id']}", headers=headers)
    assert gone.status_code == 404
    licences = httpx.get(f"{base}/api/v1/licenses", headers=headers).json()["items"]
    assert licences[0]["usedUnits"] == 0
    other_tenant = httpx.get(
        f"{base}/api/v1/groups/{root_id}", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert other_tenant.status_code == 404
    maintenance = run_cli("maintenance", "on", "--message", "upgrading", env=env)
    assert maintenance.returncode == 0
    deadline = time.monotonic() + 2
    while httpx.get(f"{base}/api/v1/groups", headers=headers).status_code != 503:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.get(f"{base}/healthz").status_code == 200
    run_cli("maintenance", "off", env=env)


def test_bin_list_restore_and_purge(served: tuple[str, dict[str, str], str]) -> None:
    base, env, token = served
    headers = {"Authorization": f"Bearer {token}"}
    root = httpx.get(f"{base}/api/v1/groups", params={"name": "All"}, headers=headers)
    root_id = root.json()["items"][0]["id"]
    group = httpx.post(
        f"{base}/api/v1/groups", headers=headers, json={"name": "Archive", "parentId": root_id}
    ).json()
    # A terminal wide enough for the bin's table, as a person would read it.
    cli_env = {**env, "GROUPD_URL": base, "GROUPD_TOKEN": token, "COLUMNS": "200"}
    deleted = run_cli("groups", "delete", group["id"], env=cli_env)
    assert deleted.returncode == 0, deleted.stderr
    assert "in the recycle bin until" in deleted.stdout
    listed = run_cli("bin", "list", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    assert group["id"] in listed.stdout and "All / Archive" in listed.stdout
    httpx.post(
        f"{base}/api/v1/groups", headers=headers, json={"name": "Archive", "parentId": root_id}
    )
    refused = run_cli("bin", "restore", group["id"], env=cli_env)
    assert refused.returncode == 1 and "name_taken" in refused.stderr
    restored = run_cli("bin", "restore", group["id"], "--name", "Archive 2019", env=cli_env)
    assert restored.returncode == 0, restored.stderr
    again = httpx.get(f"{base}/api/v1/groups/{group['id']}", headers=headers)
    assert again.json()["name"] == "Archive 2019"
    assert run_cli("groups", "delete", group["id"], env=cli_env).returncode == 0
    purged = run_cli("bin", "purge", group["id"], env=cli_env)
    assert purged.returncode == 0, purged.stderr
    assert "'groups': 1" in purged.stdout
    assert group["id"] not in run_cli("bin", "list", env=cli_env).stdout


def test_a_remote_command_that_cannot_reach_its_server_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPD_")}
    closed = f"http://127.0.0.1:{free_port()}"
    for args in (
        ("webhooks", "list", "--url", closed, "--token", "t"),
        ("bin", "list", "--url", closed, "--token", "t"),
    ):
        done = run_cli(*args, env=env, cwd=tmp_path)
        assert done.returncode == 1, done
        assert f"cannot reach {closed}" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
