"""Where a webhook may point: ``https`` to public addresses only, unless the operator's
allow-list (``GROUPD_WEBHOOK_ALLOWED_NETWORKS``) names the network, and then plain
``http`` too. Checked when a subscription is written and again, after name resolution,
before every delivery (decision 0062)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from groupd.errors import InvalidInput

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_URL = 2000
# Names that always mean this machine or its private network, whatever a resolver says.
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain")


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str  # a name, or an address without brackets
    port: int
    literal: Address | None  # the host, when it is an address


def parse_networks(value: str) -> tuple[Network, ...]:
    """The allow-list setting: CIDRs separated by commas."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False)
        for part in value.split(",")
        if part.strip()
    )


def allowed(address: Address, networks: tuple[Network, ...]) -> bool:
    """Whether groupd may connect to ``address``: in the allow-list, or public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in networks):
        return True
    # ``is_global`` is false for loopback, private, link-local (the cloud metadata
    # services' 169.254.169.254 and fd00:ec2::254 among them), shared and reserved ranges.
    return address.is_global and not address.is_multicast


def check_url(url: str, networks: tuple[Network, ...]) -> Target:
    """The target of ``url``, or InvalidInput saying why groupd will not send there."""
    if len(url) > MAX_URL:
        raise InvalidInput(f"url is longer than {MAX_URL} characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise InvalidInput(f"url is not a valid URL: {error}", field="url") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in ("https", "http") or not host:
        raise InvalidInput("url must be an https URL with a host", field="url")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("url must not carry credentials", field="url")
    if any(ord(char) < 0x21 or char in "\\" for char in url):
        raise InvalidInput("url contains spaces or control characters", field="url")
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    target = Target(scheme, host, port or (443 if scheme == "https" else 80), literal)
    if literal is not None:
        check_address(target, literal, networks)
    elif host.lower() == "localhost" or host.lower().endswith(_LOCAL_SUFFIXES):
        raise InvalidInput(
            f"url: '{host}' names a local address; webhooks go to public addresses",
            field="url",
            code="webhook_address_refused",
        )
    elif scheme == "http" and not networks:
        raise InvalidInput("url must use https", field="url", code="webhook_address_refused")
    return target


def check_address(target: Target, address: Address, networks: tuple[Network, ...]) -> None:
    """Refuse ``address`` (the target's, resolved) unless allowed; plain http only for
    an address the allow-list names."""
    if not allowed(address, networks):
        raise InvalidInput(
            f"url: {address} is a loopback, private, link-local or otherwise non-public "
            "address; webhooks go to public addresses (GROUPD_WEBHOOK_ALLOWED_NETWORKS "
            "lists exceptions)",
            field="url",
            code="webhook_address_refused",
        )
    if target.scheme == "http" and not any(address in network for network in networks):
        raise InvalidInput(
            "url must use https (plain http only to a network "
            "GROUPD_WEBHOOK_ALLOWED_NETWORKS lists)",
            field="url",
            code="webhook_address_refused",
        )
