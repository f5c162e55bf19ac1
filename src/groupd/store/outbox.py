"""The outbox relay's statements: being the only relay at a time, and recording what it
gave out.

Deliveries are numbered in the order the relay gives them out, which is the order their
subscriber receives them (decision 0061). Two relays at once could number a later
batch before an earlier one, so each takes this lock first, and a second one skips its
turn instead of waiting.
"""

from __future__ import annotations

from sqlalchemy import delete, text, update

from groupd.store.db import UnitOfWork
from groupd.store.keys import in_keys
from groupd.store.models import OutboxEvent, table_of
from groupd.store.prepared import Prepared

# Any constant: the key of the one PostgreSQL advisory lock groupd takes.
RELAY_LOCK_KEY = 0x67726F757064  # "groupd"
_TRY_LOCK = Prepared(text(f"SELECT pg_try_advisory_xact_lock({RELAY_LOCK_KEY})"))


def try_lock_relay(uow: UnitOfWork) -> bool:
    """Whether this unit of work is now the only relay until it ends.

    PostgreSQL: a transaction-level advisory lock (not portable to every
    PostgreSQL-compatible database; docs/webhooks.md). SQLite: a writer's unit already
    holds the database's one write lock from ``BEGIN IMMEDIATE``."""
    if uow.is_sqlite:
        return True
    row = _TRY_LOCK.one_or_none(uow, {})
    return bool(row and row[0])


_events = table_of(OutboxEvent)
# The keys as one parameter (``in_keys``): the same statement for every batch.
_RELAYED = Prepared(update(_events).where(in_keys(_events.c.id, "ids")).values(relayed=True))
_UNWANTED = Prepared(delete(_events).where(in_keys(_events.c.id, "ids")))


def mark_relayed(uow: UnitOfWork, *, wanted: list[int], unwanted: list[int]) -> None:
    """The events given out are relayed (kept for the deliveries' listings until they are
    purged), the others removed."""
    if wanted:
        _RELAYED.execute(uow, {"ids": wanted})
    if unwanted:
        _UNWANTED.execute(uow, {"ids": unwanted})
