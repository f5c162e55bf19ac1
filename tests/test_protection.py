"""Rate limits, maintenance mode, body limits and login throttling, on every surface.

The two-process proofs (a limit shared through Redis, maintenance seen by another process
within a second) are in test_multiprocess.py; the time budget is in test_time_budget.py.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from starlette.testclient import TestClient

from conftest import PASSWORD, REDIS_URL, _service_missing
from groupd.api.app import all_endpoints, create_app
from groupd.api.context import AppContext
from groupd.api.protection import RateLimiter
from groupd.clock import ManualClock
from groupd.services import accounts as accounts_service
from groupd.services import system
from groupd.settings import Settings
from groupd.store.db import transaction
from invariants import assert_invariants
from surfaces import (
    PROFILES,
    Probe,
    World,
    build_world,
    generic_probe,
    route_id,
    samples_for,
    snapshot,
)

SURFACES = sorted({e.surface.name for e in all_endpoints()})
ENDPOINTS = all_endpoints()
# A read each surface serves to a viewer: the request the limiter tests repeat.
READS = {
    "native": ("GET", "/api/v1/groups/{id}"),
    "eset": ("GET", "/v1/devices/{deviceUuid}"),
    "oaa": ("GET", "/oaa-policy/group/v1/{groupid}"),
    "appviewx": ("POST", "/avxapi/usergroup-search"),
    "console": ("GET", "/console/groups/{id}"),
    "scim": ("GET", "/scim/v2/Groups/{id}"),
}
# The least role that may read on each surface (SCIM serves identity providers: editors
# and above), and another role whose credential has a bucket of its own.
READER_ROLES = {"scim": ("editor", "admin")}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with build_world(request.param, tmp_path_factory.mktemp("protection"), request) as built:
        yield built
        assert_invariants(built.db)


@pytest.fixture
def limited(world: World) -> Iterator[World]:
    """The world with a limiter of 5 requests a minute per credential and address."""
    unlimited = world.ctx.rate_limiter
    world.ctx.rate_limiter = RateLimiter(
        world.settings.model_copy(update={"rate_limit_enabled": True, "rate_limit": "5 per minute"})
    )
    try:
        yield world
    finally:
        world.ctx.rate_limiter = unlimited


def _read(world: World, surface: str, role: str | None = None) -> Probe:
    role = role or READER_ROLES.get(surface, ("viewer", "editor"))[0]
    method, path = READS[surface]
    (endpoint,) = [
        e
        for e in world.endpoints
        if e.surface.name == surface and (e.method, e.path) == (method, path)
    ]
    (probe, *_) = samples_for(world, endpoint, "acme", "acme") or []
    probe.headers.update(PROFILES[surface].credentials(world, "acme", role))
    return probe


def test_rate_limiting_is_on_by_default() -> None:
    defaults = Settings()
    assert defaults.rate_limit_enabled
    assert defaults.rate_limit == "100 per 2 seconds"
    limiter = RateLimiter(defaults)
    assert (limiter.limit.amount, limiter.limit.get_expiry()) == (100, 2)
    assert limiter.shared is None  # no GROUPD_REDIS_URL: counted in memory


@pytest.mark.parametrize("surface", SURFACES)
def test_over_the_limit_is_429_with_retry_after_in_the_surfaces_form(
    limited: World, surface: str
) -> None:
    probe = _read(limited, surface)
    for attempt in range(5):
        response = probe.send(limited.client)
        assert response.status_code == 200, (attempt, response.text)
    before = snapshot(limited.db)
    refused = probe.send(limited.client)
    assert refused.status_code == 429, refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert PROFILES[surface].error_form(refused), refused.text
    assert "rate limit" in PROFILES[surface].message(refused).lower()
    assert snapshot(limited.db) == before
    # Another credential from the same address has its own bucket...
    other_role = READER_ROLES.get(surface, ("viewer", "editor"))[1]
    assert _read(limited, surface, other_role).send(limited.client).status_code == 200
    # ...and so has the same credential from another address.
    elsewhere = TestClient(limited.app, client=("192.0.2.7", 40000))
    assert probe.send(elsewhere).status_code == 200


def test_one_credential_has_one_bucket_across_surfaces(limited: World) -> None:
    """Native and ESET both take the same Bearer access token: switching API does not
    buy more requests."""
    token = limited.mint("acme", "viewer", "access", fresh=True)
    native = _read(limited, "native")
    eset = _read(limited, "eset")
    native.headers["Authorization"] = eset.headers["Authorization"] = f"Bearer {token}"
    statuses = [p.send(limited.client).status_code for p in (native, eset) * 3]
    assert statuses == [200] * 5 + [429]


def test_the_limit_counts_refused_credentials_too(limited: World) -> None:
    """Guessing is limited before any password or token is checked."""
    bad = Probe(
        "GET",
        f"/api/v1/groups/{limited.ids['acme']['static']}",
        headers={"Authorization": "Bearer gdk_guess"},
    )
    assert [bad.send(limited.client).status_code for _ in range(6)] == [401] * 5 + [429]


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as error:
        _service_missing(f"Redis at {REDIS_URL}", error)
    prefix = f"groupd-test-{uuid.uuid4().hex}"
    yield prefix
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


def test_limiters_sharing_redis_share_the_count(world: World, redis_prefix: str) -> None:
    settings = world.settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "rate_limit": "4 per minute",
            "redis_url": REDIS_URL,
            "rate_limit_key_prefix": redis_prefix,
        }
    )
    first, second = RateLimiter(settings), RateLimiter(settings)
    assert first.shared is not None
    probe = _read(world, "native")
    statuses = []
    for limiter in (first, second) * 3:
        world.ctx.rate_limiter = limiter
        try:
            statuses.append(probe.send(world.client).status_code)
        finally:
            world.ctx.rate_limiter = RateLimiter(world.settings)
    assert statuses == [200] * 4 + [429] * 2


def test_a_lost_redis_falls_back_to_counting_in_memory(world: World) -> None:
    settings = world.settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "rate_limit": "3 per minute",
            "redis_url": "redis://127.0.0.1:1/15",
        }
    )  # nothing listens on port 1
    unlimited, world.ctx.rate_limiter = world.ctx.rate_limiter, RateLimiter(settings)
    try:
        probe = _read(world, "native")
        assert [probe.send(world.client).status_code for _ in range(4)] == [200] * 3 + [429]
    finally:
        world.ctx.rate_limiter = unlimited


# maintenance ----------------------------------------------------------------------------
def _maintenance(world: World, enabled: bool, message: str = "") -> None:
    with transaction(world.db) as uow:
        system.set_maintenance(uow, enabled=enabled, message=message, now=world.ctx.clock())


def test_maintenance_answers_503_on_every_api_route_in_its_own_form(world: World) -> None:
    message = f"upgrading the directory ({uuid.uuid4().hex[:6]})"
    requests = []
    for endpoint in world.endpoints:
        probe = generic_probe(world, endpoint, "acme")
        if endpoint.role is not None:
            probe.headers.update(
                PROFILES[endpoint.surface.name].credentials(world, "acme", "admin")
            )
        requests.append((endpoint, probe))
    _maintenance(world, True, message)
    try:
        before = snapshot(world.db)
        for endpoint, probe in requests:
            response = probe.send(world.client)
            profile = PROFILES[endpoint.surface.name]
            assert response.status_code == 503, f"{route_id(endpoint)}: {response.text}"
            assert profile.error_form(response), f"{route_id(endpoint)}: {response.text}"
            assert message in profile.message(response), route_id(endpoint)
            assert response.headers.get("Retry-After"), route_id(endpoint)
        for path in ("/healthz", "/readyz"):
            assert world.client.get(path).status_code == 200
        assert snapshot(world.db) == before
    finally:
        _maintenance(world, False)
    assert _read(world, "native").send(world.client).status_code == 200


# bodies and XML -------------------------------------------------------------------------
def test_the_default_body_limit_is_10_mb(world: World) -> None:
    limit = 10 * 1024 * 1024
    assert Settings().max_body_bytes == limit == world.settings.max_body_bytes
    headers = {
        **PROFILES["native"].credentials(world, "acme", "editor"),
        "Content-Type": "application/json",
    }
    before = snapshot(world.db)
    too_big = world.client.post("/api/v1/groups", content=b" " * (limit + 1), headers=headers)
    assert too_big.status_code == 413, too_big.text
    assert f"larger than {limit} bytes" in too_big.json()["detail"]
    at_limit = world.client.post("/api/v1/groups", content=b" " * limit, headers=headers)
    assert at_limit.status_code == 400 and "body is required" in at_limit.json()["detail"]
    assert snapshot(world.db) == before


def test_xml_is_parsed_by_defusedxml_only() -> None:
    """No module reads XML with the standard library's (or any other) expanding parser."""
    source = Path(__file__).parent.parent / "src" / "groupd"
    unsafe = re.compile(
        r"(ET|ElementTree|etree|minidom|pulldom|sax|expat|lxml)\s*\.\s*"
        r"(fromstring|parse|XML|XMLParser|iterparse|parseString|make_parser|"
        r"ParserCreate)\b"
    )
    found = []
    for path in source.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if unsafe.search(code) and "SafeET" not in code:
                found.append(f"{path.relative_to(source)}:{number}: {line.strip()}")
            if re.search(r"^\s*(import|from)\s+(lxml|xml\.sax|xml\.dom)", code):
                found.append(f"{path.relative_to(source)}:{number}: {line.strip()}")
    assert not found, found


