"""Names and typed values: parsed, normalised, refused with a reason (hypothesis)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from groupd.errors import InvalidInput
from groupd.values import clean_name, parse_ip, parse_ip_range, parse_values

ipv4 = st.ip_addresses(v=4)
ipv6 = st.ip_addresses(v=6)
any_ip = st.one_of(ipv4, ipv6)


@given(any_ip)
def test_ip_round_trips_to_canonical_form(address: ipaddress.IPv4Address) -> None:
    text = parse_ip(address.exploded)
    assert ipaddress.ip_address(text) == address
    assert parse_ip(text) == text  # canonical is a fixed point


@given(
    st.one_of(
        ipv4.flatmap(lambda a: st.tuples(st.just(a), ipv4)),
        ipv6.flatmap(lambda a: st.tuples(st.just(a), ipv6)),
    )
)
def test_dash_ranges_are_ordered(pair: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]) -> None:
    first, last = pair
    raw = f"{first} - {last}"
    if first <= last:
        assert parse_ip_range(raw) == f"{first}-{last}"
    else:
        with pytest.raises(InvalidInput, match="ends before it starts"):
            parse_ip_range(raw)


@given(
    st.one_of(
        st.ip_addresses(v=4).map(lambda a: ipaddress.ip_network(a)),
        st.builds(
            lambda a, p: ipaddress.ip_network(f"{a}/{p}", strict=False), ipv4, st.integers(0, 32)
        ),
    )
)
def test_cidr_networks_round_trip(network: ipaddress.IPv4Network) -> None:
    assert parse_ip_range(str(network)) == str(network)


@given(ipv4, st.integers(0, 31))
def test_cidr_with_host_bits_is_refused(address: ipaddress.IPv4Address, prefix: int) -> None:
    network = ipaddress.ip_network(f"{address}/{prefix}", strict=False)
    if network.network_address == address:
        return
    with pytest.raises(InvalidInput, match="not a CIDR network"):
        parse_ip_range(f"{address}/{prefix}")


@pytest.mark.parametrize(
    "bad",
    [
        "10.0.0.256",
        "1.2.3",
        "::g",
        "fe80::1%eth0",
        "",
        " ",
        "10.0.0.1/33",
        "10.0.0.1-::1",
        "a-b",
        "10.0.0.0/8/8",
    ],
)
def test_bad_ips_and_ranges_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_values("ip_range" if "/" in bad or "-" in bad else "ip", [bad])


@given(st.text(min_size=1, max_size=80))
def test_names_are_clean_or_refused_with_reason(raw: str) -> None:
    try:
        name = clean_name(raw)
    except InvalidInput as error:
        assert error.detail
        return
    assert name == name.strip() and 0 < len(name) <= 255
    assert clean_name(name) == name


@pytest.mark.parametrize(
    "bad", ["a\u202eb", "zero\u200bwidth", "tab\tname", "x" * 256, " padded", "nul\x00"]
)
def test_hostile_names_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        clean_name(bad)


def test_values_are_deduplicated_in_order() -> None:
    assert parse_values("ip", ["10.0.0.1", "::1", "10.0.0.1", "0:0::1"]) == ["10.0.0.1", "::1"]
    assert parse_values("action", ["ALLOW", "BLOCK"]) == ["ALLOW", "BLOCK"]
    with pytest.raises(InvalidInput):
        parse_values("action", ["not an action"])
    with pytest.raises(InvalidInput):
        parse_values("user_id", ["has space"])
