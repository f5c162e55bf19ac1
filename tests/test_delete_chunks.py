"""Phase 2 takes only groups without children, and copes with a child appearing anyway.

Phase 1's marking is meant to make a child under a marked group impossible; these tests
put one there behind the services' back (a raw insert, as a writer that slipped past
the marking would) at each point of a chunk: before it starts, between its selection
and its lock, and after its lock.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import bindparam, event, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from groupd.clock import system_clock
from groupd.services import accounts, deletion, groups, operations
from groupd.services.common import Actor, system_actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.store.models import Group
from groupd.store.types import UTCDateTime, UuidKey
from groupd.worker import Worker
from invariants import assert_invariants


def _tree(db: Database) -> tuple[Actor, uuid.UUID, dict[str, int]]:
    """top -> mid -> leaf under the tenant's root."""
    now = system_clock()
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name=f"chunks-{uuid.uuid4().hex[:8]}", now=now)
        actor = system_actor(tenant.id)
        root = groups.list_groups(uow, actor=actor, name="All").items[0].uuid
        made: dict[str, int] = {}
        parent = root
        for name in ("top", "mid", "leaf"):
            view = groups.create_group(
                uow, actor=actor, spec=groups.GroupSpec(name=name, parent_uuid=parent), now=now
            )
            made[name] = view.id
            parent = view.uuid
    with db.engine.connect() as connection:
        top_uuid = connection.execute(
            select(Group.uuid).where(Group.id == made["top"])
        ).scalar_one()
    return actor, top_uuid, made


def _insert_child(connection: Any, parent_id: int, name: str) -> None:
    """A live group under ``parent_id``, written straight into the table."""
    parent = connection.execute(
        text("SELECT tenant_id, path, depth FROM groups WHERE id = :id"), {"id": parent_id}
    ).one()
    new_id = connection.execute(text("SELECT max(id) + 1000 FROM groups")).scalar_one()
    connection.execute(
        text(
            "INSERT INTO groups (id, uuid, tenant_id, parent_id, path, depth, kind, name,"
            " description, protected, state, version, created_at, updated_at) VALUES"
            " (:id, :uuid, :tenant, :parent, :path, :depth, 'static', :name, '', false,"
            " 'live', 1, :now, :now)"
        ).bindparams(bindparam("uuid", type_=UuidKey()), bindparam("now", type_=UTCDateTime())),
        {
            "id": new_id,
            "uuid": uuid.uuid4(),
            "tenant": parent.tenant_id,
            "parent": parent_id,
            "path": f"{parent.path}{new_id}/",
            "depth": parent.depth + 1,
            "name": name,
            "now": system_clock(),
        },
    )


def _delete(db: Database, settings: Settings, actor: Actor, top: uuid.UUID) -> dict[str, Any]:
    with transaction(db) as uow:
        plan = deletion.request_delete(
            uow, actor=actor, group_id=top, release_units=False, now=system_clock()
        )
    assert plan.operation_uuid is not None
    Worker(db, settings).run_until_idle()
    with db.unit_of_work(write=False) as uow:
        view = operations.get_operation(
            uow, actor=actor, operation_id=plan.operation_uuid, now=system_clock()
        )
    assert view.state == "succeeded", view
    return view.progress.to_record()


@pytest.fixture
def on_chunk_selection(db: Database) -> Iterator[list[Any]]:
    """Callbacks run once, around the first chunk selection: ("before" | "after", fn)."""
    hooks: list[Any] = []

    def is_selection(statement: str) -> bool:
        return "ORDER BY groups.depth DESC" in statement and "EXISTS" in statement

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if is_selection(statement):
            for when, callback in list(hooks):
                if when == "before":
                    hooks.remove((when, callback))
                    callback()

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if is_selection(statement):
            for when, callback in list(hooks):
                if when == "after":
                    hooks.remove((when, callback))
                    callback()

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    yield hooks
    event.remove(db.engine, "before_cursor_execute", before)
    event.remove(db.engine, "after_cursor_execute", after)


def test_live_group_under_a_marked_one_is_taken_along(db: Database, settings: Settings) -> None:
    actor, top, made = _tree(db)
    with transaction(db) as uow:
        plan = deletion.request_delete(
            uow, actor=actor, group_id=top, release_units=False, now=system_clock()
        )
    # Under "mid", which is not a leaf: no chunk would take it while the child is there.
    with db.engine.begin() as connection:
        _insert_child(connection, made["mid"], "slipped-in")
    Worker(db, settings).run_until_idle()
    with db.unit_of_work(write=False) as uow:
        assert plan.operation_uuid is not None
        view = operations.get_operation(
            uow, actor=actor, operation_id=plan.operation_uuid, now=system_clock()
        )
    assert view.state == "succeeded"
    assert view.progress.adopted == 1
    assert view.progress.groups.done == 4
    assert_invariants(db)


def test_child_committed_between_selection_and_lock(
    db: Database,
    settings: Settings,
    on_chunk_selection: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if db.engine.dialect.name == "sqlite":
        pytest.skip("SQLite runs one writer at a time: nothing commits inside a chunk")
    actor, top, made = _tree(db)
    inserted = threading.Event()
    finished: list[BaseException | None] = []

    def writer() -> None:
        # Inserts under "leaf" and holds its transaction open: the foreign-key check has
        # key-share locked "leaf", so the chunk's FOR UPDATE waits for this commit, and
        # its selection (snapshot taken before it) does not see the child.
        try:
            with db.engine.begin() as connection:
                _insert_child(connection, made["leaf"], "late")
                inserted.set()
                threading.Event().wait(0.5)
            finished.append(None)
        except BaseException as error:  # reported below
            finished.append(error)
            inserted.set()

    def start_writer() -> None:
        threading.Thread(target=writer, daemon=True).start()
        assert inserted.wait(10)

    on_chunk_selection.append(("before", start_writer))
    progress = _delete(db, settings, actor, top)
    assert finished == [None]
    # No chunk hit the parent key (a failed chunk is logged and retried).
    assert not [r for r in caplog.records if "failed" in r.getMessage()], caplog.text
    assert "gained a child after selection" in caplog.text
    assert progress["adopted"] == 1
    assert progress["groups"]["done"] == 4
    assert_invariants(db)


def test_child_inserted_after_the_lock_is_refused(
    db: Database, settings: Settings, on_chunk_selection: list[Any]
) -> None:
    actor, top, made = _tree(db)
    outcome: list[BaseException | None] = []

    def writer() -> None:
        try:
            with db.engine.begin() as connection:
                _insert_child(connection, made["leaf"], "too-late")
            outcome.append(None)
        except BaseException as error:  # reported below
            outcome.append(error)

    thread = threading.Thread(target=writer, daemon=True)

    def start_writer() -> None:
        thread.start()
        thread.join(0.5)  # it waits for the chunk: its lock (PostgreSQL), the writer lock

    on_chunk_selection.append(("after", start_writer))
    progress = _delete(db, settings, actor, top)
    thread.join(30)
    # The insert waited for the chunk and then failed: on PostgreSQL its foreign-key
    # check waited for the chunk's lock and found the parent deleted; on SQLite the
    # write waited for the chunk's transaction and its snapshot was stale.
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError | OperationalError), outcome
    assert progress["groups"]["done"] == 3
    with db.engine.connect() as connection:
        assert (
            connection.execute(
                text("SELECT count(*) FROM groups WHERE name = 'too-late'")
            ).scalar_one()
            == 0
        )
    assert_invariants(db)
