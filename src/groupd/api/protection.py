"""Maintenance gate and rate limiter, shared by every API surface."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import TYPE_CHECKING

from limits import parse
from limits.storage import MemoryStorage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from groupd.errors import RateLimited, Unavailable
from groupd.services import system
from groupd.settings import Settings
from groupd.store.db import UnitOfWork

if TYPE_CHECKING:
    from groupd.api.http import ApiRequest

CREDENTIAL_HEADERS = ("authorization", "sessionid", "token", "username")


class MaintenanceGate:
    """Reads the maintenance flag at most every ``maintenance_cache_seconds``."""

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
    """Per credential and source address, counted in Redis when one is configured."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limit_enabled
        self.limit = parse(settings.rate_limit)
        if settings.redis_url:
            storage = storage_from_string(settings.redis_url.replace("redis://", "redis://", 1))
        else:
            storage = MemoryStorage()
        self.storage = storage
        self.limiter = MovingWindowRateLimiter(storage)

    def key(self, surface: str, req: ApiRequest) -> str:
        credential = "|".join(req.headers.get(name, "") for name in CREDENTIAL_HEADERS)
        digest = hashlib.sha256(credential.encode()).hexdigest()[:24]
        return f"{surface}:{digest}:{req.client_ip}"

    def check(self, surface: str, req: ApiRequest) -> None:
        if not self.enabled:
            return
        key = self.key(surface, req)
        if not self.limiter.hit(self.limit, "groupd", key):
            stats = self.limiter.get_window_stats(self.limit, "groupd", key)
            retry_after = max(1, int(stats.reset_time - time.time()) + 1)
            raise RateLimited(
                f"rate limit of {self.limit} reached; retry in {retry_after} s",
                retry_after=retry_after,
            )
