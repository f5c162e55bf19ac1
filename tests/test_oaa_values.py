"""Every OAA group type round-trips valid values and refuses invalid ones (hypothesis).

Expected normal forms come from the standard library (``ipaddress``, ``unicodedata``),
not from groupd's own parsers. One app serves all the examples of a test function.
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import defusedxml.ElementTree as SafeET
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from conftest import Caller, TenantFixture
from groupd.store.db import Database
from invariants import assert_invariants

BASE = "/oaa-policy/group/v1"
AGENT = "0b7c3c2e-4f1d-4d0e-9a39-6a1d6f1f2a11"
EXAMPLES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Text a value may hold: no control, format, surrogate, private-use or unassigned
# characters (these are refused, and most cannot travel in XML at all).
VISIBLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn"))
NO_SPACE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"))

# A case: (raw values sent, normal forms expected back).
Valid = tuple[list[str], list[str]]


def token_basic(caller: Caller) -> dict[str, str]:
    raw = base64.b64encode(f"{caller.username}:{caller.token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def nfc(value: str) -> str:
    return unicodedata.normalize("NFC", value)


# valid values: (raw, expected normal form) ----------------------------------------------
def _user_ids() -> st.SearchStrategy[tuple[str, str]]:
    text = st.text(NO_SPACE, min_size=1, max_size=40).filter(
        lambda s: not any(c.isspace() for c in s)
    )
    return text.map(lambda s: (s, nfc(s)))


def _strings() -> st.SearchStrategy[tuple[str, str]]:
    return st.text(VISIBLE, min_size=1, max_size=60).map(lambda s: (s, nfc(s)))


def _actions() -> st.SearchStrategy[tuple[str, str]]:
    return st.from_regex(r"[A-Za-z][A-Za-z0-9_.:\-]{0,40}", fullmatch=True).map(lambda s: (s, s))


def _written(address: ipaddress.IPv4Address | ipaddress.IPv6Address, exploded: bool) -> str:
    return address.exploded.upper() if exploded and address.version == 6 else str(address)


def _ips() -> st.SearchStrategy[tuple[str, str]]:
    return st.tuples(st.ip_addresses(), st.booleans()).map(
        lambda pair: (_written(pair[0], pair[1]), str(pair[0]))
    )


def _ranges() -> st.SearchStrategy[tuple[str, str]]:
    @st.composite
    def first_last(draw: Any) -> tuple[str, str]:
        version = draw(st.sampled_from([4, 6]))
        a, b = sorted([draw(st.ip_addresses(v=version)), draw(st.ip_addresses(v=version))])
        spaced = draw(st.booleans())
        exploded = draw(st.booleans())
        joiner = " - " if spaced else "-"
        return (f"{_written(a, exploded)}{joiner}{_written(b, exploded)}", f"{a}-{b}")

    @st.composite
    def cidr(draw: Any) -> tuple[str, str]:
        version = draw(st.sampled_from([4, 6]))
        address = draw(st.ip_addresses(v=version))
        prefix = draw(st.integers(0, 32 if version == 4 else 128))
        network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
        written = network.exploded if draw(st.booleans()) else str(network)
        return (written, str(network))

    return st.one_of(first_last(), cidr())


# invalid values -------------------------------------------------------------------------
def _not_an_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        return True
    return "%" in value


def _not_a_range(value: str) -> bool:
    text = value.strip()
    if "-" in text:
        first, _, last = text.partition("-")
        try:
            a, b = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
        except ValueError:
            return True
        return "%" in text or a.version != b.version or a > b  # type: ignore[operator]
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return True
    return "/" not in text


CONTROL = st.characters(categories=("Cc",))
SPACE = st.sampled_from([" ", "\u00a0", "\u2003", "\u3000"])


def _with(inner: st.SearchStrategy[str], extra: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A value from ``inner`` with a character from ``extra`` spliced in."""
    return st.tuples(inner, extra, st.integers(0, 1000)).map(
        lambda t: t[0][: t[2] % (len(t[0]) + 1)] + t[1] + t[0][t[2] % (len(t[0]) + 1) :]
    )


BAD_USER_IDS = st.one_of(
    st.just(""),
    _with(st.text(NO_SPACE, max_size=20), SPACE),
    _with(st.text(NO_SPACE, max_size=20), CONTROL),
    st.text(NO_SPACE, min_size=256, max_size=300).filter(lambda s: len(nfc(s)) > 255),
)
BAD_STRINGS = st.one_of(
    st.just(""),
    _with(st.text(VISIBLE, max_size=20), CONTROL),
    st.text(VISIBLE, min_size=1025, max_size=1100).filter(lambda s: len(nfc(s)) > 1024),
)
BAD_ACTIONS = st.one_of(
    st.just(""),
    st.from_regex(r"[0-9_.:\-][A-Za-z0-9_.:\-]{0,20}", fullmatch=True),
    _with(
        st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,10}", fullmatch=True),
        st.sampled_from([" ", "/", "*", "é", "\t", ","]),
    ),
    st.from_regex(r"[A-Za-z][A-Za-z0-9]{128,140}", fullmatch=True),
)
BAD_IPS = st.one_of(
    st.text(max_size=20).filter(_not_an_ip),
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda t: ".".join(map(str, t))).filter(_not_an_ip),
    st.ip_addresses(v=4).map(lambda a: f"{a}/32"),  # a network is not an address
    st.ip_addresses(v=6).map(lambda a: f"{a}%eth0"),
    st.integers(0, 2**32 - 1).map(str),  # the integer form of an address is not accepted
)


