"""Phase 2 of deletes: the loop that claims operations and runs them chunk by chunk, and
its retry policy.

Any number of workers (threads in the server, ``groupd worker`` processes) share the
operations table; the rules of claiming, leasing and finishing are
``groupd.services.operations``', the chunks ``groupd.services.deletion``'s.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from datetime import timedelta

from sqlalchemy.exc import DBAPIError, OperationalError

from groupd.clock import Clock, system_clock
from groupd.errors import Unavailable
from groupd.services import deletion, operations, recycle_bin
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.store.deletion import step_objects_for

log = logging.getLogger("groupd.worker")
MAX_CHUNK_RETRIES = 5
# A busy database (the SQLite writer queue's wait ran out), a lock or statement timeout,
# a lost connection, a serialization failure, a deadlock, or any other refusal of the
# database to a chunk that races other work. Anything else is a bug: the operation fails.
TRANSIENT = (Unavailable, OperationalError, DBAPIError)


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
        with transaction(self.db) as uow:
            recycle_bin.start_due_purges(uow, now=self.clock())  # their time in the bin is up
            operation_id = operations.claim(
                uow,
                worker_id=self.id,
                host=self.host,
                now=self.clock(),
                lease_seconds=self.settings.worker_lease_seconds,
            )
        if operation_id is not None:
            log.info("claimed operation %s", operation_id)
        return operation_id

    def run(self, operation_id: int) -> None:
        count = deletion.count_alongside(self.db, operation_id)
        with self.db.wal_folds() as folds:
            failures = 0
            steps_left: deletion.StepsLeft | None = None
            while not self._stop.is_set():
                if count is not None and count.finished and self._record_totals(count):
                    count = None  # stored (a refusal is tried again after the next chunk)
                try:
                    step = self._chunk(operation_id, steps_left)
                except TRANSIENT as error:
                    # The chunk rolled back whole, so trying it again is safe. An accepted
                    # delete must still finish: after a few quick retries the operation is
                    # handed back for a while, never failed for it (decision 0013).
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
                    log.info("operation %s finished", operation_id)
                    return
                folds.after_chunk()

    def _chunk(
        self, operation_id: int, steps_left: deletion.StepsLeft | None
    ) -> deletion.ChunkResult:
        settings = self.settings
        with transaction(self.db) as uow:
            return deletion.run_delete_chunk(
                uow,
                operation_id=operation_id,
                worker_id=self.id,
                now=self.clock(),
                lease_seconds=settings.worker_lease_seconds,
                chunk_groups=settings.delete_chunk_groups,
                chunk_objects=settings.delete_chunk_objects,
                result_ttl_seconds=settings.operation_result_ttl_seconds,
                step_objects=step_objects_for(uow, settings.delete_step_objects),
                steps_left=steps_left,
            )

    def _record_totals(self, count: deletion.TotalsCount) -> bool:
        """Store the counted totals; False when the database refused this time."""
        if count.totals is None:
            return True  # the count failed (logged): the progress shows totals at the end
        try:
            with transaction(self.db) as uow:
                deletion.record_totals(
                    uow, operation_id=count.operation_id, worker_id=self.id, totals=count.totals
                )
        except TRANSIENT as error:
            log.warning("storing the totals of operation %s failed (%s)", count.operation_id, error)
            return False
        return True

    def _release(self, operation_id: int) -> None:
        pause = timedelta(seconds=self.settings.worker_poll_seconds)
        with transaction(self.db) as uow:
            operations.release(
                uow, operation_id=operation_id, worker_id=self.id, not_before=self.clock() + pause
            )

    def _fail(self, operation_id: int, error: str) -> None:
        ttl = self.settings.operation_result_ttl_seconds
        with transaction(self.db) as uow:
            operations.fail(uow, operation_id=operation_id, error=error, now=self.clock(), ttl=ttl)

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge < 60:
            return
        self._last_purge = time.monotonic()
        with transaction(self.db) as uow:
            operations.purge_expired(uow, now=self.clock())
