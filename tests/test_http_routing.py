"""Routing answers every client can rely on: a 405 names every method of its path, an
unknown path under a dialect's prefix answers in that dialect's form, and made-up
methods or paths mint no new metric series."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Mount, Route, compile_path
from starlette.testclient import TestClient

PROBES = ("PUT", "PATCH", "DELETE", "POST", "GET", "ZZA")
SAMPLE = "0190a5b0-0000-7000-8000-000000000001"


def _concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", SAMPLE, path)


def _paths(client: TestClient) -> list[str]:
    routes = client.app.routes  # type: ignore[attr-defined]
    return sorted({_concrete(r.path) for r in routes if isinstance(r, Route)})


def _expected(client: TestClient, path: str) -> set[str]:
    """Every method of every declared route whose path pattern matches ``path``."""
    methods: set[str] = set()
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Route) and route.methods:
            regex, _, _ = compile_path(route.path)
            if regex.match(path):
                methods |= route.methods
        elif isinstance(route, Mount) and path.startswith(route.path + "/"):
            methods |= {"GET", "HEAD"}
    return methods


def test_every_405_lists_every_method_of_its_path(client: TestClient) -> None:
    paths = _paths(client)
    assert len(paths) > 40
    for path in paths:
        expected = _expected(client, path)
        for probe in [p for p in PROBES if p not in expected][:2]:
            answer = client.request(probe, path)
            assert answer.status_code == 405, (probe, path, answer.text)
            allow = {m.strip() for m in answer.headers["allow"].split(",")}
            assert allow == expected, (probe, path)
            assert answer.headers["request-id"]


def test_options_names_get_and_post_of_a_collection(client: TestClient) -> None:
    for path in ("/api/v1/accounts", "/api/v1/groups", "/api/v1/licenses"):
        answer = client.options(path)
        assert answer.status_code == 405
        assert {"GET", "HEAD", "POST"} <= set(answer.headers["allow"].split(", "))


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/nothing/here", 404),
        ("POST", "/v1/devices/abc:explode", 404),
        ("GET", "/v1/devices/abc:move", 405),
        ("GET", "/oauth/authorize", 404),
        ("PUT", "/v1/groups", 405),
        ("GET", "/oauth/token", 405),
    ],
)
def test_unknown_eset_paths_answer_in_esets_form(
    client: TestClient, method: str, path: str, status: int
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == status
    body = answer.json()
    assert set(body) == {"code", "message", "details"}
    assert body["code"] == status and body["details"] == []
    assert answer.headers["content-type"] == "application/json"
    if status == 405:
        assert answer.headers["allow"]


def test_native_unknown_paths_stay_problem_json(client: TestClient) -> None:
    answer = client.get("/api/v1/nothing")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "not_found"


def _series(client: TestClient) -> set[str]:
    text = client.get("/metrics").text
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("groupd_")}


def test_made_up_methods_and_paths_add_no_metric_series(client: TestClient) -> None:
    # one of each kind first, so that their series exist
    client.request("ZZA", "/api/v1/groups")
    client.get("/no/such/path/0")
    client.request("ZZB", "/unknown/0")
    client.get("/metrics")
    before = _series(client)
    for n in range(20):
        client.request(f"ZZ{n}Q", "/api/v1/groups")
        client.request("GET", f"/no/such/path/{n}")
        client.request(f"M{n}", f"/unknown/{n}")
    after = _series(client)
    assert after - before == set(), sorted(after - before)[:5]
    assert any('method="other"' in s and 'route="/api/v1/groups"' in s for s in after)
    assert any('route="unmatched"' in s for s in after)
