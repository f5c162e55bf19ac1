"""The recycle bin's set-based statements: the books of a subtree's units, and paths
rewritten for a restore under another parent.

A subtree in the bin is named by the delete that put it there: its groups carry that
``operation_id`` and the state ``deleted`` (docs/decisions/0030). Its activations are
not touched while it waits: the units they held move in and out of their licences as
one UPDATE per licence.
"""

from __future__ import annotations

from sqlalchemy import Integer, bindparam, func, select, update

from groupd.store.db import UnitOfWork
from groupd.store.models import Group, Licence
from groupd.store.tree import in_subtree

_ADD_USED = (
    update(Licence)
    .where(Licence.id == bindparam("licence_id"))
    .values(used_units=Licence.used_units + bindparam("units", type_=Integer()))
)


def add_used_units(uow: UnitOfWork, change: dict[int, int]) -> None:
    """Add ``change`` (units per licence key, negative to give back) to the licences'
    used units, one UPDATE each, in key order as every writer of licences locks them."""
    for licence_id in sorted(change):
        if change[licence_id]:
            uow.session.execute(_ADD_USED, {"licence_id": licence_id, "units": change[licence_id]})


def lock_licences(uow: UnitOfWork, *, licence_ids: list[int]) -> list[Licence]:
    """The licences, row-locked in key order for the rest of the transaction."""
    if not licence_ids:
        return []
    return list(
        uow.session.execute(
            select(Licence)
            .where(Licence.id.in_(licence_ids))
            .order_by(Licence.id)
            .with_for_update()
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
