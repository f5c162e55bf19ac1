"""Sending a claim's messages: the body, the Standard Webhooks signature, the address
checks after name resolution, and the limits on what a subscriber may cost us."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msgspec
from standardwebhooks.webhooks import Webhook

from groupd.delivery.wire import Connection, Connections, Origin, WireError
from groupd.errors import InvalidInput
from groupd.services.webhooks import addresses
from groupd.services.webhooks.deliveries import Claim, Message, Outcome

Resolver = Callable[[str, int], list[str]]
_encoder = msgspec.json.Encoder()


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def _timestamp(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def body_of(claim: Claim, message: Message) -> tuple[bytes, str]:
    """The request body and its media type, in the subscription's format."""
    if claim.format == "cloudevents":
        document: dict[str, Any] = {
            "specversion": "1.0",
            "id": str(message.event_uuid),
            "source": f"urn:groupd:tenant:{claim.tenant_uuid}",
            "type": message.event_type,
            "time": _timestamp(message.occurred_at),
            "datacontenttype": "application/json",
            "data": msgspec.Raw(message.data),
        }
        return _encoder.encode(document), "application/cloudevents+json"
    document = {
        "type": message.event_type,
        "timestamp": _timestamp(message.occurred_at),
        "data": msgspec.Raw(message.data),
    }
    return _encoder.encode(document), "application/json"


# Every way a request can fail on the wire; each is a failed attempt, retried later.
_WIRE_ERRORS = (WireError, OSError)
_USER_AGENT = b"groupd-webhooks/1"


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a claim's requests go: the checked address (and the name TLS verifies), and
    the request's first lines, the same for each of its messages."""

    origin: Origin
    head: bytes


class Sender:
    """Sends a claim's messages one after the other over a kept-alive connection; never
    follows a redirect.

    HTTP/1.1 by hand on a socket, answers parsed by httptools: a request costs a tenth
    of the CPU httpcore's did, in the process that serves the API (decision 0064)."""

    def __init__(
        self,
        *,
        networks: tuple[addresses.Network, ...],
        timeout_seconds: float,
        response_max_bytes: int,
        resolver: Resolver = resolve,
    ) -> None:
        self.networks = networks
        self.response_max_bytes = response_max_bytes
        self.resolver = resolver
        self.connections = Connections(
            timeout_seconds=timeout_seconds, ssl_context=httpx.create_ssl_context()
        )

    def close(self) -> None:
        self.connections.close()

    def send(self, claim: Claim, *, budget_seconds: float) -> list[Outcome]:
        """Send the claim's messages in order, stopping at the first failure or when the
        budget is spent (the rest stay pending); what each attempt came to."""
        try:
            route = self._route(claim)
        except (InvalidInput, OSError, UnicodeError) as error:
            detail = getattr(error, "detail", None) or f"cannot resolve the host: {error}"
            return [Outcome(claim.messages[0].delivery_id, False, None, detail)]
        signer = Webhook(claim.secret)
        ends = time.monotonic() + budget_seconds
        outcomes: list[Outcome] = []
        connection: Connection | None = None
        try:
            for message in claim.messages:
                outcome, connection = self._send_one(claim, message, signer, route, connection)
                outcomes.append(outcome)
                if not outcome.ok or time.monotonic() >= ends:
                    break
        finally:
            if connection is not None:
                self.connections.give_back(connection)
        return outcomes

    def _route(self, claim: Claim) -> _Route:
        """The address to connect to: the host's checked address, with the name kept for
        the Host header and TLS, so what was checked is what is reached (decision 0062)."""
        target = addresses.check_url(claim.url, self.networks)
        parts = urlsplit(claim.url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if target.literal is not None:
            address = target.literal
        else:
            resolved = self.resolver(target.host, target.port)
            if not resolved:
                raise InvalidInput(f"'{target.host}' resolves to no address")
            checked = [ipaddress.ip_address(item) for item in resolved]
            for each in checked:
                addresses.check_address(target, each, self.networks)
            address = checked[0]
        default_port = 443 if target.scheme == "https" else 80
        host = target.host if ":" not in target.host else f"[{target.host}]"
        host_header = host if target.port == default_port else f"{host}:{target.port}"
        tls_name = target.host if target.scheme == "https" else None
        media_type = (
            "application/cloudevents+json"
            if claim.format == "cloudevents"
            else ("application/json")
        )
        head = (
            b"POST " + quote(path, safe=_PATH_SAFE).encode("ascii") + b" HTTP/1.1\r\n"
            b"host: " + host_header.encode("idna") + b"\r\n"
            b"user-agent: " + _USER_AGENT + b"\r\n"
            b"content-type: " + media_type.encode() + b"\r\n"
        )
        return _Route(Origin(str(address), target.port, tls_name), head)

    def _send_one(
        self,
        claim: Claim,
        message: Message,
        signer: Webhook,
        route: _Route,
        connection: Connection | None,
    ) -> tuple[Outcome, Connection | None]:
        """One attempt, on the claim's connection (a new one if it has none or the peer
        closed it while idle); the outcome, and the connection to go on with."""
        body, _ = body_of(claim, message)
        webhook_id = str(message.event_uuid)
        sent_at = datetime.now(UTC)  # the receiver checks it against its own clock
        request = b"".join(
            (
                route.head,
                b"content-length: %d\r\nwebhook-id: %s\r\nwebhook-timestamp: %d\r\n"
                b"webhook-signature: %s\r\n\r\n"
                % (
                    len(body),
                    webhook_id.encode(),
                    int(sent_at.timestamp()),
                    signer.sign(webhook_id, sent_at, body).encode(),
                ),
                body,
            )
        )
        try:
            if connection is None:
                connection = self.connections.take(route.origin)
            reused = connection.used
            try:
                status, reusable = connection.exchange(
                    request, max_body_bytes=self.response_max_bytes
                )
            except (ConnectionError, WireError) as error:
                if not reused or isinstance(error, WireError):
                    raise
                # A kept-alive connection the peer dropped as we wrote: once more on a
                # new one (a repeat is allowed: at least once, same webhook-id).
                connection.close()
                connection = self.connections.open(route.origin)
                status, reusable = connection.exchange(
                    request, max_body_bytes=self.response_max_bytes
                )
        except _WIRE_ERRORS as error:
            if connection is not None:
                connection.close()
            return Outcome(message.delivery_id, False, None, _describe(error)), None
        if not reusable:
            connection.close()
            connection = None
        if 200 <= status < 300:
            return Outcome(message.delivery_id, True, status), connection
        return Outcome(message.delivery_id, False, status, f"answered {status}"), connection


# Kept as they are in a request target; anything else (spaces are refused earlier,
# non-ASCII text) is percent-encoded.
_PATH_SAFE = "/?&=:;@!$'()*+,-._~%"


def _describe(error: BaseException) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "TimeoutError: no answer in time"
    return f"{type(error).__name__}: {error}"
