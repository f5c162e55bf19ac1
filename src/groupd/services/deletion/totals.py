"""A delete's progress totals, counted over a snapshot beside its chunks.

The count reads the whole subtree once, which costs a good part of the delete itself, so
it runs on a thread of its own while the chunks go on (decision 0004). Counting what is
left as of its snapshot and adding what the progress said was done in the same snapshot
gives the totals, whichever chunks ran before or commit meanwhile.

A delete to the recycle bin has no chunks: it is one step that gives the units back. Its
subtree is counted the same way, in a snapshot, but before that step (``count_binned``),
which then holds the write lock for its writes only (decision 0031).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.exc import DBAPIError, OperationalError

from groupd.services import operations
from groupd.services.deletion import binned
from groupd.services.deletion.impact import measure_impact
from groupd.services.progress import COUNTED_KINDS, Progress
from groupd.store.db import Database, UnitOfWork, transaction
from groupd.store.models import Operation

log = logging.getLogger("groupd.deletion")


def needs_totals(uow: UnitOfWork, *, operation_id: int) -> bool:
    """Whether the operation's progress still lacks its totals."""
    operation = operations.unfinished(uow, operation_id=operation_id)
    return (
        operation is not None
        and not binned.is_whole(operation)
        and not Progress.from_record(operation.progress).totals_known
    )


def count_totals(uow: UnitOfWork, *, operation_id: int) -> dict[str, int]:
    """What the operation removes in all, per kind: what it has removed so far and what
    is left, both as of the unit's snapshot.

    Run it in a snapshot unit (``Database.snapshot``), beside the chunks: a chunk
    removes rows and adds them to the progress in one transaction, so within one
    snapshot the two add up to the same totals whichever chunks ran before, here or
    before a restart. Counting what is left reads the whole subtree once and holds no
    lock.
    """
    operation = uow.session.get(Operation, operation_id)
    assert operation is not None
    progress = Progress.from_record(operation.progress)
    impact = measure_impact(
        uow,
        tenant_id=operation.tenant_id,
        operation_id=operation_id,
        release_units=bool(operation.params.get("releaseConsumedUnits")),
    )
    left = {
        "devices": impact.devices,
        "users": impact.users,
        "memberships": impact.memberships,
        "activations": impact.activations,
    }
    return {kind: progress.tally(kind).done + left[kind] for kind in COUNTED_KINDS}


def record_totals(
    uow: UnitOfWork, *, operation_id: int, worker_id: str, totals: dict[str, int]
) -> None:
    """Store the totals counted by ``count_totals``, if this worker still holds the lease
    and no other count got there first."""
    operation = operations.held_by(uow, operation_id=operation_id, worker_id=worker_id)
    if operation is None:
        return
    progress = Progress.from_record(operation.progress)
    if progress.totals_known:
        return
    progress.record_totals(totals)
    operation.progress = progress.to_record()


class TotalsCount:
    """The count of a delete's totals, on a thread of its own over a snapshot.

    ``start`` returns once the snapshot is taken (or the operation needs no count), so
    the chunks that follow are not in it: what it counts as left plus what the progress
    said was done adds up to the totals (``count_totals``).
    """

    def __init__(self, db: Database, operation_id: int) -> None:
        self.db = db
        self.operation_id = operation_id
        self.totals: dict[str, int] | None = None
        self._needed = False
        self._snapshot_taken = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"groupd-count-{operation_id}", daemon=True
        )

    def start(self) -> bool:
        """Begin; False when there is nothing to count."""
        self._thread.start()
        self._snapshot_taken.wait()
        return self._needed

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def _run(self) -> None:
        try:
            with self.db.snapshot() as uow:
                # The first read takes the snapshot.
                self._needed = needs_totals(uow, operation_id=self.operation_id)
                self._snapshot_taken.set()
                if self._needed:
                    self.totals = count_totals(uow, operation_id=self.operation_id)
        except (OperationalError, DBAPIError) as error:
            log.warning(
                "counting operation %s failed (%s); its progress shows totals when it ends",
                self.operation_id,
                error,
            )
        finally:
            self._snapshot_taken.set()
            self._done.set()


def count_binned(db: Database, operation_id: int) -> bool:
    """For a delete to the bin whose entry lacks its contents: count them over a
    snapshot, then store them in a short write of their own. False when there was nothing
    to count, or the count failed (logged: the operation's step then counts in its
    write)."""
    try:
        with db.snapshot() as uow:
            if not binned.needs_count(uow, operation_id=operation_id):
                return False
            counted = binned.count_contents(uow, operation_id=operation_id)
        with transaction(db) as uow:
            binned.record_count(uow, operation_id=operation_id, counted=counted)
    except (OperationalError, DBAPIError) as error:
        log.warning("counting operation %s failed (%s); its step counts", operation_id, error)
        return False
    return True


def count_alongside(db: Database, operation_id: int) -> TotalsCount | None:
    """Start counting the operation's totals beside its chunks, if it lacks them; a
    delete to the bin is counted now, before its step (``count_binned``)."""
    if count_binned(db, operation_id):
        return None
    count = TotalsCount(db, operation_id)
    return count if count.start() else None
