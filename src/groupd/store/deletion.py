"""The delete's tuned statements: where a chunk's steps end, and the removal of rows.

Each function removes or reads rows and says what it removed; it does no accounting.
The rules (which groups, in what order, what the progress says, what the licences get
back) are the service's (``groupd.services.deletion``). Every difference between the
databases in phase 2 lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    delete,
    func,
    null,
    or_,
    select,
    true,
    update,
)

from groupd.store.db import UnitOfWork
from groupd.store.keys import in_keys
from groupd.store.models import Activation, DirectoryObject, Group, Licence, Membership
from groupd.store.prepared import Prepared
from groupd.store.types import UTCDateTime

FIRST_KEY = -(2**63)  # below every key: keys are 64-bit on every database
LAST_KEY = 2**63 - 1


@dataclass(slots=True)
class Removed:
    """What one statement group removed: objects by kind, memberships, activations, and
    the units those activations held per licence key."""

    devices: int = 0
    users: int = 0
    memberships: int = 0
    activations: int = 0
    units: dict[int, int] = field(default_factory=dict)

    @property
    def objects(self) -> int:
        return self.devices + self.users


def step_objects_for(uow: UnitOfWork, configured: int) -> int | None:
    """How many objects a step of a chunk removes: on SQLite ``configured``, so that a
    writer waiting for the only write lock waits for one step, not a whole chunk; on
    PostgreSQL a chunk locks only its own rows and takes one step (decision 0010)."""
    return configured if uow.is_sqlite else None


def holds_devices_only(uow: UnitOfWork, *, chunk: list[int], tenant_id: int) -> bool:
    """Whether the chunk's groups hold nothing but devices (the rule): its steps then need
    no count by kind and no probe of the memberships."""
    return (
        uow.session.execute(
            select(DirectoryObject.id)
            .where(_in_chunk(chunk, tenant_id), DirectoryObject.kind != "device")
            .limit(1)
        ).first()
        is None
    )


def _in_chunk(chunk: list[int], tenant_id: int) -> ColumnElement[bool]:
    # With the tenant, each group's objects are one range of the home index, and a step
    # seeks to its own part of each range instead of reading what earlier steps left.
    return and_(DirectoryObject.home_group_id.in_(chunk), DirectoryObject.tenant_id == tenant_id)


# step bounds ---------------------------------------------------------------------------
def step_bounds(
    uow: UnitOfWork, *, chunk: list[int], tenant_id: int, step: int, budget: int
) -> tuple[list[int], bool]:
    """Where the steps over the chunk's objects end: the ids of its objects at positions
    step, 2 x step, ... (in key order) below ``budget``, and at ``budget`` itself when it
    holds more. Also says whether the chunk fits the budget (the steps then reach its
    end). SQLite sorts the ids here when they are few enough (decision 0010)."""
    if uow.is_sqlite:
        found = step_bounds_sorted_here(
            uow, chunk=chunk, tenant_id=tenant_id, step=step, budget=budget
        )
        if found is not None:
            return found
    return step_bounds_numbered(uow, chunk=chunk, tenant_id=tenant_id, step=step, budget=budget)


def step_bounds_numbered(
    uow: UnitOfWork, *, chunk: list[int], tenant_id: int, step: int, budget: int
) -> tuple[list[int], bool]:
    """``step_bounds`` numbered by the database: one read of the chunk's index entries,
    not one per step."""
    numbered = (
        select(
            DirectoryObject.id,
            (func.row_number().over(order_by=DirectoryObject.id) - 1).label("position"),
        )
        .where(_in_chunk(chunk, tenant_id))
        .subquery()
    )
    position = numbered.c.position
    rows = uow.session.execute(
        select(numbered.c.id, position)
        .where(
            or_(
                position == budget,
                and_(position > 0, position < budget, position % step == 0),
            )
        )
        .order_by(numbered.c.id)
    ).all()
    return [int(row.id) for row in rows], all(row.position != budget for row in rows)


# At most this many times a step's budget of a chunk's ids are sorted in Python; a chunk
# that holds more has its bounds numbered by the database.
SORTED_HERE_PER_BUDGET = 4
CHUNK_OBJECT_IDS = Prepared(
    select(DirectoryObject.id)
    .where(
        in_keys(DirectoryObject.home_group_id, "chunk"),
        DirectoryObject.tenant_id == bindparam("tenant_id"),
    )
    .limit(bindparam("cap", type_=Integer()))
)


def step_bounds_sorted_here(
    uow: UnitOfWork, *, chunk: list[int], tenant_id: int, step: int, budget: int
) -> tuple[list[int], bool] | None:
    """``step_bounds`` from the chunk's ids read in the home index's order (by group) and
    sorted here, which costs SQLite less than its sort and window (decision 0010). None
    when the chunk holds more than ``SORTED_HERE_PER_BUDGET`` budgets of objects: the
    database numbers them then, so the ids held here stay bounded."""
    cap = SORTED_HERE_PER_BUDGET * budget + 1
    ids = CHUNK_OBJECT_IDS.column(uow, {"chunk": chunk, "tenant_id": tenant_id, "cap": cap})
    if len(ids) >= cap:
        return None
    ids.sort()
    bounds = ids[step:budget:step]
    if len(ids) > budget:
        bounds.append(ids[budget])
    return bounds, len(ids) <= budget


# removal -------------------------------------------------------------------------------
def remove_objects(
    uow: UnitOfWork,
    *,
    chunk: list[int],
    tenant_id: int,
    lower: int | None,
    upper: int | None,
    devices_only: bool,
    release: bool,
    now: datetime,
) -> Removed:
    """Remove the chunk's objects with ids in ``[lower, upper)`` (None: unbounded):
    their activations (deleted when ``release``, else orphaned), the users' memberships,
    then the objects. ``devices_only``: the step takes devices alone (it says so in its
    filter, so an object of another kind is left for a later step), and the objects'
    ``DELETE`` counts them."""
    if devices_only and uow.is_sqlite:
        return _remove_devices_step(
            uow,
            chunk=chunk,
            tenant_id=tenant_id,
            first=FIRST_KEY if lower is None else lower,
            last=LAST_KEY if upper is None else upper - 1,
            release=release,
            now=now,
        )
    objects_filter = and_(
        _in_chunk(chunk, tenant_id),
        true() if lower is None else DirectoryObject.id >= lower,
        true() if upper is None else DirectoryObject.id < upper,
    )
    return _remove_objects(
        uow, objects_filter=objects_filter, devices_only=devices_only, release=release, now=now
    )


def _remove_objects(
    uow: UnitOfWork, *, objects_filter: Any, devices_only: bool, release: bool, now: datetime
) -> Removed:
    session = uow.session
    if devices_only:
        objects_filter = and_(objects_filter, DirectoryObject.kind == "device")
    object_ids = select(DirectoryObject.id).where(objects_filter).scalar_subquery()
    touched = (
        delete(Activation)
        if release
        else update(Activation).values(object_id=None, orphaned_at=now)
    )
    removed = Removed()
    removed.units, removed.activations = _take_activations(
        uow, touched.where(Activation.object_id.in_(object_ids))
    )
    if devices_only:
        kinds = {"device": 0}
    else:
        kinds = dict(
            session.execute(
                select(DirectoryObject.kind, func.count())
                .where(objects_filter)
                .group_by(DirectoryObject.kind)
            ).all()
        )
    if kinds.get("user"):
        # Only users are members (invariant 4).
        user_ids = (
            select(DirectoryObject.id)
            .where(objects_filter, DirectoryObject.kind == "user")
            .scalar_subquery()
        )
        removed.memberships = int(
            session.execute(
                delete(Membership)
                .where(Membership.object_id.in_(user_ids))
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
        )
    deleted = session.execute(
        delete(DirectoryObject)
        # Filtered directly: "id IN (SELECT id FROM objects ...)" is planned by PostgreSQL
        # as a scan of the whole table; this is an index range on home_group_id.
        .where(objects_filter)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if devices_only:
        kinds["device"] = int(deleted)
    removed.devices = int(kinds.get("device", 0))
    removed.users = int(kinds.get("user", 0))
    return removed


def _take_activations(uow: UnitOfWork, statement: Any) -> tuple[dict[int, int], int]:
    """Run the DELETE or UPDATE of activations ``statement`` and say what they held: the
    units per licence and how many there were, with no separate read of the same rows.

    PostgreSQL sums them in the statement (a data-modifying WITH) and sends one row per
    licence. SQLite has no such WITH: it returns a row per activation (in process, at
    most one step's), fetched at once and summed here."""
    returning = statement.returning(Activation.licence_id, Activation.units)
    connection = uow.session.connection()
    charged: dict[int, int] = {}
    activations = 0
    if uow.is_sqlite:
        for licence_id, units in connection.execute(returning).all():
            charged[licence_id] = charged.get(licence_id, 0) + int(units)
            activations += 1
        return charged, activations
    gone = returning.cte("gone")
    summed = select(gone.c.licence_id, func.sum(gone.c.units), func.count()).group_by(
        gone.c.licence_id
    )
    for licence_id, units, count in connection.execute(summed):
        charged[licence_id] = int(units)
        activations += int(count)
    return charged, activations


# A step of a chunk of devices alone, on SQLite (where a chunk takes many steps): fixed
# statements on the driver's cursor, with the chunk's groups as one parameter
# (decisions 0003 and 0010). The step's objects: ids first..last of the chunk's devices.
_DEVICES_OF_STEP = and_(
    in_keys(DirectoryObject.home_group_id, "chunk"),
    DirectoryObject.tenant_id == bindparam("tenant_id"),
    DirectoryObject.id >= bindparam("first"),
    DirectoryObject.id <= bindparam("last"),
    DirectoryObject.kind == "device",
)
_ACTIVATIONS_OF_STEP = Activation.object_id.in_(select(DirectoryObject.id).where(_DEVICES_OF_STEP))
RELEASE_STEP_ACTIVATIONS = Prepared(
    delete(Activation)
    .where(_ACTIVATIONS_OF_STEP)
    .returning(Activation.licence_id, Activation.units)
)
ORPHAN_STEP_ACTIVATIONS = Prepared(
    update(Activation)
    .where(_ACTIVATIONS_OF_STEP)
    .values(object_id=null(), orphaned_at=bindparam("now", type_=UTCDateTime()))
    .returning(Activation.licence_id, Activation.units)
)
DELETE_STEP_DEVICES = Prepared(delete(DirectoryObject).where(_DEVICES_OF_STEP))


def _remove_devices_step(
    uow: UnitOfWork,
    *,
    chunk: list[int],
    tenant_id: int,
    first: int,
    last: int,
    release: bool,
    now: datetime,
) -> Removed:
    """``_remove_objects`` for a step of a chunk of devices alone (SQLite): the
    activations of its devices with ids ``first`` to ``last``, then the devices."""
    step = {"chunk": chunk, "tenant_id": tenant_id, "first": first, "last": last}
    if release:
        rows = RELEASE_STEP_ACTIVATIONS.all(uow, step)
    else:
        rows = ORPHAN_STEP_ACTIVATIONS.all(uow, {**step, "now": now})
    removed = Removed(activations=len(rows))
    for licence_id, units in rows:
        removed.units[licence_id] = removed.units.get(licence_id, 0) + int(units)
    removed.devices = DELETE_STEP_DEVICES.execute(uow, step)
    return removed


def remove_groups(uow: UnitOfWork, *, chunk: list[int], operation_id: int) -> tuple[int, int]:
    """Remove the chunk's groups, emptied of their objects, and their memberships.
    Returns how many memberships and groups went."""
    session = uow.session
    memberships = session.execute(
        delete(Membership)
        .where(Membership.group_id.in_(chunk))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    groups = session.execute(
        delete(Group)
        .where(Group.id.in_(chunk), Group.operation_id == operation_id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return int(memberships), int(groups)


_GIVE_UNITS_BACK = Prepared(
    update(Licence)
    .where(Licence.id == bindparam("licence_id"))
    .values(used_units=Licence.used_units - bindparam("units", type_=Integer()))
)


def give_units_back(uow: UnitOfWork, *, licence_id: int, units: int) -> None:
    """Return ``units`` to a licence's free units."""
    _GIVE_UNITS_BACK.execute(uow, {"licence_id": licence_id, "units": units})
