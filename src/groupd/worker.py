"""Phase 2 of deletes: claims operations and runs them to the end, chunk by chunk.

Any number of workers (threads in the server, ``groupd worker`` processes) share the
operations table. A worker claims one with ``SELECT ... FOR UPDATE SKIP LOCKED`` and a
lease it renews in every chunk's transaction; a chunk whose lease renewal fails does
nothing. A killed worker's operations are taken over when its lease runs out, or at once
by a worker on the same host that sees the claimer's process is gone.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import DBAPIError, OperationalError

from groupd.clock import Clock, system_clock
from groupd.services import deletion
from groupd.settings import Settings
from groupd.store.db import Database, UnitOfWork, transaction
from groupd.store.models import Operation

log = logging.getLogger("groupd.worker")
MAX_CHUNK_RETRIES = 5


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker:
    def __init__(self, db: Database, settings: Settings, *, clock: Clock = system_clock) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.host = socket.gethostname()
        self.id = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._finished: set[int] = set()
        self._finished_lock = threading.Lock()
        self._last_purge = 0.0

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        for index in range(self.settings.worker_threads):
            thread = threading.Thread(target=self._loop, name=f"groupd-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._stop.clear()  # the worker can run again (start, or run_until_idle)

    def notify(self) -> None:
        """Wake the worker now (an operation was just accepted in this process)."""
        self._wake.set()

    def finished_here(self, operation_id: int) -> bool:
        with self._finished_lock:
            return operation_id in self._finished

    # work ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
                self._purge_now_and_then()
            except Exception:  # a bug or a lost database: log it, keep the worker alive
                log.exception("worker iteration failed")
                ran = False
            if not ran:
                self._wake.wait(self.settings.worker_poll_seconds)
                self._wake.clear()

    def run_once(self) -> bool:
        """Claim one operation and run it to the end. False when there was none."""
        operation_id = self.claim()
        if operation_id is None:
            return False
        self.run(operation_id)
        return True

    def run_until_idle(self) -> int:
        """Run every claimable operation now (the CLI and tests use this)."""
        count = 0
        while self.run_once():
            count += 1
        return count

    def claim(self) -> int | None:
        now = self.clock()
        with transaction(self.db) as uow:
            claimable = or_(Operation.lease_until.is_(None), Operation.lease_until < now)
            row = uow.session.execute(
                select(Operation.id)
                .where(Operation.state.in_(("accepted", "running")), claimable)
                .order_by(Operation.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            ).first()
            operation_id = row[0] if row else self._orphan_of_dead_local_worker(uow)
            if operation_id is None:
                return None
            uow.session.execute(
                update(Operation)
                .where(Operation.id == operation_id)
                .values(
                    state="running",
                    claimed_by=self.id,
                    lease_until=now + timedelta(seconds=self.settings.worker_lease_seconds),
                    attempts=Operation.attempts + 1,
                )
            )
            uow.session.execute(
                update(Operation)
                .where(Operation.id == operation_id, Operation.started_at.is_(None))
                .values(started_at=now)
            )
        log.info("claimed operation %s", operation_id)
        return int(operation_id)

    def _orphan_of_dead_local_worker(self, uow: UnitOfWork) -> int | None:
        rows = uow.session.execute(
            select(Operation.id, Operation.claimed_by)
            .where(
                Operation.state == "running",
                Operation.claimed_by.like(f"{self.host}:%"),
            )
            .order_by(Operation.id)
            .with_for_update(skip_locked=True)
        ).all()
        for operation_id, claimed_by in rows:
            try:
                pid = int(str(claimed_by).split(":")[1])
            except (IndexError, ValueError):
                continue
            if pid != os.getpid() and not _process_alive(pid):
                return int(operation_id)
        return None

    def _count_alongside(self, operation_id: int) -> TotalsCount | None:
        """Start counting the operation's totals beside its chunks, if it lacks them."""
        count = TotalsCount(self.db, operation_id)
        if not count.start():
            return None
        return count

    def _record_totals(self, operation_id: int, count: TotalsCount) -> bool:
        """Store the counted totals; False when the database refused this time."""
        if count.totals is None:
            return True  # the count failed (logged): the progress shows totals at the end
        try:
            with transaction(self.db) as uow:
                deletion.record_totals(
                    uow, operation_id=operation_id, worker_id=self.id, totals=count.totals
                )
        except (OperationalError, DBAPIError) as error:
            log.warning("storing the totals of operation %s failed (%s)", operation_id, error)
            return False
        return True

    def run(self, operation_id: int) -> None:
        # The totals are counted over a snapshot beside the chunks (the count reads the
        # whole subtree once: as long as a fifth of the delete, measured).
        count = self._count_alongside(operation_id)
        with WalFolds(self.db) as folds:
            self._run_chunks(operation_id, count, folds)

    def _run_chunks(self, operation_id: int, count: TotalsCount | None, folds: WalFolds) -> None:
        settings = self.settings
        failures = 0
        steps_left: deletion.StepsLeft | None = None
        while not self._stop.is_set():
            if count is not None and count.finished and self._record_totals(operation_id, count):
                count = None  # stored (a refusal is tried again after the next chunk)
            try:
                with transaction(self.db) as uow:
                    step = deletion.run_delete_chunk(
                        uow,
                        operation_id=operation_id,
                        worker_id=self.id,
                        now=self.clock(),
                        lease_seconds=settings.worker_lease_seconds,
                        chunk_groups=settings.delete_chunk_groups,
                        chunk_objects=settings.delete_chunk_objects,
                        result_ttl_seconds=settings.operation_result_ttl_seconds,
                        step_objects=settings.delete_step_objects if self.db.is_sqlite else None,
                        steps_left=steps_left,
                    )
            except (OperationalError, DBAPIError) as error:
                # Lock timeouts, serialization failures, a dropped connection: the chunk
                # rolled back whole, so trying it again is safe.
                # A database refusal here is a race with other work (a deadlock victim, a
                # delete nested in this one still removing its part): an accepted delete
                # must still finish, so after a few quick retries the operation is handed
                # back for a while and tried again, never marked failed for it.
                failures += 1
                log.warning("chunk of operation %s failed (%s), retrying", operation_id, error)
                if failures >= MAX_CHUNK_RETRIES:
                    self._release(operation_id)
                    return
                time.sleep(0.2 * failures)
                continue
            except Exception as error:
                log.exception("operation %s failed", operation_id)
                self._fail(operation_id, repr(error))
                return
            failures = 0
            steps_left = step.steps_left
            if step.lost_lease:
                log.warning("operation %s was taken over by another worker", operation_id)
                return
            if step.blocked:
                # A delete inside this subtree, accepted earlier, is not done yet. Hand
                # this one back for a moment so that one can run (here or elsewhere).
                log.info("operation %s waits for a delete inside its subtree", operation_id)
                self._release(operation_id)
                return
            if step.finished:
                with self._finished_lock:
                    self._finished.add(operation_id)
                    if len(self._finished) > 10_000:
                        self._finished.clear()
                log.info("operation %s finished", operation_id)
                return
            folds.after_chunk()

    def _release(self, operation_id: int) -> None:
        pause = timedelta(seconds=self.settings.worker_poll_seconds)
        with transaction(self.db) as uow:
            deletion.release_operation(
                uow, operation_id=operation_id, worker_id=self.id, not_before=self.clock() + pause
            )

    def _fail(self, operation_id: int, error: str) -> None:
        with transaction(self.db) as uow:
            deletion.fail_operation(
                uow,
                operation_id=operation_id,
                error=error,
                now=self.clock(),
                ttl=self.settings.operation_result_ttl_seconds,
            )

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        with transaction(self.db) as uow:
            deletion.purge_expired_operations(uow, now=self.clock())


