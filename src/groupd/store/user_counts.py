"""Kept counts of users per home group (decision 0055).

A SCIM page must say how many users match (RFC 7644 ``totalResults``); counting a
tenant's users row by row grows with the tenant. The count of users each static group
homes is kept instead, changed in the same transaction as the rows it counts: a
tenant's live users are then the sum over its live homes, a few rows. Deletes and
restores change only the state of groups, so they need nothing here: a home's count
stays while it is in the recycle bin and counts again when it comes back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group, UserCount, table_of


def count_users_into(uow: UnitOfWork, *, tenant_id: int, changes: Mapping[int, int]) -> None:
    """Add ``changes`` (home group key: users gained, negative for users lost) to the
    kept counts. Gains alone (every create and import) are one upsert, whatever the
    number of homes. Homes in key order, so that two transactions moving users between
    the same homes lock their rows in one order."""
    ordered = [(home, delta) for home, delta in sorted(changes.items()) if delta]
    if not ordered:
        return
    if all(delta > 0 for _, delta in ordered):
        _gain(uow, tenant_id, ordered)
        return
    for home, delta in ordered:
        if delta > 0:
            _gain(uow, tenant_id, [(home, delta)])
        else:
            # A home that loses users has its row: the users it loses were counted in.
            counts = table_of(UserCount)
            uow.session.execute(
                update(counts)
                .where(counts.c.tenant_id == tenant_id, counts.c.home_group_id == home)
                .values(users=counts.c.users + delta)
            )


def _gain(uow: UnitOfWork, tenant_id: int, gains: list[tuple[int, int]]) -> None:
    dialect = postgresql if uow.session.get_bind().dialect.name == "postgresql" else sqlite
    counts = table_of(UserCount)
    upsert = dialect.insert(counts)
    uow.session.execute(
        upsert.on_conflict_do_update(
            index_elements=["tenant_id", "home_group_id"],
            set_={"users": counts.c.users + upsert.excluded.users},
        ),
        [{"tenant_id": tenant_id, "home_group_id": home, "users": delta} for home, delta in gains],
    )


def user_moves(leaving: Iterable[int], arriving: Iterable[int]) -> Counter[int]:
    """The changes of users leaving the homes ``leaving`` and arriving in ``arriving``
    (one key per user)."""
    changes: Counter[int] = Counter(arriving)
    changes.subtract(Counter(leaving))
    return changes


def count_live_users(uow: UnitOfWork, *, tenant_id: int) -> int:
    """The tenant's users whose home is live: the kept counts of its live homes."""
    total = uow.session.execute(
        select(func.coalesce(func.sum(UserCount.users), 0))
        .join(Group, Group.id == UserCount.home_group_id)
        .where(
            UserCount.tenant_id == tenant_id,
            Group.tenant_id == tenant_id,
            Group.state == LIVE,
        )
    ).scalar_one()
    return int(total)
