"""Tenancy: tenant A's credentials on tenant B's ids → that API's not-found, never data.

For every route of every API (the app's own endpoint table), acme's admin names globex's
objects of every kind (group, user group, policy group, device, user, licence, activation,
operation): in the path, in the body, or mixed with its own. Each answer must be the
surface's not-found (lists filtered by another tenant's id may instead be empty), no
answer may carry any of globex's ids, names or usernames, and globex's rows must be
exactly as they were.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from groupd.api.app import all_endpoints
from groupd.api.http import Endpoint
from invariants import assert_invariants
from surfaces import (
    KINDS,
    REVOKING,
    World,
    build_world,
    generic_probe,
    names_shared_only,
    path_params,
    profile_of,
    route_id,
    samples_for,
    snapshot,
)

ENDPOINTS = [e for e in all_endpoints() if e.role is not None]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with build_world(request.param, tmp_path_factory.mktemp("tenancy"), request) as built:
        yield built
        assert_invariants(built.db)


def test_both_tenants_hold_an_object_of_every_kind(world: World) -> None:
    for tenant in ("acme", "globex"):
        assert set(KINDS) <= set(world.ids[tenant]), world.ids[tenant]
        for kind in ("static", "device", "licence", "operation"):
            assert (
                world.client.get(
                    _native_path(kind, world.ids[tenant][kind]), headers=world.native(tenant)
                ).status_code
                == 200
            )


def _native_path(kind: str, ident: str) -> str:
    collection = {
        "static": "groups",
        "device": "objects",
        "licence": "licenses",
        "operation": "operations",
    }[kind]
    return f"/api/v1/{collection}/{ident}"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[route_id(e) for e in ENDPOINTS])
def test_other_tenants_ids_are_not_found(world: World, endpoint: Endpoint) -> None:
    profile = profile_of(endpoint)
    credentials = profile.credentials(world, "acme", "admin")
    probes = samples_for(world, endpoint, "acme", "globex")
    if probes is None:
        probes = [generic_probe(world, endpoint, "globex")]
    theirs = world.markers("globex")
    globex_before = snapshot(world.db, tenant_id=world.tenants["globex"].id)
    named = 0
    for probe in probes:
        probe.headers.update(credentials)
        response = probe.send(world.client)
        echo = probe.echo()
        names_theirs = any(marker in echo for marker in theirs)
        what = f"{route_id(endpoint)} {probe.method} {probe.path} {probe.query}"
        if names_theirs and not probe.filter_only:
            named += 1
            assert profile.not_found(response), (
                f"{what}: {response.status_code} {response.text[:400]}"
            )
        else:
            assert response.status_code < 500, f"{what}: {response.text[:400]}"
            assert response.status_code not in (401, 403), f"{what}: {response.text[:400]}"
        leaked = sorted(m for m in theirs if m in response.text and m not in echo)
        assert not leaked, f"{what} showed globex's {leaked}: {response.text[:400]}"
    if route_id(endpoint) in REVOKING:
        world.forget_credentials()
    if path_params(endpoint) and not names_shared_only(endpoint):
        assert named, f"{route_id(endpoint)}: no probe named globex's objects"
    assert snapshot(world.db, tenant_id=world.tenants["globex"].id) == globex_before
