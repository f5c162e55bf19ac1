"""The dry-run impact counts exactly what a delete would take (hypothesis).

Random tenants: a static tree holding devices and users, a tree of user groups with
members, two licences with activations (an object may hold both), some activations
already orphaned, and sometimes a subtree already taken by an earlier delete. The impact
of a random group is compared with a plain Python count over the tables' rows.
"""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from groupd.api import wire
from groupd.clock import system_clock
from groupd.services import accounts, deletion, groups, licensing, memberships, objects
from groupd.services.common import Actor, system_actor
from groupd.store.db import Database, transaction
from groupd.store.models import Activation, DirectoryObject, Group, Licence, Membership

_tenant_names = (f"impact-{n}" for n in itertools.count())

scenario = st.fixed_dictionaries(
    {
        # parent of each new static group: an index into the groups made so far
        "static": st.lists(st.integers(0, 100), min_size=1, max_size=8),
        "user_groups": st.lists(st.integers(0, 100), min_size=1, max_size=4),
        # (home index, is a user, active, licences held as a 2-bit mask, units)
        "objects": st.lists(
            st.tuples(
                st.integers(0, 100),
                st.booleans(),
                st.booleans(),
                st.integers(0, 3),
                st.integers(1, 3),
            ),
            max_size=14,
        ),
        "members": st.lists(st.tuples(st.integers(0, 100), st.integers(0, 100)), max_size=10),
        "orphaned": st.integers(0, 3),
        "taken": st.one_of(st.none(), st.integers(0, 100)),
        "target": st.integers(0, 1000),
        "release": st.booleans(),
    }
)


def _build(db: Database, plan: dict[str, Any]) -> tuple[Actor, list[Any], list[Any]]:
    now = system_clock()
    with transaction(db) as uow:
        tenant = accounts.create_tenant(uow, name=next(_tenant_names), now=now)
        actor = system_actor(tenant.id)
        root = groups.list_groups(uow, actor=actor, name="All").items[0].uuid
        static = [root]
        for n, parent in enumerate(plan["static"]):
            spec = groups.GroupSpec(name=f"s{n}", parent_uuid=static[parent % len(static)])
            static.append(groups.create_group(uow, actor=actor, spec=spec, now=now).uuid)
        user_groups: list[Any] = []
        for n, parent in enumerate(plan["user_groups"]):
            above = user_groups[parent % len(user_groups)] if user_groups and parent % 2 else None
            spec = groups.GroupSpec(name=f"u{n}", kind="user", parent_uuid=above)
            user_groups.append(groups.create_group(uow, actor=actor, spec=spec, now=now).uuid)
        products = [("Seats", "seat"), ("Users", "user")]
        for product, unit_kind in products:
            licensing.create_licence(
                uow, actor=actor, product=product, unit_kind=unit_kind, total_units=1000, now=now
            )
        specs = []
        for n, (home, is_user, active, mask, units) in enumerate(plan["objects"]):
            held = [
                objects.ActivationSpec(product=product, units=units)
                for bit, (product, _kind) in enumerate(products)
                if mask & (1 << bit)
            ]
            specs.append(
                objects.ObjectSpec(
                    kind="user" if is_user else "device",
                    name=f"o{n}",
                    home_group_uuid=static[home % len(static)],
                    login_name=f"login{n}" if is_user else None,
                    status=("active" if active else "inactive") if is_user else None,
                    activations=held,
                )
            )
        made = objects.import_objects(uow, actor=actor, specs=specs, now=now) if specs else []
        users = [o.uuid for o in made if o.kind == "user"]
        for group_index, user_index in plan["members"]:
            if users:
                memberships.add_member(
                    uow,
                    actor=actor,
                    group_id=user_groups[group_index % len(user_groups)],
                    object_id=users[user_index % len(users)],
                    now=now,
                )
    # Activations left behind by an earlier delete that kept the units: orphaned, never
    # part of any subtree's impact.
    for activation in _rows(db, Activation, tenant.id)[: plan["orphaned"]]:
        with transaction(db) as uow:
            uow.session.execute(
                Activation.__table__.update()
                .where(Activation.id == activation.id)
                .values(object_id=None, orphaned_at=now)
            )
    if plan["taken"] is not None and len(static) > 1:
        # An earlier delete, accepted and not yet run: its groups no longer count.
        with transaction(db) as uow:
            deletion.request_delete(
                uow,
                actor=actor,
                group_id=static[1 + plan["taken"] % (len(static) - 1)],
                release_units=False,
                now=now,
            )
    return actor, static, user_groups


