"""Random sequences of creates, moves and deletes keep the tree exact (hypothesis).

A Python model of the tree runs beside the services; after every sequence the database's
parent links, paths and subtree queries must agree with the model, and the invariants hold.
"""

from __future__ import annotations

import itertools
import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from groupd.clock import system_clock
from groupd.errors import Conflict, DeleteRefused
from groupd.services import accounts, deletion, groups
from groupd.services.common import system_actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.store.models import Group
from groupd.store.tree import in_subtree
from groupd.worker import Worker
from invariants import assert_invariants

_tenant_names = (f"prop-{n}" for n in itertools.count())

step = st.tuples(
    st.sampled_from(["create", "create", "move", "delete"]),
    st.integers(0, 10_000),
    st.integers(0, 10_000),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(step, min_size=1, max_size=25))
def test_tree_operations_match_a_model(
    db: Database, settings: Settings, steps: list[tuple[str, int, int]]
) -> None:
    now = system_clock()
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name=next(_tenant_names), now=now)
    actor = system_actor(tenant.id)
    with db.unit_of_work(write=False) as uow:
        built_in = uow.session.execute(
            select(Group.id, Group.uuid, Group.parent_id).where(
                Group.tenant_id == tenant.id, Group.kind == "static"
            )
        ).all()
    by_id = {row.id: row.uuid for row in built_in}
    parent_of: dict[uuid.UUID, uuid.UUID | None] = {
        row.uuid: by_id.get(row.parent_id) for row in built_in
    }
    worker = Worker(db, settings)
    serial = itertools.count()

    def descendants(node: uuid.UUID) -> set[uuid.UUID]:
        out = {node}
        changed = True
        while changed:
            changed = False
            for child, parent in parent_of.items():
                if parent in out and child not in out:
                    out.add(child)
                    changed = True
        return out

    for action, a, b in steps:
        nodes = sorted(parent_of, key=str)
        if action == "create":
            parent = nodes[a % len(nodes)]
            with transaction(db) as uow:
                view = groups.create_group(
                    uow,
                    actor=actor,
                    spec=groups.GroupSpec(name=f"n{next(serial)}", parent_uuid=parent),
                    now=now,
                )
            parent_of[view.uuid] = parent
        elif action == "move" and len(nodes) > 1:
            movable = [n for n in nodes if parent_of[n] is not None]
            node = movable[a % len(movable)]
            target = nodes[b % len(nodes)]
            try:
                with transaction(db) as uow:
                    groups.move_group(
                        uow, actor=actor, group_id=node, new_parent_id=target, now=now
                    )
            except Conflict as error:
                assert error.code in ("move_into_self", "name_taken", "protected_group")
                if error.code == "move_into_self":
                    assert target in descendants(node)
                continue
            assert target not in descendants(node)
            parent_of[node] = target
        elif action == "delete" and len(nodes) > 1:
            candidates = [n for n in nodes if parent_of[n] is not None]
            node = candidates[a % len(candidates)]
            try:
                with transaction(db) as uow:
                    deletion.request_delete(
                        uow, actor=actor, group_id=node, release_units=bool(b % 2), now=now
                    )
            except DeleteRefused:
                continue
            worker.run_until_idle()
            for gone in descendants(node):
                del parent_of[gone]
    with db.unit_of_work(write=False) as uow:
        rows = uow.session.execute(
            select(Group.uuid, Group.parent_id, Group.id, Group.path).where(
                Group.tenant_id == tenant.id, Group.kind == "static"
            )
        ).all()
        uuid_of = {row.id: row.uuid for row in rows}
        stored = {row.uuid: (uuid_of[row.parent_id] if row.parent_id else None) for row in rows}
        assert stored == parent_of
        for row in rows:  # the path range query returns exactly the model's subtree
            subtree = set(
                uow.session.execute(
                    select(Group.uuid).where(in_subtree(row.path, tenant_id=tenant.id))
                ).scalars()
            )
            assert subtree == descendants(row.uuid)
    assert_invariants(db)