class WalFolds:
    """SQLite: folds the WAL back into the database between a delete's chunks, half of
    the time beside the next chunk.

    Left to the background checkpointer, which never finds the WAL complete between two
    chunks, the WAL grew over a whole delete (860 MB for a million devices). SQLite
    starts a WAL from its beginning again only when a writer begins while every frame
    has been copied back. So after one chunk a fold starts on a thread of its own and the
    next chunk runs beside it (a ``PASSIVE`` checkpoint blocks no writer; the GIL is
    released while it copies); after that chunk the worker waits for it and folds the
    rest itself, and the chunk after starts the WAL again. The WAL holds at most two
    chunks, and half of the folds' time (copies and syncs) overlaps the chunks'
    statements instead of adding to them (docs/benchmarks.md).

    On PostgreSQL there is nothing to fold.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._beside: threading.Thread | None = None

    def __enter__(self) -> WalFolds:
        return self

    def __exit__(self, *_: object) -> None:
        self.settle()

    def after_chunk(self) -> None:
        if not self.db.is_sqlite:
            return
        if self._beside is None:
            self._beside = threading.Thread(target=self._fold, name="groupd-wal-fold", daemon=True)
            self._beside.start()
            return
        self.settle()
        self._fold()

    def settle(self) -> None:
        """Wait for the fold running beside the chunks, if any."""
        if self._beside is not None:
            self._beside.join()
            self._beside = None

    def _fold(self) -> None:
        try:
            if not self.db.checkpoint():
                log.debug("WAL checkpoint after a chunk left frames a reader still uses")
        except Exception as error:  # the background checkpointer will do it later
            log.debug("WAL checkpoint after a chunk skipped: %s", error)


class TotalsCount:
    """The count of a delete's totals, on a thread of its own over a snapshot.

    ``start`` returns once the snapshot is taken (or the operation needs no count), so
    the chunks that follow are not in it: what it counts as left plus what the progress
    said was done adds up to the totals (``deletion.count_totals``).
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
                self._needed = deletion.needs_totals(uow, operation_id=self.operation_id)
                self._snapshot_taken.set()
                if self._needed:
                    self.totals = deletion.count_totals(uow, operation_id=self.operation_id)
        except (OperationalError, DBAPIError) as error:
            log.warning(
                "counting operation %s failed (%s); its progress shows totals when it ends",
                self.operation_id,
                error,
            )
        finally:
            self._snapshot_taken.set()
            self._done.set()
