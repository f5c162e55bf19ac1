"""Phase 2's steps: progress totals counted beside the chunks, and SQLite chunks that
make way for a waiting writer.

Progress totals are counted over a snapshot beside the chunks, and still add up.

The count reads what is left as of its snapshot and adds what the progress said was done
in the same snapshot. Chunks that commit while it runs, and chunks that ran before it
(a worker restarted after a crash), change neither side of that sum.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from conftest import create_engine_for
from groupd.api import wire
from groupd.clock import system_clock
from groupd.services import accounts, deletion, groups, licensing, memberships, objects, operations
from groupd.services.common import Actor, system_actor
from groupd.services.deletion.purge import _select_chunk
from groupd.settings import Settings
from groupd.store import deletion as store
from groupd.store.db import Database, transaction
from groupd.store.models import Operation
from groupd.worker import Worker
from invariants import assert_invariants

DEVICES_PER_GROUP = 3


def _subtree(db: Database) -> tuple[Actor, uuid.UUID, dict[str, int]]:
    """top with six leaf groups, each holding three devices and one user (every object
    with one activation); every user is a member of a user group outside the subtree."""
    leaves = [(f"leaf{index}", DEVICES_PER_GROUP, 1) for index in range(6)]
    return _build_subtree(db, leaves, label="totals")


def _build_subtree(
    db: Database, leaves: list[tuple[str, int, int]], *, label: str
) -> tuple[Actor, uuid.UUID, dict[str, int]]:
    """A new tenant with a group "top" whose leaves are (name, devices, users); every
    object has one activation, and every user is a member of a user group outside the
    subtree. Returns the actor, top's id and what deleting top removes."""
    now = system_clock()
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name=f"{label}-{uuid.uuid4().hex[:8]}", now=now)
        actor = system_actor(tenant.id)
        root = groups.list_groups(uow, actor=actor, name="All").items[0].uuid
        licence = licensing.create_licence(
            uow, actor=actor, product="seat", unit_kind="seat", total_units=1000, now=now
        )
        team = groups.create_group(
            uow, actor=actor, spec=groups.GroupSpec(name="team", kind="user"), now=now
        )
        top = groups.create_group(
            uow, actor=actor, spec=groups.GroupSpec(name="top", parent_uuid=root), now=now
        )
        activation = [objects.ActivationSpec(licence_uuid=licence.uuid)]
        for leaf_name, devices, users in leaves:
            leaf = groups.create_group(
                uow,
                actor=actor,
                spec=groups.GroupSpec(name=leaf_name, parent_uuid=top.uuid),
                now=now,
            )
            for number in range(devices):
                objects.create_object(
                    uow,
                    actor=actor,
                    spec=objects.ObjectSpec(
                        kind="device",
                        name=f"{leaf_name}-d{number}",
                        home_group_uuid=leaf.uuid,
                        activations=activation,
                    ),
                    now=now,
                )
            for number in range(users):
                user = objects.create_object(
                    uow,
                    actor=actor,
                    spec=objects.ObjectSpec(
                        kind="user",
                        name=f"{leaf_name}-u{number}",
                        home_group_uuid=leaf.uuid,
                        login_name=f"{leaf_name}-u{number}",
                        status="inactive",
                        activations=activation,
                    ),
                    now=now,
                )
                memberships.add_member(
                    uow, actor=actor, group_id=team.uuid, object_id=user.uuid, now=now
                )
    devices = sum(leaf[1] for leaf in leaves)
    users = sum(leaf[2] for leaf in leaves)
    expected = {
        "devices": devices,
        "users": users,
        "memberships": users,
        "activations": devices + users,
    }
    return actor, top.uuid, expected


def _accept(db: Database, actor: Actor, top: uuid.UUID) -> int:
    with transaction(db) as uow:
        plan = deletion.request_delete(
            uow, actor=actor, group_id=top, release_units=True, now=system_clock()
        )
    with db.unit_of_work(write=False) as uow:
        assert plan.operation_uuid is not None
        view = operations.get_operation(
            uow, actor=actor, operation_id=plan.operation_uuid, now=system_clock()
        )
    return view.id