def _rows(db: Database, model: Any, tenant_id: int) -> list[Any]:
    """Plain rows (not ORM instances, which expire with their unit of work)."""
    table = model.__table__
    with db.unit_of_work(write=False) as uow:
        return list(uow.session.execute(select(table).where(table.c.tenant_id == tenant_id)))


def _expected(db: Database, tenant_id: int, root_uuid: Any) -> dict[str, Any]:
    """The impact, counted in Python from every row of the tenant."""
    all_groups = _rows(db, Group, tenant_id)
    root = next(g for g in all_groups if g.uuid == root_uuid)
    subtree = {g.id: g for g in all_groups if g.state == "live" and g.path.startswith(root.path)}
    homed = {o.id: o for o in _rows(db, DirectoryObject, tenant_id) if o.home_group_id in subtree}
    member_rows = _rows(db, Membership, tenant_id)
    taken = {(m.group_id, m.object_id) for m in member_rows}
    members = {(g, o) for g, o in taken if g in subtree or o in homed}
    licences = {lic.id: lic for lic in _rows(db, Licence, tenant_id)}
    charged: dict[int, list[int]] = {}
    for activation in _rows(db, Activation, tenant_id):
        if activation.object_id in homed:
            entry = charged.setdefault(activation.licence_id, [0, 0])
            entry[0] += 1
            entry[1] += activation.units
    by_licence = sorted(
        (
            (licences[key].product, licences[key].unit_kind, count, units)
            for key, (count, units) in charged.items()
        ),
        key=lambda item: item[0],
    )
    objects_by_id = {o.id: o for o in _rows(db, DirectoryObject, tenant_id)}
    groups_by_id = {g.id: g for g in all_groups}
    active: Counter[int] = Counter()
    for group_id, object_id in taken:
        member = objects_by_id[object_id]
        if (
            group_id in subtree
            and subtree[group_id].kind == "user"
            and member.status == "active"
            and groups_by_id[member.home_group_id].state == "live"
        ):
            active[group_id] += 1
    blockers = sorted(
        [("protected_group", str(g.uuid)) for g in subtree.values() if g.protected]
        + [("active_members", str(subtree[g].uuid)) for g in active]
    )
    return {
        "groups": dict(Counter(g.kind for g in subtree.values())),
        "devices": sum(1 for o in homed.values() if o.kind == "device"),
        "users": sum(1 for o in homed.values() if o.kind == "user"),
        "memberships": len(members),
        "activations": sum(count for _p, _k, count, _u in by_licence),
        "units": sum(units for _p, _k, _c, units in by_licence),
        "by_licence": by_licence,
        "blockers": blockers,
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario)
def test_dry_run_impact_matches_a_count_of_the_rows(db: Database, plan: dict[str, Any]) -> None:
    actor, static, user_groups = _build(db, plan)
    with db.unit_of_work(write=False) as uow:
        live = set(
            uow.session.execute(
                select(Group.uuid).where(Group.tenant_id == actor.tenant_id, Group.state == "live")
            ).scalars()
        )
    candidates = [g for g in static + user_groups if g in live]
    target = candidates[plan["target"] % len(candidates)]
    expected = _expected(db, actor.tenant_id, target)
    with transaction(db) as uow:
        preview = deletion.request_delete(
            uow,
            actor=actor,
            group_id=target,
            release_units=plan["release"],
            dry_run=True,
            now=system_clock(),
        )
    impact = preview.impact
    body = wire.impact(impact)
    for what in ("memberships", "activations", "users", "devices", "blockers"):
        event(f"{what}: {'some' if expected[what] else 'none'}")
    assert {k: v for k, v in body["groups"].items() if k != "total"} == expected["groups"]
    assert body["groups"]["total"] == sum(expected["groups"].values())
    assert (impact.devices, impact.users) == (expected["devices"], expected["users"])
    assert impact.memberships == expected["memberships"]
    assert impact.activations == expected["activations"]
    assert impact.units == expected["units"]
    assert [
        (item.product, item.unit_kind, item.activations, item.units) for item in impact.licences
    ] == expected["by_licence"]
    assert body["releaseConsumedUnits"] is plan["release"]
    units = body["units"]["released" if plan["release"] else "keptConsumed"]
    assert units == expected["units"]
    assert all(
        item["action"] == ("release" if plan["release"] else "keep")
        for item in body["units"]["byLicence"]
    )
    assert sorted((b.rule, str(b.group_uuid)) for b in impact.blockers) == expected["blockers"]
