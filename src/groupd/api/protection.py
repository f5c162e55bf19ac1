"""Maintenance gate and rate limiter, shared by every API surface.

Both run before authentication, inside the request's worker-thread hop, so a refused
request costs one cached flag read and one counter hit, never a password check.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import weakref
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from groupd.errors import RateLimited, Unavailable
from groupd.services import system
from groupd.settings import Settings
from groupd.store.db import UnitOfWork

if TYPE_CHECKING:
    from groupd.api.http import ApiRequest

log = logging.getLogger("groupd.api")

# Every header some surface reads a credential from: native and ESET ``Authorization``,
# AppViewX ``sessionId``/``token`` and the ``username`` of its login. Passwords are not
# part of the key, so guessing passwords for one user from one address shares one bucket.
CREDENTIAL_HEADERS = ("authorization", "sessionid", "token", "username")
_CREDENTIAL_NAMES = tuple(name.encode() for name in CREDENTIAL_HEADERS)
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")
STORAGE_RETRY_SECONDS = 5.0
# How often expired entries of the in-process counters are dropped. limits itself does it
# every 10 ms; each pass copies every client's list of hits, and an entry kept a little
# longer only takes memory (the window's check reads the entries' own times).
EXPIRY_INTERVAL_SECONDS = 0.1


class InProcessStorage(MemoryStorage):
    """limits' in-memory storage, its expired entries dropped by one long-lived thread.

    The library starts a new timer thread every 10 ms while hits arrive, and starting a
    thread waits until it runs: on a busy core that wait was the largest cost of a fast
    request, and in the event loop it would stall every request (decision 0073). The
    counting is the library's, unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        reference = weakref.ref(self)

        def expire() -> None:
            while True:
                time.sleep(EXPIRY_INTERVAL_SECONDS)
                storage = reference()
                if storage is None:  # the limiter is gone (tests make many)
                    return
                storage._MemoryStorage__expire_events()  # type: ignore[attr-defined]
                del storage

        threading.Thread(target=expire, name="groupd-rate-limit-expiry", daemon=True).start()

    def _MemoryStorage__schedule_expiry(self) -> None:
        """The library's per-hit scheduling: nothing to do, the thread above runs."""


class MaintenanceGate:
    """Reads the maintenance flag at most every ``maintenance_cache_seconds``.

    The flag lives in the database, so ``groupd maintenance on`` reaches every process
    within that many seconds (0.5 by default) plus one request.
    """

    def __init__(self, settings: Settings) -> None:
        self.ttl = settings.maintenance_cache_seconds
        self._state = system.MaintenanceState(False, "")
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def check(self, uow: UnitOfWork) -> None:
        now = time.monotonic()
        if now - self._read_at >= self.ttl:
            state = system.get_maintenance(uow)
            with self._lock:
                self._state, self._read_at = state, now
        if self._state.enabled:
            raise Unavailable(self._state.message or "the service is under maintenance")


class RateLimiter:
    """A moving-window limit per credential and source address.

    Counters live in Redis when ``redis_url`` is set, so every server process draws on the
    same bucket, and in this process's memory otherwise. If Redis stops answering, the
    limiter counts in memory until it answers again: a lost Redis must not turn every
    request into a 500.
    """

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.limit: RateLimitItem = parse(settings.rate_limit)
        self.prefix = settings.rate_limit_key_prefix
        self.shared: MovingWindowRateLimiter | None = None
        if settings.redis_url:
            if not settings.redis_url.startswith(REDIS_SCHEMES):
                raise ValueError("GROUPD_REDIS_URL must be a redis:// (or rediss://) URL")
            storage = storage_from_string(
                settings.redis_url, key_prefix=self.prefix, wrap_exceptions=True
            )
            assert isinstance(storage, Storage), "a redis:// URL gives a synchronous storage"
            self.shared = MovingWindowRateLimiter(storage)
        self.local = MovingWindowRateLimiter(InProcessStorage())
        self._shared_down_until = float("-inf")

    @property
    def counts_in_process(self) -> bool:
        """Whether a check costs no round trip (no limit, or counters in memory)."""
        return not self.enabled or self.shared is None

    def key(self, req: ApiRequest) -> str:
        # One pass over the raw headers (each ``headers.get`` is a pass of its own).
        found: dict[bytes, bytes] = {}
        for name, value in req.request.scope["headers"]:
            if name in _CREDENTIAL_NAMES:
                found.setdefault(name, value)
        credential = b"\x00".join(found.get(name, b"") for name in _CREDENTIAL_NAMES)
        digest = hashlib.sha256(credential).hexdigest()[:32]
        return f"{digest}:{req.client_ip}"

    def check(self, surface: str, req: ApiRequest) -> None:
        """Count one request; raise RateLimited (with ``retry_after``) over the limit.

        ``surface`` is accepted for the call sites' symmetry; the bucket is shared by every
        surface, so a client cannot multiply its allowance by switching APIs.
        """
        if not self.enabled:
            return
        key = self.key(req)
        limiter = self._limiter()
        try:
            allowed = limiter.hit(self.limit, self.prefix, key)
        except Exception as error:  # any storage failure: count locally instead
            self._shared_failed(error)
            limiter = self.local
            allowed = limiter.hit(self.limit, self.prefix, key)
        if allowed:
            return
        retry_after = self._retry_after(limiter, key)
        raise RateLimited(
            f"rate limit of {self.limit.amount} requests per "
            f"{self.limit.get_expiry()} s reached; retry in {retry_after} s",
            retry_after=retry_after,
        )

    def _limiter(self) -> MovingWindowRateLimiter:
        if self.shared is None or time.monotonic() < self._shared_down_until:
            return self.local
        return self.shared

    def _shared_failed(self, error: Exception) -> None:
        self._shared_down_until = time.monotonic() + STORAGE_RETRY_SECONDS
        log.warning(
            "rate-limit storage failed (%s); counting in memory for %.0f s",
            error,
            STORAGE_RETRY_SECONDS,
        )

    def _retry_after(self, limiter: MovingWindowRateLimiter, key: str) -> int:
        try:
            stats = limiter.get_window_stats(self.limit, self.prefix, key)
        except Exception:  # the hit was counted; a stats failure only loses precision
            return self.limit.get_expiry()
        return max(1, math.ceil(stats.reset_time - time.time()))
