"""Transient is not failed, and failed can be resumed.

A busy database (the SQLite writer queue's wait running out beside a writer that holds
the lock; a lock timeout on PostgreSQL) makes a chunk roll back and be retried: the
delete still ends ``succeeded``. An operation made ``failed`` on purpose (what the worker
does on a bug) keeps its groups hidden; an admin resumes it, through the API or the CLI,
and it finishes from where it stopped with every count exact.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings
from groupd.clock import system_clock
from groupd.services import deletion, groups, licensing, objects, operations
from groupd.services.common import Actor, system_actor
from groupd.settings import Settings
from groupd.store.db import Database, create_db_engine, transaction
from groupd.worker import Worker
from invariants import assert_invariants
from servers import ServerProcess, run_groupd, server_env

GROUPD = str(Path(sys.executable).with_name("groupd"))
LEAVES = 5
DEVICES = 4


def _subtree(db: Database, tenant_id: int) -> tuple[Actor, uuid.UUID]:
    """ "doomed" under the root: five leaves of four devices, each with one activation."""
    now = system_clock()
    actor = system_actor(tenant_id)
    with transaction(db) as uow:
        root = groups.list_groups(uow, actor=actor, name="All").items[0].uuid
        licence = licensing.create_licence(
            uow, actor=actor, product="seat", unit_kind="seat", total_units=100, now=now
        )
        top = groups.create_group(
            uow, actor=actor, spec=groups.GroupSpec(name="doomed", parent_uuid=root), now=now
        )
        for index in range(LEAVES):
            leaf = groups.create_group(
                uow,
                actor=actor,
                spec=groups.GroupSpec(name=f"leaf{index}", parent_uuid=top.uuid),
                now=now,
            )
            for number in range(DEVICES):
                device = objects.create_object(
                    uow,
                    actor=actor,
                    spec=objects.ObjectSpec(
                        kind="device", name=f"d{index}-{number}", home_group_uuid=leaf.uuid
                    ),
                    now=now,
                )
                licensing.activate(
                    uow,
                    actor=actor,
                    licence_id=str(licence.uuid),
                    object_id=str(device.uuid),
                    units=1,
                    now=now,
                )
    return actor, top.uuid


def _accept(db: Database, actor: Actor, top: uuid.UUID) -> uuid.UUID:
    with transaction(db) as uow:
        plan = deletion.request_delete(
            uow, actor=actor, group_id=top, release_units=True, now=system_clock()
        )
    assert plan.operation_uuid is not None
    return plan.operation_uuid


def _view(db: Database, actor: Actor, operation_uuid: uuid.UUID) -> operations.OperationView:
    with db.unit_of_work(write=False) as uow:
        return operations.get_operation(
            uow, actor=actor, operation_id=operation_uuid, now=system_clock()
        )


def _fail_after_one_chunk(
    db: Database, settings: Settings, actor: Actor, top: uuid.UUID
) -> uuid.UUID:
    """Accept the delete, let one chunk of one group run, then fail the operation as
    the worker does on a bug."""
    operation_uuid = _accept(db, actor, top)
    worker = Worker(db, settings.model_copy(update={"delete_chunk_groups": 1}))
    operation_id = worker.claim()
    assert operation_id is not None
    with transaction(db) as uow:
        step = deletion.run_delete_chunk(
            uow,
            operation_id=operation_id,
            worker_id=worker.id,
            now=system_clock(),
            lease_seconds=60,
            chunk_groups=1,
            chunk_objects=1000,
            result_ttl_seconds=600,
        )
    assert not step.finished
    with transaction(db) as uow:
        operations.fail(
            uow, operation_id=operation_id, error="simulated bug", now=system_clock(), ttl=600
        )
    view = _view(db, actor, operation_uuid)
    assert view.state == "failed"
    assert view.progress.groups.done == 1
    return operation_uuid


def _assert_exact(view: operations.OperationView) -> None:
    """Every row of the subtree went once, the units came back, whatever ran before."""
    assert view.state == "succeeded", view
    progress = view.progress
    assert progress.groups.done == progress.groups.total == LEAVES + 1
    assert progress.devices.done == progress.devices.total == LEAVES * DEVICES
    assert progress.activations.done == LEAVES * DEVICES
    assert progress.units_released == LEAVES * DEVICES
    assert (view.result_body or {})["deleted"]["devices"] == LEAVES * DEVICES


# transient is not failed ----------------------------------------------------------------
class _LockHolder:
    """A writer that holds the database's write lock (SQLite) or the operation's row
    (PostgreSQL) for ``seconds``, from when ``start`` returns."""

    def __init__(self, db: Database, seconds: float) -> None:
        self.db = db
        self.seconds = seconds
        self.held = threading.Event()
        self.thread = threading.Thread(target=self._hold, daemon=True)

    def _hold(self) -> None:
        with transaction(self.db) as uow:
            uow.session.execute(text("UPDATE operations SET attempts = attempts"))
            self.held.set()
            time.sleep(self.seconds)

    def __enter__(self) -> _LockHolder:
        self.thread.start()
        assert self.held.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self.thread.join(30)


def test_a_busy_database_during_a_delete_is_retried_not_failed(
    database_url: str, acme: TenantFixture
) -> None:
    """The worker's chunk meets a busy database: on SQLite the writer queue gives up
    (``Unavailable``) after a tiny wait beside a writer holding the lock; on PostgreSQL
    a lock timeout on the operation's row. The chunk is retried, the operation never
    fails, and the delete ends ``succeeded`` with its counts exact."""
    settings = make_settings(database_url, sqlite_writer_wait_seconds=0.05)
    url = database_url
    if not database_url.startswith("sqlite"):
        url += ("&" if "?" in url else "?") + "options=-c%20lock_timeout%3D50"
    db = Database(
        create_db_engine(url, sqlite_cache_mib=settings.sqlite_cache_mib),
        writer_wait_seconds=settings.sqlite_writer_wait_seconds,
    )
    try:
        actor, top = _subtree(db, acme.id)
        operation_uuid = _accept(db, actor, top)
        worker = Worker(db, settings)
        operation_id = worker.claim()
        assert operation_id is not None
        with _LockHolder(db, seconds=0.4):
            worker.run(operation_id)  # its first chunks wait, give up, and are retried
        if _view(db, actor, operation_uuid).state != "succeeded":
            # handed back after its retries: it is claimable again after the pause
            time.sleep(settings.worker_poll_seconds * 2)
            worker.run_until_idle()
        _assert_exact(_view(db, actor, operation_uuid))
        assert_invariants(db)
    finally:
        db.dispose()


# failed can be resumed ------------------------------------------------------------------
def test_a_failed_delete_is_resumed_through_the_api(
    client: TestClient, db: Database, settings: Settings, acme: TenantFixture
) -> None:
    worker = client.app.state.ctx.worker  # type: ignore[attr-defined]
    worker.stop()
    actor, top = _subtree(db, acme.id)
    operation_uuid = _fail_after_one_chunk(db, settings, actor, top)
    path = f"/api/v1/operations/{operation_uuid}/resume"
    assert client.post(path, headers=acme.editor.headers).status_code == 403
    assert (
        client.post(
            f"/api/v1/operations/{uuid.uuid4()}/resume", headers=acme.admin.headers
        ).status_code
        == 404
    )
    resumed = client.post(path, headers=acme.admin.headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["state"] == "accepted"
    assert resumed.json()["progress"]["groups"]["done"] == 1
    worker.run_until_idle()
    body = client.get(f"/api/v1/operations/{operation_uuid}", headers=acme.viewer.headers).json()
    assert body["state"] == "succeeded"
    _assert_exact(_view(db, actor, operation_uuid))
    again = client.post(path, headers=acme.admin.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "operation_not_failed"
    events = client.get(
        "/api/v1/audit", params={"action": "group.delete.resumed"}, headers=acme.admin.headers
    ).json()["items"]
    assert [event["targetName"] for event in events] == ["doomed"]
    assert_invariants(db)


def _cli(server: ServerProcess, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "GROUPD_URL": server.base_url, "GROUPD_TOKEN": token}
    return run_groupd("operations", *args, env=env)


def test_a_failed_delete_is_resumed_through_the_cli(
    database_url: str, db: Database, settings: Settings, acme: TenantFixture, tmp_path: Path
) -> None:
    """``groupd operations list`` shows the failed delete, ``show`` its state, and
    ``resume`` accepts it again and follows it to the end."""
    actor, top = _subtree(db, acme.id)
    operation_uuid = _fail_after_one_chunk(db, settings, actor, top)
    server = ServerProcess(
        server_env(database_url, worker_poll_seconds=0.05), tmp_path / "serve.log"
    )
    server.start()
    try:
        listed = _cli(server, acme.admin.token, "list", "--state", "failed")
        assert listed.returncode == 0, listed.stderr
        assert str(operation_uuid) in listed.stdout
        assert "doomed" in listed.stdout
        shown = _cli(server, acme.admin.token, "show", str(operation_uuid))
        assert shown.returncode == 0, shown.stderr
        assert "failed" in shown.stdout and "simulated bug" in shown.stdout
        refused = _cli(server, acme.editor.token, "resume", str(operation_uuid))
        assert refused.returncode == 1 and "admin" in refused.stderr
        resumed = _cli(server, acme.admin.token, "resume", str(operation_uuid))
        assert resumed.returncode == 0, resumed.stderr
        assert "succeeded" in resumed.stdout
    finally:
        server.stop()
    _assert_exact(_view(db, actor, operation_uuid))
    assert_invariants(db)
