"""Everything a request needs, built once per process."""

from __future__ import annotations

from dataclasses import dataclass

from groupd.api.protection import MaintenanceGate, RateLimiter
from groupd.clock import Clock, system_clock
from groupd.delivery.dispatcher import Dispatcher
from groupd.delivery.process import DeliveryProcess
from groupd.services.accounts import VerifiedPasswordCache, VerifiedTokenCache
from groupd.settings import Settings
from groupd.store.db import Database
from groupd.worker import Worker


@dataclass
class AppContext:
    settings: Settings
    db: Database
    worker: Worker
    clock: Clock
    password_cache: VerifiedPasswordCache
    token_cache: VerifiedTokenCache
    maintenance: MaintenanceGate
    rate_limiter: RateLimiter
    webhooks: Dispatcher
    # What the server starts to deliver: the dispatcher's own threads, or a process
    # that runs them (settings.webhook_delivery_process).
    delivery: Dispatcher | DeliveryProcess

    @classmethod
    def create(
        cls, settings: Settings, *, db: Database | None = None, clock: Clock = system_clock
    ) -> AppContext:
        database = db or Database.from_settings(settings)
        webhooks = Dispatcher(database, settings, clock=clock)
        delivery = (
            DeliveryProcess(database, settings, webhooks)
            if settings.webhook_delivery_process
            else webhooks
        )
        return cls(
            settings=settings,
            db=database,
            worker=Worker(database, settings, clock=clock),
            clock=clock,
            password_cache=VerifiedPasswordCache(settings.basic_auth_cache_seconds),
            token_cache=VerifiedTokenCache(settings.token_cache_seconds),
            maintenance=MaintenanceGate(settings),
            rate_limiter=RateLimiter(settings),
            webhooks=webhooks,
            delivery=delivery,
        )
