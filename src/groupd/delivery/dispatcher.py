"""The delivery threads: relay the outbox, claim a due subscription, send, record.

Any number of processes run them against one database: the relay takes turns through
one lock, subscriptions are claimed with ``SKIP LOCKED`` and a lease, so each
subscription's deliveries go out one at a time and in order, while every other
subscription is served by another thread (decision 0061). Nothing here runs on a
request's path: the API only writes outbox rows. The bookkeeping is written in the
queue (``Database.queue``, decision 0078); the main database only hears which events
were relayed and which subscriptions gave up.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time

from groupd.clock import Clock, system_clock
from groupd.delivery.sender import Resolver, Sender, resolve
from groupd.services.webhooks import addresses, deliveries, relay
from groupd.settings import Settings
from groupd.store.db import Database, transaction

log = logging.getLogger("groupd.webhooks")
PURGE_INTERVAL_SECONDS = 600.0
RELAY_BATCH = 500


class Dispatcher:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        clock: Clock = system_clock,
        resolver: Resolver = resolve,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.policy = deliveries.RetryPolicy.parse(
            settings.webhook_retry_schedule, settings.webhook_give_up_seconds
        )
        self.sender = Sender(
            networks=addresses.parse_networks(settings.webhook_allowed_networks),
            timeout_seconds=settings.webhook_timeout_seconds,
            response_max_bytes=settings.webhook_response_max_bytes,
            resolver=resolver,
        )
        self._stop = threading.Event()
        # Wake-ups owed to the delivery threads: one per subscription a relay gave
        # deliveries to, so one busy subscription wakes one thread, not every thread
        # (each woken thread reads and tries a lease: a unit of work or two of CPU).
        self._due = threading.Condition()
        self._due_wakeups = 0
        self._threads: list[threading.Thread] = []
        self._last_purge = 0.0

    # lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        relay = threading.Thread(target=self._relay_loop, name="groupd-relay", daemon=True)
        relay.start()
        self._threads.append(relay)
        for index in range(self.settings.webhook_delivery_threads):
            thread = threading.Thread(
                target=self._loop, name=f"groupd-webhooks-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._due:
            self._due.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()
        self._stop.clear()

    def close(self) -> None:
        self.sender.close()

    def _relay_loop(self) -> None:
        """One thread relays: on SQLite each relay is a write beside the API's, so they
        are few and hold as many events as have gathered (decision 0076)."""
        while not self._stop.is_set():
            try:
                relayed = self.relay_once()
                self._purge_now_and_then()
            except Exception:  # a bug or a lost database: log it, keep relaying
                log.exception("webhook relay iteration failed")
                relayed = 0
            if relayed < RELAY_BATCH:
                self._stop.wait(self.settings.webhook_poll_seconds)

    def _loop(self) -> None:
        saturated = False
        while not self._stop.is_set():
            try:
                # Straight to the lease after a full batch: something is likely due still.
                tried = self.deliver_once(look_first=not saturated)
                saturated = tried >= self.settings.webhook_batch
            except Exception:  # a bug or a lost database: log it, keep delivering
                log.exception("webhook delivery iteration failed")
                saturated = False
            # Straight on only after a full batch: events that trickle in are gathered
            # for a poll interval and sent together, so a busy API pays a few delivery
            # transactions a second, not three per change (decision 0061).
            if not saturated:
                self._wait_until_due()

    def _owe_wakeups(self, subscriptions: int) -> None:
        with self._due:
            threads = self.settings.webhook_delivery_threads
            self._due_wakeups = min(self._due_wakeups + subscriptions, threads)
            self._due.notify(subscriptions)

    def _wait_until_due(self) -> None:
        """Until a relay owes this thread a wake-up, or a poll interval passed (retries
        fall due, other processes relay)."""
        with self._due:
            # A thread woken for a wake-up another took first waits on.
            self._due.wait_for(
                lambda: self._due_wakeups > 0 or self._stop.is_set(),
                timeout=self.settings.webhook_poll_seconds,
            )
            if self._due_wakeups:
                self._due_wakeups -= 1

    # work ----------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Relay what waits, then send one subscription's due deliveries. False when
        there was nothing to do."""
        relayed = self.relay_once()
        sent = self.deliver_once()
        return relayed > 0 or sent > 0

    def run_until_idle(self, *, max_rounds: int = 10_000) -> int:
        """Relay and send until nothing is due now (tests, the CLI); rounds that did work."""
        rounds = 0
        while rounds < max_rounds and self.run_once():
            rounds += 1
        return rounds

    def relay_once(self) -> int:
        """Relay one batch of events, and wake a delivery thread for each subscription
        given some (they need not wait for their poll); how many events."""
        # A read first: a write unit only when there is work.
        with self.db.unit_of_work(write=False) as uow:
            if not relay.has_unrelayed(uow):
                return 0
        with transaction(self.db.queue) as queue:
            relayed = relay.give_out(queue, now=self.clock(), limit=RELAY_BATCH)
        if not relayed:
            return 0
        with transaction(self.db) as uow:
            relay.mark_relayed(uow, relayed)
        if relayed.subscriptions:
            self._owe_wakeups(relayed.subscriptions)
        return len(relayed)

    def deliver_once(self, *, look_first: bool = True) -> int:
        """Send one due subscription's next deliveries; how many were tried.
        ``look_first``: read whether anything is due before the write that leases it."""
        now = self.clock()
        queue = self.db.queue
        if look_first:
            with queue.unit_of_work(write=False) as uow:
                if not deliveries.has_due(uow, now=now):
                    return 0
        settings = self.settings
        with transaction(queue) as uow:
            lease = deliveries.lease_next(
                uow, worker_id=self.id, now=now, lease_seconds=settings.webhook_lease_seconds
            )
        if lease is None:
            return 0
        with queue.unit_of_work(write=False) as uow:
            claim = deliveries.claim(
                uow,
                lease=lease,
                batch=settings.webhook_batch,
                secret_keys=settings.webhook_secret_keys,
            )
        if claim is None:
            with transaction(queue) as uow:
                deliveries.forget(uow, lease.subscription_id)
            return 0
        # Half the lease: the results are recorded before anyone may take over. Nothing
        # to send (another process sent it all meanwhile): recording no outcome gives the
        # lease back and keeps the subscription due only if something is pending.
        outcomes = (
            self.sender.send(claim, budget_seconds=settings.webhook_lease_seconds / 2)
            if claim.messages
            else []
        )
        with transaction(queue) as uow:
            give_up = deliveries.record_outcomes(
                uow,
                claim=claim,
                outcomes=outcomes,
                worker_id=self.id,
                now=self.clock(),
                policy=self.policy,
            )
        if give_up is not None:
            with transaction(self.db) as uow:
                deliveries.disable(uow, give_up, now=self.clock())
        return len(outcomes)

    def _purge_now_and_then(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_INTERVAL_SECONDS:
            return
        self._last_purge = time.monotonic()
        retention_seconds = self.settings.webhook_delivery_retention_seconds
        with transaction(self.db.queue) as queue:
            relay.purge_delivered(queue, now=self.clock(), retention_seconds=retention_seconds)
        with transaction(self.db) as uow:
            relay.purge_events(uow, now=self.clock(), retention_seconds=retention_seconds)
