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

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite

from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group, UserCount, table_of


def count_users_into(uow: UnitOfWork, *, tenant_id: int, changes: Mapping[int, int]) -> None:
    """Add ``changes`` (home group key: users gained, negative for users lost) to the
    kept counts: one upsert, whatever the number of homes. Homes in key order, so two
    transactions moving users between the same homes lock their rows in one order."""
    rows = [
        {"tenant_id": tenant_id, "home_group_id": home, "users": delta}
        for home, delta in sorted(changes.items())
        if delta
    ]
    if not rows:
        return
    dialect = postgresql if uow.session.get_bind().dialect.name == "postgresql" else sqlite
    upsert = dialect.insert(table_of(UserCount))
    uow.session.execute(
        upsert.on_conflict_do_update(
            index_elements=["tenant_id", "home_group_id"],
            set_={"users": table_of(UserCount).c.users + upsert.excluded.users},
        ),
        rows,
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
