"""Conditional requests (RFC 9110 §13) on every resource that sends an ETag.

Each row of ``RESOURCES`` is one ETag-bearing resource: how to make one, its URL, and
the conditional writes it takes. Every case of the acceptance list runs against every
row: ``*``, the current tag, a list holding it, its weak form (412), a foreign tag (412),
the tag of a version since changed (412), and If-None-Match on GET and HEAD (304 with the
ETag and no body when it names the current tag, 200 otherwise). A new ETag-bearing
resource gets a row; the walker below fails until it has one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.testclient import TestClient

from conftest import TenantFixture
from helpers import create

Make = Callable[[TestClient, TenantFixture], str]


@dataclass(frozen=True)
class Write:
    """A conditional change: method, path under the resource's URL, body, and whether it
    ends the resource (a delete) instead of making a new version."""

    method: str
    suffix: str
    body: Callable[[TenantFixture, int], dict[str, Any] | None]
    ends: bool = False


@dataclass(frozen=True)
class Resource:
    name: str
    make: Make  # creates one, answers its URL
    writes: tuple[Write, ...]


def _group(client: TestClient, tenant: TenantFixture) -> str:
    made = create(
        client,
        tenant.editor.headers,
        "/api/v1/groups",
        {"name": "Conditional", "parentId": tenant.root_id},
    )
    return f"/api/v1/groups/{made['id']}"


RESOURCES = [
    Resource(
        "group",
        _group,
        (
            Write("PATCH", "", lambda t, n: {"description": f"change {n}"}),
            Write("POST", "/move", lambda t, n: {"parentId": t.lost_and_found_id}),
            Write("DELETE", "", lambda t, n: None, ends=True),
        ),
    ),
]
WRITES = [(r, w) for r in RESOURCES for w in r.writes]


def _send(
    client: TestClient,
    tenant: TenantFixture,
    url: str,
    write: Write,
    n: int,
    condition: dict[str, str],
) -> Any:
    headers = {**tenant.editor.headers, **condition}
    body = write.body(tenant, n)
    return client.request(write.method, url + write.suffix, json=body, headers=headers)


def _etag(client: TestClient, tenant: TenantFixture, url: str) -> str:
    answer = client.get(url, headers=tenant.viewer.headers)
    assert answer.status_code == 200, answer.text
    return str(answer.headers["etag"])


# (If-Match as a function of the current tag, the previous tag) -> passes?
IF_MATCH_CASES = {
    "star": (lambda current, old: "*", True),
    "current": (lambda current, old: current, True),
    "list holding it": (lambda current, old: f'"nope", {current}, W/"9"', True),
    "weak form": (lambda current, old: f"W/{current}", False),
    "foreign tag": (lambda current, old: '"stale"', False),
    "version since changed": (lambda current, old: old, False),
    "list of others": (lambda current, old: f'{old}, W/{current}, "x"', False),
}


@pytest.mark.parametrize("case", list(IF_MATCH_CASES))
@pytest.mark.parametrize(
    ("resource", "write"), WRITES, ids=lambda v: getattr(v, "name", None) or f"{v.method}{v.suffix}"
)
def test_if_match(
    client: TestClient,
    acme: TenantFixture,
    resource: Resource,
    write: Write,
    case: str,
    check_invariants: None,
) -> None:
    url = resource.make(client, acme)
    old = _etag(client, acme, url)
    # one change first, so that an older version exists
    changed = _send(client, acme, url, resource.writes[0], 1, {})
    assert changed.status_code == 200, changed.text
    current = _etag(client, acme, url)
    assert current != old
    header, passes = IF_MATCH_CASES[case]
    answer = _send(client, acme, url, write, 2, {"If-Match": header(current, old)})
    if passes:
        assert answer.status_code == 200, answer.text
        after = client.get(url, headers=acme.viewer.headers)
        if write.ends:
            assert after.status_code == 404
        else:
            assert after.headers["etag"] not in (current, old)
    else:
        assert answer.status_code == 412, answer.text
        assert answer.json()["code"] == "precondition_failed"
        assert _etag(client, acme, url) == current  # nothing changed


@pytest.mark.parametrize(
    ("resource", "write"), WRITES, ids=lambda v: getattr(v, "name", None) or f"{v.method}{v.suffix}"
)
def test_if_none_match_on_writes(
    client: TestClient,
    acme: TenantFixture,
    resource: Resource,
    write: Write,
    check_invariants: None,
) -> None:
    url = resource.make(client, acme)
    current = _etag(client, acme, url)
    for header in ("*", current, f"W/{current}"):
        refused = _send(client, acme, url, write, 1, {"If-None-Match": header})
        assert refused.status_code == 412, (header, refused.text)
    assert _etag(client, acme, url) == current
    passed = _send(client, acme, url, write, 1, {"If-None-Match": '"other", W/"0"'})
    assert passed.status_code == 200, passed.text


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.name)
def test_if_none_match_on_reads(
    client: TestClient, acme: TenantFixture, resource: Resource, method: str, check_invariants: None
) -> None:
    url = resource.make(client, acme)
    current = _etag(client, acme, url)
    h = acme.viewer.headers
    for header in (current, f"W/{current}", f'"x", {current}', "*"):
        answer = client.request(method, url, headers={**h, "If-None-Match": header})
        assert answer.status_code == 304, (header, answer.text)
        assert answer.headers["etag"] == current
        assert answer.content == b""
    for header in ('"other"', 'W/"0"'):
        answer = client.request(method, url, headers={**h, "If-None-Match": header})
        assert answer.status_code == 200, (header, answer.text)
        assert answer.headers["etag"] == current
    # If-Match is evaluated first: false means 412, whatever If-None-Match says
    refused = client.request(
        method, url, headers={**h, "If-Match": '"other"', "If-None-Match": current}
    )
    assert refused.status_code == 412


@pytest.mark.parametrize("header", ["3", '"3', 'W/ "3"', '"a" "b"', ""])
def test_malformed_conditions_are_400(
    client: TestClient, acme: TenantFixture, header: str, check_invariants: None
) -> None:
    url = _group(client, acme)
    answer = client.patch(
        url, json={"description": "x"}, headers={**acme.editor.headers, "If-Match": header}
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["field"] == "If-Match"
    assert _etag(client, acme, url) == '"1"'


def test_every_resource_with_an_etag_has_a_row(client: TestClient, acme: TenantFixture) -> None:
    """Each GET route that answers an ETag is in RESOURCES: a new one cannot be missed."""
    documented = client.get("/openapi.json").json()["paths"]
    with_etag = {
        path
        for path, operations in documented.items()
        if "304" in operations.get("get", {}).get("responses", {})
    }
    covered = {resource.make(client, acme).rsplit("/", 1)[0] + "/{id}" for resource in RESOURCES}
    assert with_etag == covered
