"""Hostile XML against the OAA API: refused with a 4xx, nothing expanded or fetched, the
server's memory flat and the database unchanged."""

from __future__ import annotations

import base64
import resource
import tracemalloc
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as SafeET
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import SNAPSHOT_TABLES, Caller, TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants

BASE = "/oaa-policy/group/v1"
AGENT = "dede64d3-1d6a-42e9-89e1-714e88f8967c"
FIELDS = (
    b"<agentid>" + AGENT.encode() + b"</agentid><grouptype>Generic Strings</grouptype>"
    b"<groupname>Hostile</groupname>"
)


def billion_laughs(levels: int) -> bytes:
    """Entity ``lol<n>`` is ten ``lol<n-1>``: 3 * 10^levels characters once expanded."""
    entities = [b'<!ENTITY lol0 "lol">']
    for level in range(1, levels + 1):
        refs = b"".join(b"&lol%d;" % (level - 1) for _ in range(10))
        entities.append(b'<!ENTITY lol%d "%s">' % (level, refs))
    return (
        b'<?xml version="1.0"?>\n<!DOCTYPE group [\n' + b"\n".join(entities) + b"]>\n"
        b"<group>" + FIELDS + b"<values>&lol%d;</values></group>" % levels
    )


BILLION_LAUGHS = billion_laughs(9)  # 3 GB if a parser expanded it
# One 100 kB entity used 10,000 times: 1 GB, without any nesting.
QUADRATIC_BLOWUP = (
    b'<?xml version="1.0"?>\n<!DOCTYPE group [<!ENTITY a "' + b"x" * 100_000 + b'">]>\n'
    b"<group>" + FIELDS + b"<description>" + b"&a;" * 10_000 + b"</description></group>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE group [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b"<group>" + FIELDS + b"<values>&xxe;</values></group>"
)
EXTERNAL_ENTITY_HTTP = (
    b'<?xml version="1.0"?>\n'
    b'<!DOCTYPE group [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/secret">]>\n'
    b"<group>" + FIELDS + b"<values>&xxe;</values></group>"
)
PARAMETER_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE group [<!ENTITY % remote SYSTEM '
    b'"http://127.0.0.1:9/evil.dtd"> %remote;]>\n<group>' + FIELDS + b"</group>"
)
EXTERNAL_DTD = (
    b'<?xml version="1.0"?>\n<!DOCTYPE group SYSTEM "http://127.0.0.1:9/group.dtd">\n'
    b"<group>" + FIELDS + b"</group>"
)
INTERNAL_DTD_ONLY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE group [<!ELEMENT group ANY>]>\n'
    b"<group>" + FIELDS + b"</group>"
)
UNDECLARED_ENTITY = b"<group>" + FIELDS + b"<values>&lol;</values></group>"
XINCLUDE = (
    b'<group xmlns:xi="http://www.w3.org/2001/XInclude">'
    + FIELDS
    + b'<xi:include href="file:///etc/passwd" parse="text"/></group>'
)
HOSTILE = {
    "billion laughs": BILLION_LAUGHS,
    "quadratic blowup": QUADRATIC_BLOWUP,
    "external entity (file)": EXTERNAL_ENTITY,
    "external entity (http)": EXTERNAL_ENTITY_HTTP,
    "parameter entity": PARAMETER_ENTITY,
    "external DTD": EXTERNAL_DTD,
    "internal DTD": INTERNAL_DTD_ONLY,
    "undeclared entity": UNDECLARED_ENTITY,
    "XInclude": XINCLUDE,
}
MiB = 1024 * 1024


def token_basic(caller: Caller) -> dict[str, str]:
    raw = base64.b64encode(f"{caller.username}:{caller.token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def table_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {
            t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in SNAPSHOT_TABLES
        }


def policy_rows(db: Database) -> list[tuple[Any, ...]]:
    with db.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT id, name, description, agent_id, version, state FROM groups "
                    "WHERE kind = 'policy' ORDER BY id"
                )
            )
        ]


