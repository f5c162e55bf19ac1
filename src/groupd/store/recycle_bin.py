"""The recycle bin's set-based statements: units given back and taken again, paths
rewritten for a restore under another parent.

A subtree in the bin is named by the delete that put it there: its groups carry that
``operation_id`` and the state ``deleted`` (docs/decisions/0030). Each statement here
touches every row of such a subtree at once and returns what it changed per licence;
the services do the accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, bindparam, func, select, update

from groupd.store.db import UnitOfWork
from groupd.store.models import Activation, DirectoryObject, Group, Licence
from groupd.store.tree import in_subtree


@dataclass(frozen=True, slots=True)
class Held:
    """What a subtree's activations held of one licence: how many, and their units."""

    activations: int
    units: int


def _binned_objects(*, operation_id: int, tenant_id: int) -> Any:
    binned_groups = select(Group.id).where(
        Group.operation_id == operation_id, Group.tenant_id == tenant_id
    )
    return select(DirectoryObject.id).where(
        DirectoryObject.home_group_id.in_(binned_groups), DirectoryObject.tenant_id == tenant_id
    )


def _changed_per_licence(uow: UnitOfWork, statement: Any) -> dict[int, Held]:
    """Run an UPDATE of activations and say what the rows it changed held, per licence.

    PostgreSQL sums them inside the statement (a data-modifying WITH); SQLite has no such
    WITH and returns a row per activation, summed here."""
    returning = statement.returning(Activation.licence_id, Activation.units)
    connection = uow.session.connection()
    held: dict[int, Held] = {}
    if uow.is_sqlite:
        for licence_id, units in connection.execute(returning):
            before = held.get(licence_id, Held(0, 0))
            held[licence_id] = Held(before.activations + 1, before.units + int(units))
        return held
    changed = returning.cte("changed")
    summed = select(changed.c.licence_id, func.count(), func.sum(changed.c.units)).group_by(
        changed.c.licence_id
    )
    for licence_id, count, units in connection.execute(summed):
        held[int(licence_id)] = Held(int(count), int(units))
    return held


def release_units_of_subtree(
    uow: UnitOfWork, *, operation_id: int, tenant_id: int, now: datetime
) -> dict[int, Held]:
    """Mark released every activation of the binned subtree's objects that is not yet,
    and give their units back to their licences. Returns what was released per licence."""
    held = _changed_per_licence(
        uow,
        update(Activation)
        .where(
            Activation.object_id.in_(
                _binned_objects(operation_id=operation_id, tenant_id=tenant_id)
            ),
            Activation.released_at.is_(None),
        )
        .values(released_at=now)
        .execution_options(synchronize_session=False),
    )
    _add_used_units(uow, {key: -item.units for key, item in held.items()})
    return held


def take_back_units_of_subtree(
    uow: UnitOfWork, *, operation_id: int, tenant_id: int
) -> dict[int, Held]:
    """Consume again the units of every released activation of the binned subtree's
    objects. The caller has checked, under the licences' locks, that they are free."""
    held = _changed_per_licence(
        uow,
        update(Activation)
        .where(
            Activation.object_id.in_(
                _binned_objects(operation_id=operation_id, tenant_id=tenant_id)
            ),
            Activation.released_at.is_not(None),
        )
        .values(released_at=None)
        .execution_options(synchronize_session=False),
    )
    _add_used_units(uow, {key: item.units for key, item in held.items()})
    return held


_ADD_USED = (
    update(Licence)
    .where(Licence.id == bindparam("licence_id"))
    .values(used_units=Licence.used_units + bindparam("units", type_=Integer()))
)


def _add_used_units(uow: UnitOfWork, change: dict[int, int]) -> None:
    # In key order, as the delete's chunks do: concurrent writers lock licences alike.
    for licence_id in sorted(change):
        if change[licence_id]:
            uow.session.execute(_ADD_USED, {"licence_id": licence_id, "units": change[licence_id]})


def lock_licences(uow: UnitOfWork, *, licence_ids: list[int]) -> list[Licence]:
    """The licences, row-locked in key order for the rest of the transaction."""
    if not licence_ids:
        return []
    return list(
        uow.session.execute(
            select(Licence).where(Licence.id.in_(licence_ids)).order_by(Licence.id).with_for_update()
        ).scalars()
    )


def rewrite_subtree_paths(
    uow: UnitOfWork, *, tenant_id: int, old_prefix: str, new_prefix: str, depth_shift: int
) -> int:
    """Give every group under ``old_prefix`` (whatever its state: a subtree binned
    earlier inside this one moves with it) the path under ``new_prefix``."""
    return int(
        uow.session.execute(
            update(Group)
            .where(in_subtree(old_prefix, tenant_id=tenant_id))
            .values(
                path=new_prefix + func.substr(Group.path, len(old_prefix) + 1),
                depth=Group.depth + depth_shift,
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
    )