@st.composite
def _reversed_range(draw: Any) -> str:
    version = draw(st.sampled_from([4, 6]))
    a, b = draw(st.ip_addresses(v=version)), draw(st.ip_addresses(v=version))
    if a == b:
        b = a + 1 if int(a) < (2**32 if version == 4 else 2**128) - 1 else a - 1
    low, high = sorted([a, b])
    return f"{high}-{low}"


@st.composite
def _host_bits(draw: Any) -> str:
    address = draw(st.ip_addresses(v=4))
    prefix = draw(st.integers(0, 31))
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    if network.network_address == address:
        address = address + 1 if address < network.broadcast_address else address - 1
    return f"{address}/{prefix}"


BAD_RANGES = st.one_of(
    _reversed_range(),
    _host_bits(),
    st.tuples(st.ip_addresses(v=4), st.ip_addresses(v=6)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.ip_addresses().map(str),  # one address is not a range
    st.ip_addresses(v=4).map(lambda a: f"{a}/{33}"),
    st.text(max_size=20).filter(_not_a_range),
)

GROUP_TYPES: dict[
    str, tuple[Callable[[], st.SearchStrategy[tuple[str, str]]], st.SearchStrategy[str]]
] = {
    "User ID": (_user_ids, BAD_USER_IDS),
    "Generic Strings": (_strings, BAD_STRINGS),
    "Actions": (_actions, BAD_ACTIONS),
    "IPs": (_ips, BAD_IPS),
    "IP Ranges": (_ranges, BAD_RANGES),
}


def valid_lists(grouptype: str) -> st.SearchStrategy[Valid]:
    pairs = st.lists(GROUP_TYPES[grouptype][0](), min_size=1, max_size=6)
    return pairs.map(
        lambda items: (
            [raw for raw, _ in items],
            list(dict.fromkeys(expected for _, expected in items)),
        )
    )


def post_xml(client: TestClient, headers: dict[str, str], fields: dict[str, Any]) -> Any:
    root = ET.Element("group")
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            ET.SubElement(root, name).text = item
    return client.post(
        BASE,
        content=ET.tostring(root, encoding="utf-8"),
        headers={**headers, "Content-Type": "application/xml", "Accept": "application/xml"},
    )


def answered_values(response: Any, as_xml: bool) -> list[str]:
    if as_xml:
        group = SafeET.fromstring(response.content, forbid_dtd=True).find("group")
        return [item.text or "" for item in group.findall("values")]
    return response.json()["group"]["values"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("grouptype", list(GROUP_TYPES))
def test_valid_values_round_trip_and_invalid_ones_are_refused(
    client: TestClient, acme: TenantFixture, db: Database, grouptype: str
) -> None:
    headers = token_basic(acme.editor)
    names = (f"{grouptype} {n}" for n in itertools.count())
    stored: dict[str, list[str]] = {}

    @EXAMPLES
    @given(
        valid=valid_lists(grouptype),
        bad=GROUP_TYPES[grouptype][1],
        position=st.integers(0, 6),
        as_xml=st.booleans(),
    )
    def check(valid: Valid, bad: str, position: int, as_xml: bool) -> None:
        raw, expected = valid
        name = next(names)
        fields = {"agentid": AGENT, "grouptype": grouptype, "groupname": name, "values": raw}
        created = (
            post_xml(client, headers, fields)
            if as_xml
            else client.post(BASE, json=fields, headers=headers)
        )
        assert created.status_code == 201, created.text
        assert answered_values(created, as_xml) == expected
        groupid = (
            SafeET.fromstring(created.content, forbid_dtd=True).findtext("groupid")
            if as_xml
            else created.json()["groupid"]
        )
        stored[name] = expected
        # Read back in the other format.
        read = client.get(
            f"{BASE}/{groupid}",
            headers={**headers, "Accept": "application/json" if as_xml else "application/xml"},
        )
        assert read.status_code == 200
        assert answered_values(read, not as_xml) == expected

        # One bad value among good ones: refused, named, nothing stored.
        index = position % (len(raw) + 1)
        mixed = [*raw[:index], bad, *raw[index:]]
        refused = client.post(
            BASE, headers=headers, json={**fields, "groupname": f"{name}!", "values": mixed}
        )
        assert refused.status_code == 405, (bad, refused.text)
        message = refused.json()["message"]
        # A NUL is refused for the body as a whole, before any value is looked at.
        where = "the body contains a NUL" if "\x00" in bad else f"values[{index}]"
        assert message.startswith(f"Invalid input: {where}"), message
        if len(bad) <= 64 and "\x00" not in bad:
            assert repr(bad) in message, message
        added = client.put(
            f"{BASE}/{groupid}", headers=headers, json={"addvalues": [bad], "removevalues": raw}
        )
        assert added.status_code == 405, (bad, added.text)
        where = "the body contains a NUL" if "\x00" in bad else "addvalues[0]"
        assert added.json()["message"].startswith(f"Invalid input: {where}")

    check()
    # Nothing that was refused got in; everything accepted is there, as normalised.
    listed = client.get(
        BASE, params={"agentid": AGENT, "grouptype": grouptype}, headers=headers
    ).json()["groups"]
    assert {g["groupname"]: g["values"] for g in listed} == stored
    assert_invariants(db)
