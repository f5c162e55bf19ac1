"""Sending a claim's messages: the body, the Standard Webhooks signature, the address
checks after name resolution, and the limits on what a subscriber may cost us."""

from __future__ import annotations

import http.client
import ipaddress
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import certifi
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


# Every way a request can fail on the wire (timeouts, resets and TLS errors are OSErrors;
# a malformed or missing answer an HTTPException); each is a failed attempt, retried later.
_WIRE_ERRORS = (OSError, http.client.HTTPException)
# A kept-alive connection unused this long is closed rather than reused: most servers
# have dropped it by then.
IDLE_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class _Route:
    """Where a claim's requests go: the checked address to connect to, and the name for
    the Host header and for TLS (SNI and the certificate's check)."""

    scheme: str
    address: str
    port: int
    path: str
    host_header: str
    server_name: str

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.scheme, self.address, self.port, self.server_name)


class _OneWrite(http.client.HTTPConnection):
    """Writes a request's head and body with one system call. ``http.client`` writes
    them apart (``send`` twice): on loopback that second write, and the second read and
    wakeup it costs the receiver, were a quarter of a request's CPU (decision 0080)."""

    _hold_head = False
    _held: bytes | None = None

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        self._hold_head = True
        try:
            self.request("POST", path, body=body, headers=headers)
            if self._held is not None:  # no body came after the head (an empty one)
                super().send(self._held)
        finally:
            self._hold_head, self._held = False, None

    def send(self, data: Any) -> None:
        if self._hold_head:
            self._hold_head, self._held = False, bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + bytes(data), None
        super().send(data)


class _PinnedHTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    """HTTPS to an address that was checked, verified against the name it was resolved
    from (``http.client`` would take the address for the name)."""

    def __init__(
        self, address: str, port: int, *, server_name: str, timeout: float, tls: ssl.SSLContext
    ) -> None:
        super().__init__(address, port, timeout=timeout, context=tls)
        self.server_name = server_name
        self.tls = tls

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)


@dataclass(slots=True)
class _Kept:
    connection: _OneWrite
    used_at: float


class Sender:
    """Sends messages over kept-alive connections, one set per delivery thread; never
    follows a redirect.

    The standard library's ``http.client``: one write per request (head and body
    together, ``_OneWrite``) and a response parser in C for the status line, at a third
    of httpcore's CPU per request (decision 0079), in a process whose CPU competes with
    the API's."""

    def __init__(
        self,
        *,
        networks: tuple[addresses.Network, ...],
        timeout_seconds: float,
        response_max_bytes: int,
        resolver: Resolver = resolve,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        """``tls``: how subscribers' certificates are checked (default: against
        certifi's CA bundle, with the name each address was resolved from)."""
        self.networks = networks
        self.response_max_bytes = response_max_bytes
        self.resolver = resolver
        self.timeout_seconds = timeout_seconds
        self.tls = tls or ssl.create_default_context(cafile=certifi.where())
        self._local = threading.local()
        self._every: set[http.client.HTTPConnection] = set()  # for ``close``
        self._every_lock = threading.Lock()

    def close(self) -> None:
        """Close every kept connection (once the delivery threads have stopped)."""
        with self._every_lock:
            every, self._every = self._every, set()
        for connection in every:
            connection.close()

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
        return _Route(target.scheme, str(address), target.port, path, host_header, target.host)

    def _connection(self, route: _Route) -> _OneWrite:
        """This thread's kept connection for the route, or a new one (connected on first
        use). One the peer closed while it was idle, or idle too long, is replaced."""
        kept: dict[tuple[str, str, int, str], _Kept] = self._local.__dict__.setdefault("kept", {})
        now = time.monotonic()
        found = kept.get(route.key)
        if found is not None:
            if now - found.used_at < IDLE_SECONDS and not _dropped(found.connection):
                found.used_at = now
                return found.connection
            self._forget(route)
        connection: _OneWrite
        if route.scheme == "https":
            connection = _PinnedHTTPSConnection(
                route.address,
                route.port,
                server_name=route.server_name,
                timeout=self.timeout_seconds,
                tls=self.tls,
            )
        else:
            connection = _OneWrite(route.address, route.port, timeout=self.timeout_seconds)
        kept[route.key] = _Kept(connection, now)
        with self._every_lock:
            self._every.add(connection)
        return connection

    def _forget(self, route: _Route) -> None:
        kept: dict[tuple[str, str, int, str], _Kept] = self._local.__dict__.setdefault("kept", {})
        found = kept.pop(route.key, None)
        if found is not None:
            found.connection.close()
            with self._every_lock:
                self._every.discard(found.connection)

    def _send_one(self, claim: Claim, message: Message, signer: Webhook, route: _Route) -> Outcome:
        body, media_type = body_of(claim, message)
        webhook_id = str(message.event_uuid)
        sent_at = datetime.now(UTC)  # the receiver checks it against its own clock
        headers = {
            "Host": route.host_header,
            "Content-Type": media_type,
            "Content-Length": str(len(body)),
            "User-Agent": "groupd-webhooks/1",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signer.sign(webhook_id, sent_at, body),
        }
        connection = self._connection(route)
        try:
            connection.post(route.path, body, headers)
            response = connection.getresponse()
            status = response.status
            # What a subscriber answers is not ours to keep: read at most the cap, then
            # drop the connection rather than drain a larger answer.
            response.read(self.response_max_bytes)
            if not response.isclosed():
                self._forget(route)
        except _WIRE_ERRORS as error:
            self._forget(route)
            return Outcome(message.delivery_id, False, None, f"{type(error).__name__}: {error}")
        if 200 <= status < 300:
            return Outcome(message.delivery_id, True, status)
        return Outcome(message.delivery_id, False, status, f"answered {status}")


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """Whether an idle kept connection has something to read: its peer closed it (or
    sent what no request asked for), so it cannot carry another request."""
    sock = connection.sock
    if sock is None:
        return False  # not connected yet, or closed after an answer: it connects again
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))
