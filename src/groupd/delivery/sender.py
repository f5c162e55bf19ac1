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
from urllib.parse import urlsplit

import httpcore
import msgspec
from standardwebhooks.webhooks import Webhook

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
_WIRE_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    OSError,
)


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a claim's requests go: the checked address, and the name for Host and TLS."""

    url: httpcore.URL
    headers: list[tuple[bytes, bytes]]
    extensions: dict[str, Any]


class Sender:
    """Sends messages over one connection pool; never follows a redirect.

    httpcore (httpx's own transport) rather than an ``httpx.Client``: the client's layer
    cost as much CPU again per request, in the process that serves the API (decision
    0063)."""

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
        self.timeouts = {
            "connect": timeout_seconds,
            "read": timeout_seconds,
            "write": timeout_seconds,
            "pool": timeout_seconds,
        }
        self.pool = httpcore.ConnectionPool(
            max_connections=64, max_keepalive_connections=32, retries=0
        )

    def close(self) -> None:
        self.pool.close()

    def send(self, claim: Claim, *, budget_seconds: float) -> list[Outcome]:
        """Send the claim's messages in order, stopping at the first failure or when the
        budget is spent (the rest stay pending); what each attempt came to."""
        try:
            route = self._route(claim.url)
        except (InvalidInput, OSError, UnicodeError) as error:
            detail = getattr(error, "detail", None) or f"cannot resolve the host: {error}"
            return [Outcome(claim.messages[0].delivery_id, False, None, detail)]
        signer = Webhook(claim.secret)
        ends = time.monotonic() + budget_seconds
        outcomes: list[Outcome] = []
        for message in claim.messages:
            outcome = self._send_one(claim, message, signer, route)
            outcomes.append(outcome)
            if not outcome.ok or time.monotonic() >= ends:
                break
        return outcomes

    def _route(self, url: str) -> _Route:
        """The address to connect to: the host's checked address, with the name kept for
        the Host header and TLS, so what was checked is what is reached (decision 0062)."""
        target = addresses.check_url(url, self.networks)
        parts = urlsplit(url)
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
        extensions: dict[str, Any] = {"timeout": self.timeouts}
        if target.scheme == "https" and target.literal is None:
            extensions["sni_hostname"] = target.host
        return _Route(
            httpcore.URL(
                scheme=target.scheme.encode(),
                host=str(address).encode(),
                port=target.port,
                target=path.encode(),
            ),
            [(b"host", host_header.encode())],
            extensions,
        )

    def _send_one(self, claim: Claim, message: Message, signer: Webhook, route: _Route) -> Outcome:
        body, media_type = body_of(claim, message)
        webhook_id = str(message.event_uuid)
        sent_at = datetime.now(UTC)  # the receiver checks it against its own clock
        headers = [
            *route.headers,
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"user-agent", b"groupd-webhooks/1"),
            (b"webhook-id", webhook_id.encode()),
            (b"webhook-timestamp", str(int(sent_at.timestamp())).encode()),
            (b"webhook-signature", signer.sign(webhook_id, sent_at, body).encode()),
        ]
        try:
            with self.pool.stream(
                "POST", route.url, headers=headers, content=body, extensions=route.extensions
            ) as response:
                status = response.status
                # What a subscriber answers is not ours to keep: read at most the cap,
                # then drop the connection rather than drain a larger answer.
                read = 0
                for chunk in response.iter_stream():
                    read += len(chunk)
                    if read >= self.response_max_bytes:
                        break
        except _WIRE_ERRORS as error:
            return Outcome(message.delivery_id, False, None, f"{type(error).__name__}: {error}")
        if 200 <= status < 300:
            return Outcome(message.delivery_id, True, status)
        return Outcome(message.delivery_id, False, status, f"answered {status}")
