"""All configuration, read once from the environment (prefix ``GROUPD_``).

Every field is documented in docs/configuration.md; keep the two in step.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.util import find_spec

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The database and Redis drivers are extras: an installation on SQLite needs neither.
POSTGRESQL_SCHEMES = ("postgresql:", "postgresql+psycopg:", "postgres:")


def require_extra(module: str, *, extra: str, setting: str) -> None:
    """Refuse a setting whose driver is not installed, saying what to install."""
    if find_spec(module) is None:
        raise ValueError(
            f"{setting} needs the '{module}' package, which is not installed; "
            f"install groupd with the {extra} extra: pip install 'groupd[{extra}]'"
        )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GROUPD_", extra="ignore")

    # storage
    database_url: str = "sqlite:///groupd.db"
    database_pool_size: int = Field(default=10, ge=1)
    # SQLite only: the most page cache, in MiB, each connection keeps (it grows as used;
    # 2 is SQLite's own default).
    sqlite_cache_mib: int = Field(default=2, ge=1, le=65_536)
    # SQLite only: the page size, in bytes, of a database groupd creates (an existing
    # file keeps its own). 4096 is SQLite's own default; 8192 made a big delete a little
    # faster and small writes as much slower (measured in c8139be; see git history of
    # docs/benchmarks.md), so the default stays.
    sqlite_page_size: int = Field(default=4096, ge=512, le=65_536)
    # SQLite only: how long a writer waits for its turn among this process's writers
    # before the database is busy (a request then answers 503; a delete's chunk is
    # retried, decision 0013).
    sqlite_writer_wait_seconds: float = Field(default=30.0, gt=0)
    redis_url: str | None = None

    # serving
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"

    # credentials
    access_token_ttl_seconds: int = Field(default=3600, ge=1)
    refresh_token_ttl_seconds: int = Field(default=30 * 86400, ge=1)
    api_token_default_ttl_seconds: int = Field(default=365 * 86400, ge=1)
    session_idle_timeout_seconds: int = Field(default=15 * 60, ge=1)
    basic_auth_cache_seconds: float = Field(default=60.0, ge=0)
    # A verified bearer token is trusted this long without reading its row again: a
    # revocation, an expiry or a disabled account takes effect within it (decision 0071).
    token_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    login_max_failures: int = Field(default=10, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)

    # the console (/console/): a signed-in person's session ends after this long without
    # a request, and in any case this long after signing in
    console_idle_timeout_seconds: int = Field(default=15 * 60, ge=1)
    console_absolute_timeout_seconds: int = Field(default=8 * 3600, ge=1)
    # Addresses of reverse proxies whose X-Forwarded-Proto is believed (comma-separated,
    # "*" for any): a request they forward as https gets a Secure session cookie.
    trusted_proxy_ips: str = ""

    # deletes and operations
    delete_wait_seconds: float = Field(default=10.0, ge=0)
    delete_max_wait_seconds: float = Field(default=120.0, ge=0)
    delete_chunk_groups: int = Field(default=400, ge=1)
    delete_chunk_objects: int = Field(default=40_000, ge=1)
    # SQLite only (one writer at a time): a chunk removes objects this many at a time and
    # commits early, after any step, when another writer waits for the lock.
    delete_step_objects: int = Field(default=2_000, ge=1)
    operation_result_ttl_seconds: int = Field(default=7 * 86400, ge=1)
    # How long a deleted subtree waits in the recycle bin before its rows are purged;
    # 0 purges at once, as before the bin (docs/decisions/0030).
    retention_seconds: int = Field(default=7 * 86400, ge=0)
    worker_enabled: bool = True
    worker_threads: int = Field(default=1, ge=1)
    worker_lease_seconds: float = Field(default=15.0, gt=0)
    worker_poll_seconds: float = Field(default=1.0, gt=0)

    # ESET's response-id protocol
    eset_wait_seconds: float = Field(default=30.0, ge=0)
    eset_poll_timeout_seconds: float = Field(default=120.0, gt=0)
    eset_uncollected_ttl_seconds: float = Field(default=600.0, gt=0)

    # protection
    rate_limit: str = "100 per 2 seconds"
    rate_limit_enabled: bool = True
    # Namespace of the counters in Redis (several installations, or test runs, may share one).
    rate_limit_key_prefix: str = Field(default="groupd", min_length=1, max_length=64)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2)
    request_time_budget_seconds: float = Field(default=60.0, gt=0)
    # SQLite: a short indexed read runs in the event loop for at most this long, then
    # again on a worker thread under the rest of the budget; 0 keeps every read on a
    # worker thread (decision 0070).
    inline_read_budget_seconds: float = Field(default=0.005, ge=0, le=1)
    maintenance_cache_seconds: float = Field(default=0.5, ge=0)

    # webhooks (docs/webhooks.md)
    webhook_delivery_enabled: bool = True
    # Deliver from a child process that each server starts once there is a subscription
    # (``groupd webhooks deliver``), so the API keeps its core; off: from the server's own
    # threads (decision 0076).
    webhook_delivery_process: bool = True
    webhook_delivery_threads: int = Field(default=4, ge=1, le=64)
    webhook_poll_seconds: float = Field(default=0.5, gt=0)
    # Deliveries one claim sends in order over one connection. Every claim costs a few
    # units of work (a look, a lease, a read, the record), so larger batches cost less
    # CPU per delivery: 500 took a quarter off against 100 (docs/benchmarks.md).
    webhook_batch: int = Field(default=500, ge=1, le=10_000)
    webhook_lease_seconds: float = Field(default=60.0, gt=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_response_max_bytes: int = Field(default=4096, ge=0)
    # Seconds between a failed attempt and the next; the last repeats until give-up.
    webhook_retry_schedule: str = "1,5,30,120,600,3600"
    webhook_give_up_seconds: float = Field(default=86_400.0, gt=0)
    # CIDRs a target may be in although not public (and then over plain http too).
    webhook_allowed_networks: str = ""
    # Fernet keys, comma-separated, newest first: subscription secrets are sealed with
    # the first and opened with any (docs/security.md). Empty: kept as they are.
    webhook_secret_keys: str = ""
    webhook_delivery_retention_seconds: int = Field(default=7 * 86400, ge=60)

    @field_validator("database_url")
    @classmethod
    def _postgresql_needs_its_driver(cls, value: str) -> str:
        if value.startswith(POSTGRESQL_SCHEMES):
            require_extra("psycopg", extra="postgresql", setting="a PostgreSQL database URL")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_needs_its_client(cls, value: str | None) -> str | None:
        if value:
            require_extra("redis", extra="redis", setting="GROUPD_REDIS_URL")
        return value

    @field_validator("sqlite_page_size")
    @classmethod
    def _page_size_is_a_power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two from 512 to 65536")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_is_seconds(cls, value: str) -> str:
        try:
            steps = [float(step) for step in value.split(",")]
        except ValueError:
            raise ValueError("must be seconds separated by commas, like 1,5,30") from None
        if not steps or min(steps) <= 0:
            raise ValueError("every step must be more than 0 seconds")
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: str) -> str:
        import ipaddress

        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"'{item}' is not a CIDR network") from None
        return value

    @field_validator("webhook_secret_keys")
    @classmethod
    def _keys_are_fernet_keys(cls, value: str) -> str:
        from cryptography.fernet import Fernet

        for index, key in enumerate(filter(None, (part.strip() for part in value.split(",")))):
            try:
                Fernet(key)
            except ValueError:
                raise ValueError(
                    f"key {index + 1} is not a Fernet key (32 bytes, base64)"
                ) from None
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
