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
from collections import deque
from typing import TYPE_CHECKING

from limits import RateLimitItem, parse
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from groupd.errors import RateLimited, Unavailable
from groupd.services import system
from groupd.settings import Settings
from groupd.store.db import UnitOfWork

if TYPE_CHECKING:
    from groupd.api.http import ApiRequest

log = logging.getLogger("groupd.api")

# Every header some surface reads a credential from: native and ESET ``Authorization``,
# AppViewX ``sessionId``/``token`` and the ``username`` of its login, the console's
# session ``cookie``. Passwords are not part of the key, so guessing passwords for one
# user from one address shares one bucket.
CREDENTIAL_HEADERS = ("authorization", "sessionid", "token", "username", "cookie")
_CREDENTIAL_NAMES = tuple(name.encode() for name in CREDENTIAL_HEADERS)
_CREDENTIAL_SET = frozenset(_CREDENTIAL_NAMES)
REDIS_SCHEMES = ("redis://", "rediss://", "redis+unix://", "redis+sentinel://", "redis+cluster://")
STORAGE_RETRY_SECONDS = 5.0


class InProcessWindow:
    """A moving window of ``amount`` hits per ``seconds`` per key, in this process's memory:
    the times of each key's last ``amount`` hits; a hit is allowed when fewer than
    ``amount`` of them fall in the last ``seconds``. The same rule as limits' moving window,
    without its per-hit key string, lock per key and growing lists: the counter is checked
    on every request, in the event loop for the hot reads (decision 0075). Keys idle for
    a whole window are dropped at most once per window, by the hit that finds it due.
    """

    def __init__(self, amount: int, seconds: float) -> None:
        self.amount = amount
        self.seconds = seconds
        self._hits: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._sweep_at = time.monotonic() + seconds

    def hit(self, key: str) -> bool:
        if self.amount <= 0:
            return False
        now = time.monotonic()
        with self._lock:
            if now >= self._sweep_at:
                self._sweep(now)
            hits = self._hits.get(key)
            if hits is None:
                hits = self._hits[key] = deque(maxlen=self.amount)
            elif len(hits) == self.amount and hits[0] >= now - self.seconds:
                return False
            hits.append(now)  # the oldest falls out: only the last ``amount`` matter
            return True

    def retry_after(self, key: str) -> int:
        """Whole seconds until ``key`` may hit again (at least 1)."""
        with self._lock:
            hits = self._hits.get(key)
            if not hits or len(hits) < self.amount:
                return 1 if self.amount > 0 else math.ceil(self.seconds)
            return max(1, math.ceil(hits[0] + self.seconds - time.monotonic()))

    def _sweep(self, now: float) -> None:
        idle = [key for key, hits in self._hits.items() if hits[-1] <= now - self.seconds]
        for key in idle:
            del self._hits[key]
        self._sweep_at = now + self.seconds


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
        self.local = InProcessWindow(self.limit.amount, self.limit.get_expiry())
        self._shared_down_until = float("-inf")

    @property
    def counts_in_process(self) -> bool:
        """Whether a check costs no round trip (no limit, or counters in memory)."""
        return not self.enabled or self.shared is None

    def key(self, req: ApiRequest) -> str:
        # One pass over the raw headers (each ``headers.get`` is a pass of its own).
        found: dict[bytes, bytes] = {}
        for name, value in req.scope["headers"]:
            if name in _CREDENTIAL_SET:
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
        shared = self._shared()
        if shared is None:
            if self.local.hit(key):
                return
            retry_after = self.local.retry_after(key)
        else:
            try:
                if shared.hit(self.limit, self.prefix, key):
                    return
                retry_after = self._retry_after(shared, key)
            except Exception as error:  # any storage failure: count locally instead
                self._shared_failed(error)
                if self.local.hit(key):
                    return
                retry_after = self.local.retry_after(key)
        raise RateLimited(
            f"rate limit of {self.limit.amount} requests per "
            f"{self.limit.get_expiry()} s reached; retry in {retry_after} s",
            retry_after=retry_after,
        )

    def _shared(self) -> MovingWindowRateLimiter | None:
        """The shared counters, unless there are none or they failed a moment ago."""
        if self.shared is None or time.monotonic() < self._shared_down_until:
            return None
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
