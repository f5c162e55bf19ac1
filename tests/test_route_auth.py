"""Every route × (no, bad, expired credentials, viewer, editor, admin) → the right status.

Issue 2's acceptance ("every route but health, metrics, docs and token issuing refuses a
request without credentials") and issue 7's auth suite. The routes come from the app's
own endpoint table, so a route added later is walked without touching this file; its
surface needs a row in ``surfaces.PROFILES``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.routing import Mount, Route

from groupd.api.app import all_endpoints
from groupd.api.http import Endpoint, route_path
from invariants import assert_invariants
from surfaces import (
    CREDENTIAL_KINDS,
    OPEN_ROUTES,
    REVOKING,
    ROLE_RANK,
    World,
    build_world,
    generic_probe,
    profile_of,
    route_id,
    samples_for,
    snapshot,
)

ENDPOINTS = all_endpoints()
# Routes that hand out credentials, so they cannot ask for them.
TOKEN_ISSUING = {
    "native:POST /api/v1/auth/token",
    "eset:POST /oauth/token",
    "appviewx:POST /avxapi/login",
    "appviewx:POST /avxapi/acctmgmt-get-service-token",
    # The console's sign-in: its form, and the post that opens a session.
    "console:GET /console/sign-in",
    "console:POST /console/sign-in",
}
CASES = [(e, kind) for e in ENDPOINTS if e.role is not None for kind in CREDENTIAL_KINDS]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with build_world(request.param, tmp_path_factory.mktemp("auth"), request) as built:
        yield built
        assert_invariants(built.db)


def test_the_suite_walks_the_apps_own_endpoints(world: World) -> None:
    assert [route_id(e) for e in world.endpoints] == [route_id(e) for e in ENDPOINTS]


def test_every_route_but_health_docs_and_token_issuing_refuses_without_credentials(
    world: World,
) -> None:
    by_route = {(e.method, route_path(e.path)): e for e in world.endpoints}
    walked = refused = 0
    for route in world.app.routes:
        if isinstance(route, Mount):
            assert route.path in ("/docs/static", "/console/static"), (
                f"unexpected mount {route.path}"
            )
            continue
        assert isinstance(route, Route)
        if route.path in OPEN_ROUTES:
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            endpoint = by_route[(method, route.path)]
            walked += 1
            if endpoint.role is None:
                assert route_id(endpoint) in TOKEN_ISSUING, (
                    f"{route_id(endpoint)} needs no credentials but does not issue tokens"
                )
                continue
            profile = profile_of(endpoint)
            response = generic_probe(world, endpoint, "acme").send(world.client)
            assert response.status_code == profile.refused["none"], (
                f"{route_id(endpoint)} answered {response.status_code} without credentials: "
                f"{response.text[:300]}"
            )
            assert profile.error_form(response), response.text
            refused += 1
    assert walked == len(world.endpoints)
    assert refused == walked - len([e for e in world.endpoints if e.role is None])


@pytest.mark.parametrize(
    ("endpoint", "kind"), CASES, ids=[f"{route_id(e)}-{kind}" for e, kind in CASES]
)
def test_route_credentials(world: World, endpoint: Endpoint, kind: str) -> None:
    assert endpoint.role is not None
    profile = profile_of(endpoint)
    credentials = profile.credentials(world, "acme", kind)
    if kind in profile.refused or ROLE_RANK[kind] < ROLE_RANK[endpoint.role]:
        expected = profile.refused.get(kind, 403)
        probe = generic_probe(world, endpoint, "acme")
        probe.headers.update(credentials)
        before = snapshot(world.db)
        response = probe.send(world.client)
        assert response.status_code == expected, (
            f"{kind} on {route_id(endpoint)}: {response.status_code} {response.text[:300]}"
        )
        assert profile.error_form(response), response.text
        assert snapshot(world.db) == before, "a refused request changed the database"
        return
    probes = samples_for(world, endpoint, "acme", "acme")
    if probes is None:
        # No sample request for this route yet: it must at least let the caller in.
        probe = generic_probe(world, endpoint, "acme")
        probe.headers.update(credentials)
        response = probe.send(world.client)
        assert response.status_code not in (401, 403) and response.status_code < 500, (
            f"{kind} on {route_id(endpoint)}: {response.status_code} {response.text[:300]}"
        )
        return
    probe = probes[0]
    probe.headers.update(credentials)
    response = probe.send(world.client)
    if route_id(endpoint) in REVOKING:
        world.forget_credentials()
    succeeded = 200 <= response.status_code < 300
    if not probe.follow:  # a console action: 303 to the page that follows it
        succeeded = response.status_code == 303
        world.settle()
    assert succeeded, (
        f"{kind} on {route_id(endpoint)}: {response.status_code} {response.text[:300]}"
    )