def measured(send: Any) -> tuple[Any, int, int]:
    """The response, the peak of Python-traced memory during the request (the XML parser
    allocates through Python's allocator, so an expansion would show here), and how much
    the process's peak resident size grew."""
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        response = send()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    return response, peak, rss_growth


def test_the_payloads_are_what_they_claim() -> None:
    # A small instance of the same construction, through a parser that does expand
    # internal entities (the standard library's), shows what the big one would become.
    small = ET.fromstring(billion_laughs(3))
    assert small.findtext("values") == "lol" * 1000
    assert len(BILLION_LAUGHS) < 2_000
    assert len(QUADRATIC_BLOWUP) < 200_000  # small on the wire, 1 GB expanded


def test_hostile_xml_is_refused_unexpanded_with_flat_memory(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    headers = {
        **token_basic(acme.editor),
        "Content-Type": "application/xml",
        "Accept": "application/xml",
    }
    target = client.post(
        BASE,
        headers={**headers, "Content-Type": "application/json"},
        json={
            "agentid": AGENT,
            "grouptype": "Generic Strings",
            "groupname": "Target",
            "values": ["keep"],
        },
    )
    assert target.status_code == 201, target.text
    groupid = SafeET.fromstring(target.content, forbid_dtd=True).findtext("groupid")
    # Warm up the request path so one-time allocations do not count as the payload's.
    client.post(BASE, headers=headers, content=b"<group/>")
    # The measure sees what the server parses: 4 MB of harmless values show up in it.
    big = b"<group>" + b"<removevalues>%s</removevalues>" % (b"y" * 1000) * 4000 + b"</group>"
    control, control_peak, _ = measured(
        lambda: client.put(f"{BASE}/{groupid}", headers=headers, content=big)
    )
    assert control.status_code == 200, control.text
    assert control_peak > len(big), control_peak
    counts, rows = table_counts(db), policy_rows(db)
    for name, payload in HOSTILE.items():
        for method, path in (("POST", BASE), ("PUT", f"{BASE}/{groupid}")):
            response, peak, rss_growth = measured(
                lambda m=method, p=path, b=payload: client.request(m, p, headers=headers, content=b)
            )
            assert 400 <= response.status_code < 500, (name, method, response.text)
            assert response.status_code == 405, (name, method)
            answer = SafeET.fromstring(response.content, forbid_dtd=True)
            assert answer.tag == "GroupResponse"
            assert answer.findtext("status") == "405"
            message = answer.findtext("message") or ""
            assert message.startswith("Invalid input: "), message
            assert b"lollol" not in response.content, name
            assert b"xxxxxxxxxx" not in response.content, name
            assert b"root:" not in response.content, name
            # A refusal costs about what the body itself costs: far below any expansion.
            assert peak < MiB + 4 * len(payload), (name, method, peak)
            assert rss_growth < 32 * MiB, (name, method, rss_growth)
    assert table_counts(db) == counts
    assert policy_rows(db) == rows
    read = client.get(f"{BASE}/{groupid}", headers={**headers, "Accept": "application/json"})
    assert read.json()["group"]["values"] == ["keep"]
    assert read.json()["group"]["groupname"] == "Target"
    assert_invariants(db)


def test_dtd_refusal_is_named(client: TestClient, acme: TenantFixture, db: Database) -> None:
    headers = {**token_basic(acme.editor), "Content-Type": "application/xml"}
    response = client.post(BASE, headers=headers, content=EXTERNAL_DTD)
    assert response.status_code == 405
    assert "DTD" in response.json()["message"]
    undeclared = client.post(BASE, headers=headers, content=UNDECLARED_ENTITY)
    assert "not well-formed XML" in undeclared.json()["message"]
    xinclude = client.post(BASE, headers=headers, content=XINCLUDE)
    assert "include" in xinclude.json()["message"]  # an unknown field, never followed
    truncated = client.post(BASE, headers=headers, content=b"<group><groupname>x")
    assert truncated.status_code == 405
    assert "not well-formed XML" in truncated.json()["message"]
    assert_invariants(db)
