"""The per-request time budget (``request_time_budget_seconds``).

A request's database work ends by its deadline: PostgreSQL cancels the statement
(``SET LOCAL statement_timeout``), SQLite interrupts it (a progress handler) or stops
waiting for the write lock (a busy timeout cut to the rest of the budget), and no
statement starts after the deadline. The request is answered 503 ``time_budget_exceeded``
in its surface's own form, and rolled back. The delete worker has no budget.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from groupd.errors import Unavailable
from groupd.store.db import Database, request_deadline
from invariants import assert_invariants
from surfaces import PROFILES, World, build_world, samples_for, snapshot

BUDGET = 1.0
# A write each surface serves that touches the groups table.
WRITES = {
    "native": ("PATCH", "/api/v1/groups/{id}"),
    "eset": ("POST", "/v1/groups/{groupUuid}:rename"),
    "oaa": ("PUT", "/oaa-policy/group/v1/{groupid}"),
    "appviewx": ("POST", "/avxapi/usergroup"),
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with build_world(
        request.param,
        tmp_path_factory.mktemp("budget"),
        request,
        request_time_budget_seconds=BUDGET,
    ) as built:
        yield built
        assert_invariants(built.db)


def _runaway(db: Database) -> str:
    if db.is_sqlite:
        return (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
        )
    return "SELECT pg_sleep(30)"


def test_a_runaway_statement_is_stopped_at_the_deadline(world: World) -> None:
    db = world.db
    started = time.monotonic()
    with (
        pytest.raises(Unavailable) as refused,
        request_deadline(started + 0.3, 0.3),
        db.unit_of_work(write=False) as uow,
    ):
        uow.session.execute(text(_runaway(db)))
    elapsed = time.monotonic() - started
    assert refused.value.code == "time_budget_exceeded"
    assert "0.3 s" in refused.value.detail
    assert elapsed < 3, elapsed


def test_a_statement_late_in_the_transaction_ends_at_the_deadline(world: World) -> None:
    """The limit in force shrinks as the deadline nears: a statement started late gets
    what is left, not a whole statement timeout."""
    db = world.db
    budget, between = 2.0, 1.8
    started = time.monotonic()
    with (
        pytest.raises(Unavailable),
        request_deadline(started + budget, budget),
        db.unit_of_work(write=False) as uow,
    ):
        uow.session.execute(text("SELECT 1"))
        time.sleep(between)  # Python work between statements: not interrupted, but counted
        uow.session.execute(text(_runaway(db)))
    elapsed = time.monotonic() - started
    # Stopped at the deadline (2.0 s), not a whole budget after the statement began
    # (3.8 s): the upper bound leaves 1.5 s for a loaded machine.
    assert budget <= elapsed < between + budget - 0.3, elapsed


def test_no_statement_starts_after_the_deadline(world: World) -> None:
    db = world.db
    with (
        pytest.raises(Unavailable) as refused,
        request_deadline(time.monotonic() - 1, 5),
        db.unit_of_work(write=False) as uow,
    ):
        uow.session.execute(text("SELECT 1"))
    assert refused.value.code == "time_budget_exceeded"


def test_work_outside_a_request_has_no_deadline(world: World) -> None:
    """A pooled connection that served a request forgets its deadline."""
    db = world.db
    # A budget a loaded machine still meets for one SELECT, then left to pass.
    with request_deadline(time.monotonic() + 1.0, 1.0), db.unit_of_work(write=False) as uow:
        uow.session.execute(text("SELECT 1"))
    time.sleep(1.1)  # the old deadline is now in the past
    with db.unit_of_work(write=False) as uow:
        if db.is_sqlite:
            assert uow.session.execute(text("PRAGMA busy_timeout")).scalar_one() == 30_000
            # Long enough to cross many progress-handler calls: nothing interrupts it.
            count = uow.session.execute(
                text(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "WHERE x < 300000) SELECT count(*) FROM c"
                )
            ).scalar_one()
            assert count == 300_000
        else:
            assert uow.session.execute(text("SHOW statement_timeout")).scalar_one() == "0"
            uow.session.execute(text("SELECT pg_sleep(0.2)"))


@contextmanager
def writers_locked_out(world: World) -> Iterator[None]:
    """Another session holds what every write to groups needs, until the block ends."""
    url = world.settings.database_url
    if world.db.is_sqlite:
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            connection.execute("ROLLBACK")
            connection.close()
        return
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as connection:
            connection.execute(text("LOCK TABLE groups IN EXCLUSIVE MODE"))
            yield
            connection.rollback()
    finally:
        engine.dispose()


@pytest.mark.parametrize("surface", sorted(WRITES))
def test_a_request_held_past_its_budget_is_503_in_its_surfaces_form(
    world: World, surface: str
) -> None:
    if surface not in {e.surface.name for e in world.endpoints}:
        pytest.skip(f"the {surface} surface is not in this build")
    method, path = WRITES[surface]
    (endpoint,) = [
        e
        for e in world.endpoints
        if e.surface.name == surface and (e.method, e.path) == (method, path)
    ]
    (probe, *_) = samples_for(world, endpoint, "acme", "acme") or []
    probe.headers.update(PROFILES[surface].credentials(world, "acme", "admin"))
    before = snapshot(world.db)
    with writers_locked_out(world):
        started = time.monotonic()
        response = probe.send(world.client)
        elapsed = time.monotonic() - started
    profile = PROFILES[surface]
    assert response.status_code == 503, response.text
    assert profile.error_form(response), response.text
    assert "time budget" in profile.message(response), response.text
    assert BUDGET * 0.8 <= elapsed < BUDGET + 3, elapsed
    assert snapshot(world.db) == before
    # The lock gone, the same request goes through.
    assert 200 <= probe.send(world.client).status_code < 300


def test_the_delete_worker_is_not_bound_by_the_budget(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker waits on a lock for twice the request budget without being cut short
    (on SQLite its claim waits, on PostgreSQL its chunk): the operation is still under way
    when the lock goes, then succeeds, and nothing was stopped and tried again on the way."""
    group = world.fresh_group("acme")
    for number in range(3):
        world.post(
            "/api/v1/objects",
            {"kind": "device", "name": f"budget-{number}", "homeGroupId": group["id"]},
        )
    world.ctx.worker.stop()
    try:
        accepted = world.client.delete(
            f"/api/v1/groups/{group['id']}", params={"wait": "0"}, headers=world.native("acme")
        )
        assert accepted.status_code == 202, accepted.text
        operation = accepted.json()["id"]
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="groupd"), writers_locked_out(world):
            world.ctx.worker.start()
            time.sleep(2 * BUDGET)  # the worker's chunk waits on the lock all this time
            during = _state(world, operation)
        body = _wait(world, operation)
        complaints = [r.getMessage() for r in caplog.records if r.name.startswith("groupd")]
    finally:
        world.ctx.worker.stop()
        world.ctx.worker.start()
    assert during["state"] in ("accepted", "running"), during
    assert body["state"] == "succeeded", body
    assert complaints == []


def _state(world: World, operation: str) -> dict[str, Any]:
    response = world.client.get(f"/api/v1/operations/{operation}", headers=world.native("acme"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _wait(world: World, operation: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body = _state(world, operation)
        if body["state"] in ("succeeded", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.05)
