"""Creates racing a delete: whatever wins, no orphan is left and the invariants hold."""

from __future__ import annotations

import threading
import uuid

from groupd.clock import system_clock
from groupd.errors import NotFound
from groupd.services import accounts, deletion, groups
from groupd.services.common import system_actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.worker import Worker
from invariants import assert_invariants


def test_creates_racing_a_delete_leave_no_orphan(db: Database, settings: Settings) -> None:
    now = system_clock()
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name="racers", now=now)
        actor = system_actor(tenant.id)
        root = groups.list_groups(uow, actor=actor, name="All").items[0].uuid
        top = groups.create_group(
            uow, actor=actor, spec=groups.GroupSpec(name="top", parent_uuid=root), now=now
        )
        specs = [groups.GroupSpec(name=f"leaf-{i}", parent_uuid=top.uuid) for i in range(50)]
        leaves = [
            v.uuid for v in groups.batch_create_groups(uow, actor=actor, specs=specs, now=now)
        ]
    outcomes: dict[str, int] = {"created": 0, "refused": 0}
    lock = threading.Lock()
    start = threading.Barrier(5)
    some_created = threading.Event()

    def hammer(worker_index: int) -> None:
        start.wait()
        for n in range(40):
            parent = leaves[(worker_index * 7 + n) % len(leaves)]
            try:
                with transaction(db) as uow:
                    groups.create_group(
                        uow,
                        actor=actor,
                        spec=groups.GroupSpec(
                            name=f"late-{worker_index}-{n}-{uuid.uuid4().hex[:6]}",
                            parent_uuid=parent,
                        ),
                        now=system_clock(),
                    )
                key = "created"
            except NotFound:
                key = "refused"
            with lock:
                outcomes[key] += 1
                if outcomes["created"] >= 20:
                    some_created.set()

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    start.wait()
    some_created.wait(timeout=30)  # delete while the creates are in full flow
    with transaction(db) as uow:
        deletion.request_delete(
            uow, actor=actor, group_id=top.uuid, release_units=False, now=system_clock()
        )
    for thread in threads:
        thread.join()
    Worker(db, settings).run_until_idle()
    assert outcomes["created"] + outcomes["refused"] == 160
    assert outcomes["created"] >= 20 and outcomes["refused"] > 0, outcomes
    with db.unit_of_work(write=False) as uow:
        remaining = groups.list_groups(uow, actor=actor, kind="static", limit=1000).items
    assert {g.name for g in remaining} == {"All", "Lost & found"}
    assert_invariants(db)