def _claim(db: Database, settings: Settings) -> Worker:
    worker = Worker(db, settings)
    assert worker.claim() is not None
    return worker


def _chunk(
    db: Database,
    worker: Worker,
    operation_id: int,
    *,
    groups: int = 2,
    step: int | None = None,
    budget: int = 1000,
    steps_left: deletion.StepsLeft | None = None,
) -> deletion.ChunkResult:
    with transaction(db) as uow:
        return deletion.run_delete_chunk(
            uow,
            operation_id=operation_id,
            worker_id=worker.id,
            now=system_clock(),
            lease_seconds=60,
            chunk_groups=groups,
            chunk_objects=budget,
            result_ttl_seconds=600,
            step_objects=step,
            steps_left=steps_left,
        )


def _run_to_end(db: Database, worker: Worker, operation_id: int, **chunk: Any) -> None:
    while not _chunk(db, worker, operation_id, **chunk).finished:
        pass


def _assert_removed(
    progress: dict[str, Any], expected: dict[str, int], *, with_totals: bool = True
) -> None:
    """Every kind's progress says all of ``expected`` went (and is the total)."""
    for kind, total in expected.items():
        if with_totals:
            assert progress[kind] == {"done": total, "total": total}, kind
        else:
            assert progress[kind]["done"] == total, kind


def _impact(db: Database, actor: Actor, top: uuid.UUID) -> dict[str, Any]:
    """What deleting ``top`` would remove now (a dry run's figures)."""
    with transaction(db) as uow:
        path = groups.lock_live_group(uow, tenant_id=actor.tenant_id, group_uuid=top).path
        return wire.impact(
            deletion.measure_impact(uow, tenant_id=actor.tenant_id, path=path, release_units=True)
        )


def _progress(db: Database, operation_id: int) -> dict[str, Any]:
    with db.unit_of_work(write=False) as uow:
        operation = uow.session.get(Operation, operation_id)
        assert operation is not None
        return operation.progress


def test_totals_counted_after_some_chunks_add_up(db: Database, settings: Settings) -> None:
    """A count that starts after chunks already ran (a restart) still gives the totals."""
    actor, top, expected = _subtree(db)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    _chunk(db, worker, operation_id)
    done_first = _progress(db, operation_id)
    assert 0 < done_first["devices"]["done"] < expected["devices"]
    assert done_first["devices"]["total"] is None, "no totals before they are counted"
    with db.snapshot() as uow:
        totals = deletion.count_totals(uow, operation_id=operation_id)
    assert totals == expected
    with transaction(db) as uow:
        deletion.record_totals(uow, operation_id=operation_id, worker_id=worker.id, totals=totals)
    _run_to_end(db, worker, operation_id)
    _assert_removed(_progress(db, operation_id), expected)
    assert_invariants(db)