# login throttling -----------------------------------------------------------------------
def _basic(username: str, password: str) -> dict[str, str]:
    return {
        "Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    }


def _login_attempts(
    username: str, password: str, *, surfaces: set[str], probe_path: str, oaa_path: str
) -> list[tuple[str, Probe]]:
    """One login per path that checks a password, as each surface spells it. Basic goes
    to routes that write (see test_a_failed_basic_login_on_a_read_route_...)."""
    attempts = [
        (
            "native Basic",
            Probe(
                "PATCH",
                probe_path,
                headers=_basic(username, password),
                json={"description": "throttled"},
            ),
        ),
        (
            "native password grant",
            Probe(
                "POST",
                "/api/v1/auth/token",
                json={"grantType": "password", "username": username, "password": password},
            ),
        ),
    ]
    if "eset" in surfaces:
        attempts.append(
            (
                "ESET /oauth/token",
                Probe(
                    "POST",
                    "/oauth/token",
                    content=(
                        f"grant_type=password&username={username}&password={password}"
                    ).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                ),
            )
        )
    if "oaa" in surfaces:
        attempts.append(
            (
                "OAA Basic",
                Probe(
                    "PUT",
                    oaa_path,
                    headers={**_basic(username, password), "Accept": "application/json"},
                    json={"addvalues": ["10.0.0.3"]},
                ),
            )
        )
    if "appviewx" in surfaces:
        attempts.append(
            (
                "AppViewX /avxapi/login",
                Probe(
                    "POST",
                    "/avxapi/login",
                    query={"gwsource": "external"},
                    json={},
                    headers={"username": username, "password": password},
                ),
            )
        )
        attempts.append(
            (
                "AppViewX service token",
                Probe(
                    "POST",
                    "/avxapi/acctmgmt-get-service-token",
                    query={"gwsource": "external"},
                    content=b"grant_type=client_credentials",
                    headers={
                        **_basic(username, password),
                        "Content-Type": "application/x-www-form-urlencoded",
                    },
                ),
            )
        )
    return attempts


def test_login_throttling_is_shared_by_every_login_path(world: World) -> None:
    surfaces = {e.surface.name for e in world.endpoints}
    username = world.add_account("acme", "editor")
    clock = ManualClock()
    probe_path = f"/api/v1/groups/{world.ids['acme']['static']}"
    oaa_path = f"/oaa-policy/group/v1/{world.oaa_ids.get('acme')}"
    wrong = _login_attempts(
        username, "not the password", surfaces=surfaces, probe_path=probe_path, oaa_path=oaa_path
    )
    right = _login_attempts(
        username, PASSWORD, surfaces=surfaces, probe_path=probe_path, oaa_path=oaa_path
    )
    tuned = world.settings.model_copy(
        update={
            "login_max_failures": len(wrong),
            "login_lockout_seconds": 300,
            "basic_auth_cache_seconds": 0.0,
        }
    )
    context = AppContext.create(tuned, db=world.db, clock=clock)
    client = TestClient(create_app(context=context, start_worker=False))
    # One failure on each path: together they reach the limit, so the account locks.
    for path, probe in wrong:
        response = probe.send(client)
        assert response.status_code in (400, 401), (path, response.text)
        assert "too many" not in response.text or probe is wrong[-1][1], (path, response.text)
    for path, probe in right:
        response = probe.send(client)
        assert response.status_code in (400, 401), (path, response.text)
        assert "too many failed logins" in response.text, (path, response.text)
    clock.advance(301)
    for path, probe in right:
        response = probe.send(client)
        assert 200 <= response.status_code < 300, (path, response.text)


def test_a_failed_basic_login_on_a_read_route_survives_a_concurrent_write(
    world: World, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrong Basic password on a GET counts the failure, which writes the account row
    from a transaction that began reading. Another process committing meanwhile (here,
    while the password is being checked) must not turn the 401 into a 500."""
    verify = accounts_service.verify_hash

    def verify_while_another_process_writes(password_hash: str, password: str) -> bool:
        with transaction(world.db) as uow:  # another connection commits a write
            system.set_maintenance(uow, enabled=False, message="", now=world.ctx.clock())
        return verify(password_hash, password)

    monkeypatch.setattr(accounts_service, "verify_hash", verify_while_another_process_writes)
    username = world.add_account("acme", "viewer")
    response = world.client.get(
        f"/api/v1/groups/{world.ids['acme']['static']}",
        headers=_basic(username, "not the password"),
    )
    assert response.status_code == 401, response.text