def test_chunks_committed_during_the_count_do_not_change_it(
    db: Database, settings: Settings
) -> None:
    """Two chunks commit between the count's read of the progress and its count of what
    is left: the snapshot keeps them out of both, so the sum is still the totals (without
    it, the rows those chunks removed would be in neither)."""
    actor, top, expected = _subtree(db)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    chunks_run: list[deletion.ChunkResult] = []

    def between(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.startswith("SELECT group_tally") and not chunks_run:
            chunks_run.append(_chunk(db, worker, operation_id))
            chunks_run.append(_chunk(db, worker, operation_id))

    event.listen(db.engine, "before_cursor_execute", between)
    try:
        with db.snapshot() as uow:
            assert deletion.needs_totals(uow, operation_id=operation_id)
            totals = deletion.count_totals(uow, operation_id=operation_id)
    finally:
        event.remove(db.engine, "before_cursor_execute", between)
    assert len(chunks_run) == 2
    assert _progress(db, operation_id)["devices"]["done"] > 0
    assert totals == expected
    assert_invariants(db, settled=False)


def test_a_delete_that_ends_before_its_count_reports_what_it_removed(
    db: Database, settings: Settings
) -> None:
    actor, top, expected = _subtree(db)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    _run_to_end(db, worker, operation_id)
    _assert_removed(_progress(db, operation_id), expected)
    with db.unit_of_work(write=False) as uow:
        assert not deletion.needs_totals(uow, operation_id=operation_id)
    assert_invariants(db)


def test_the_worker_records_totals_counted_beside_its_chunks(
    db: Database, settings: Settings
) -> None:
    actor, top, expected = _subtree(db)
    operation_id = _accept(db, actor, top)
    Worker(db, settings.model_copy(update={"delete_chunk_groups": 1})).run_until_idle()
    progress = _progress(db, operation_id)
    assert progress["groups"]["done"] == progress["groups"]["total"] == 7
    _assert_removed(progress, expected)
    assert_invariants(db)


class _WriterDuringFirstStep:
    """A writer that queues for the lock while the chunk's first step runs (SQLite)."""

    def __init__(self, db: Database, actor: Actor) -> None:
        self.db = db
        self.actor = actor
        self.done = threading.Event()
        self.threads: list[threading.Thread] = []

    def _write(self) -> None:
        with transaction(self.db) as uow:
            groups.create_group(
                uow,
                actor=self.actor,
                spec=groups.GroupSpec(name="written", kind="user"),
                now=system_clock(),
            )
        self.done.set()

    def _arrive(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        assert self.db.writer_queue is not None
        if statement.startswith("DELETE FROM activations") and not self.threads:
            self.threads.append(threading.Thread(target=self._write))
            self.threads[0].start()
            for _ in range(500):  # until it is queued behind the chunk
                if self.db.writer_queue.others_waiting():
                    break
                time.sleep(0.01)

    def __enter__(self) -> _WriterDuringFirstStep:
        event.listen(self.db.engine, "before_cursor_execute", self._arrive)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.db.engine, "before_cursor_execute", self._arrive)
        self.threads[0].join(10)
        assert self.done.is_set()


def test_a_sqlite_chunk_ends_after_the_step_a_writer_waited_for(
    db: Database, settings: Settings
) -> None:
    """A writer queues while the chunk's first step runs: the chunk commits after that
    step (two objects), not after its six groups, and the writer gets the lock next.
    The next step takes the same chunk on from the step ends it had not reached
    (``steps_left``): it does not read the chunk's bounds again, and removes exactly
    what is left."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL writers never wait for a chunk: it locks only its own rows")
    actor, top, expected = _subtree(db)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    with _WriterDuringFirstStep(db, actor):
        first = _chunk(db, worker, operation_id, groups=6, step=2)
    progress = _progress(db, operation_id)
    assert progress["devices"]["done"] + progress["users"]["done"] == 2, progress
    assert first.steps_left is not None
    assert len(first.steps_left.chunk) == 6
    # 24 objects in steps of 2: 11 step ends, the first of them reached.
    assert len(first.steps_left.bounds) == 10
    # Every statement the next step sends, Prepared ones included: none reads the
    # chunk's bounds (the ids sorted here, or the database's numbering of them).
    reads_bounds = store.CHUNK_OBJECT_IDS.compiled_for(db.engine.dialect).sql
    with db.watch_statements() as statements:
        second = _chunk(db, worker, operation_id, groups=6, step=2, steps_left=first.steps_left)
    assert statements, "the seam sees the step's statements"
    assert [sql for sql in statements if sql == reads_bounds or "row_number()" in sql] == []
    assert second.steps_left is None
    assert _progress(db, operation_id)["groups"]["done"] == 6
    _run_to_end(db, worker, operation_id, groups=6, step=2)
    _assert_removed(_progress(db, operation_id), expected, with_totals=False)
    assert_invariants(db)


@pytest.mark.parametrize("bounds", [(), (1,), (10**12, 1), (2**62,)])
def test_steps_left_that_are_stale_still_remove_exactly_the_chunk(
    db: Database, settings: Settings, bounds: tuple[int, ...]
) -> None:
    """Whatever step ends a chunk is given, its steps cover every id: the chunk's
    objects all go, once, and nothing else does."""
    actor, top, expected = _subtree(db)
    other_actor, other_top, _ = _subtree(db)
    before_other = _impact(db, other_actor, other_top)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    with transaction(db) as uow:
        chunk, _ = _select_chunk(uow, operation_id=operation_id, chunk_groups=6)
    result = _chunk(
        db,
        worker,
        operation_id,
        groups=6,
        step=2,
        steps_left=deletion.StepsLeft(tuple(chunk), bounds),
    )
    assert result.steps_left is None
    assert _progress(db, operation_id)["groups"]["done"] == 6
    _run_to_end(db, worker, operation_id, groups=6, step=2)
    _assert_removed(_progress(db, operation_id), expected, with_totals=False)
    assert _impact(db, other_actor, other_top) == before_other
    assert_invariants(db)


def test_without_a_waiting_writer_a_chunk_takes_all_its_steps(
    db: Database, settings: Settings
) -> None:
    actor, top, expected = _subtree(db)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    _chunk(db, worker, operation_id, groups=6, step=2)
    progress = _progress(db, operation_id)
    assert progress["devices"]["done"] == expected["devices"]
    assert progress["groups"]["done"] == 6
    assert_invariants(db, settled=False)


@pytest.mark.parametrize(("step", "budget"), [(1, 1000), (3, 7), (4, 4), (5, 1000), (1000, 5)])
def test_steps_and_budgets_of_any_size_remove_exactly_the_subtree(
    db: Database, settings: Settings, step: int, budget: int
) -> None:
    """However a chunk's objects are cut (steps of ``step``, at most ``budget`` a chunk),
    every object of the subtree goes exactly once, no chunk takes more than its budget,
    and another tenant's identical tree is untouched."""
    actor, top, expected = _subtree(db)
    other_actor, other_top, _ = _subtree(db)
    before_other = _impact(db, other_actor, other_top)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    removed_so_far = 0
    while True:
        result = _chunk(db, worker, operation_id, groups=6, step=step, budget=budget)
        progress = _progress(db, operation_id)
        removed = progress["devices"]["done"] + progress["users"]["done"]
        assert removed - removed_so_far <= budget, (removed, removed_so_far)
        removed_so_far = removed
        if result.finished:
            break
    _assert_removed(progress, expected, with_totals=False)
    assert progress["unitsReleased"] == expected["activations"]
    assert _impact(db, other_actor, other_top) == before_other
    assert_invariants(db)


def _wal_restarts(database_url: str) -> int:
    """How many times the WAL has started again from its beginning: the checkpoint
    sequence number in the WAL file's header (bytes 12 to 15, big-endian)."""
    wal = Path(database_url.removeprefix("sqlite:///") + "-wal")
    return int.from_bytes(wal.read_bytes()[12:16], "big")


def test_a_sqlite_delete_starts_the_wal_again_after_every_other_chunk(
    settings: Settings,
) -> None:
    """The worker folds the chunks' pages back into the database, one fold beside the
    next chunk and one after it, so every other chunk writes the WAL from its beginning
    again instead of growing it over the whole delete. The background checkpointer is
    off here: the worker alone restarts the WAL."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL has no WAL file of its own to keep short")
    db = Database(create_engine_for(settings.database_url), checkpoint_interval=None)
    try:
        actor, top, expected = _subtree(db)
        operation_id = _accept(db, actor, top)
        restarts_before = _wal_restarts(settings.database_url)
        one_group_a_chunk = settings.model_copy(update={"delete_chunk_groups": 1})
        Worker(db, one_group_a_chunk).run_until_idle()
        progress = _progress(db, operation_id)
        _assert_removed(progress, expected)
        chunks = int(progress["chunks"])
        assert chunks >= 7, progress  # a chunk per group
        # Every other chunk's fold lets the next one restart the WAL; a fold that
        # overlapped the progress count's read snapshot copied only part of it, so allow
        # for a few.
        assert _wal_restarts(settings.database_url) - restarts_before >= chunks // 2 - 2
        assert_invariants(db)
    finally:
        db.dispose()


def _subtree_of_separate_kinds(db: Database) -> tuple[Actor, uuid.UUID, dict[str, int]]:
    """top with a leaf of devices alone, a leaf of users alone and a leaf of both."""
    leaves = [("devices", 4, 0), ("users", 0, 2), ("both", 1, 1)]
    return _build_subtree(db, leaves, label="kinds")


@pytest.mark.parametrize(("chunk_groups", "step"), [(1, 1), (1, None), (3, 2), (3, None)])
def test_chunks_of_devices_alone_and_chunks_with_users_count_each_kind(
    db: Database, settings: Settings, chunk_groups: int, step: int | None
) -> None:
    """A chunk that holds devices alone skips the count by kind and the memberships, and
    counts its devices by the DELETE; a chunk with users counts them by kind. Either way
    each kind's progress is exact and the users' memberships go with them."""
    actor, top, expected = _subtree_of_separate_kinds(db)
    operation_id = _accept(db, actor, top)
    worker = _claim(db, settings)
    _run_to_end(db, worker, operation_id, groups=chunk_groups, step=step)
    progress = _progress(db, operation_id)
    _assert_removed(progress, expected, with_totals=False)
    assert progress["unitsReleased"] == expected["activations"]
    assert_invariants(db)


@pytest.mark.parametrize(
    ("step", "budget"),
    [(1, 1), (2, 5), (3, 8), (2, 10), (5, 20), (8, 8), (4, 40), (7, 100), (6, 30), (100, 9)],
)
def test_step_bounds_sorted_here_are_the_bounds_the_database_numbers(
    db: Database, step: int, budget: int
) -> None:
    """The step bounds read from the chunk's ids and sorted in Python (SQLite's way) are
    the ones the window query numbers, for devices spread over the groups round-robin
    (so their ids interleave across the chunk), and none when the chunk holds more than
    the ids it may sort here."""
    if not db.is_sqlite:
        pytest.skip("PostgreSQL numbers the bounds itself: its chunks take one step each")
    now = system_clock()
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name=f"bounds-{uuid.uuid4().hex[:8]}", now=now)
        actor = system_actor(tenant.id)
        root = groups.list_groups(uow, actor=actor, name="All").items[0].uuid
        leaves = [
            groups.create_group(
                uow, actor=actor, spec=groups.GroupSpec(name=f"b{n}", parent_uuid=root), now=now
            )
            for n in range(4)
        ]
        for number in range(30):
            objects.create_object(
                uow,
                actor=actor,
                spec=objects.ObjectSpec(
                    kind="device",
                    name=f"d{number}",
                    home_group_uuid=leaves[number % len(leaves)].uuid,
                ),
                now=now,
            )
    with transaction(db) as uow:
        chunk = [leaf.id for leaf in leaves]
        numbered = store.step_bounds_numbered(
            uow, chunk=chunk, tenant_id=tenant.id, step=step, budget=budget
        )
        sorted_here = store.step_bounds_sorted_here(
            uow, chunk=chunk, tenant_id=tenant.id, step=step, budget=budget
        )
        if store.SORTED_HERE_PER_BUDGET * budget + 1 <= 30:  # the 30 devices
            assert sorted_here is None
        else:
            assert sorted_here == numbered
            assert numbered[0], "a bound at least: the chunk takes several steps"
    assert_invariants(db)
