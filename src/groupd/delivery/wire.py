"""One HTTP/1.1 exchange at a time over a kept-alive connection: what the sender needs of
HTTP, and no more (decision 0064).

A delivery is one ``POST`` whose answer only counts for its status: the request is
written whole in one ``sendall``, the answer parsed by ``httptools`` (llhttp, the parser
uvicorn serves groupd's own API with), and at most a capped number of its bytes is read.
Nothing here follows a redirect, retries a request on its own account, or pipelines:
the next request on a connection is written only once the answer before it is complete.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

import httptools

# An answer's status line and headers may take this much; more is a protocol error.
HEAD_MAX_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024


class WireError(Exception):
    """The exchange failed on the wire: no usable answer (the attempt failed)."""


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go: the checked address and port, and the name TLS verifies
    (None: plain http)."""

    address: str
    port: int
    tls_name: str | None


@dataclass(slots=True)
class _Answer:
    """httptools' callbacks: the final status, and whether the message was complete."""

    parser: httptools.HttpResponseParser | None = None
    status: int = 0
    body_bytes: int = 0
    complete: bool = False
    keep_alive: bool = False  # asked when complete: llhttp forgets it after some answers
    messages: int = 0  # a second final message in the same bytes: the peer misbehaves

    def on_message_begin(self) -> None:
        self.messages += 1

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.status = self.parser.get_status_code()
        if self.status < 200:
            self.messages -= 1  # an interim 1xx: the final answer follows

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.status >= 200:
            assert self.parser is not None
            self.complete = True
            self.keep_alive = self.parser.should_keep_alive()


@dataclass(slots=True)
class Connection:
    origin: Origin
    sock: socket.socket
    idle_since: float = field(default_factory=time.monotonic)
    used: bool = False  # has carried an exchange: it may have been closed by the peer since

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def stale(self) -> bool:
        """Whether the peer closed (or wrote to) the idle connection: readable now."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def exchange(self, request: bytes, *, max_body_bytes: int) -> tuple[int, bool]:
        """Write ``request``, read the answer: its status, and whether this connection
        can carry another exchange. Reads at most ``max_body_bytes`` of the body; a longer
        answer is left unread and the connection dropped."""
        self.used = True
        self.sock.sendall(request)
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        answer.parser = parser
        read = 0
        head_done = False
        while not answer.complete:
            budget = HEAD_MAX_BYTES + max_body_bytes - read
            if budget <= 0 or (head_done and answer.body_bytes >= max_body_bytes):
                break  # what is left is not ours to read
            chunk = self.sock.recv(min(_READ_SIZE, budget))
            if not chunk:
                break  # closed by the peer: an answer read to its end, or none
            read += len(chunk)
            try:
                parser.feed_data(chunk)
            except httptools.HttpParserError as error:
                raise WireError(f"a malformed answer: {error}") from None
            head_done = answer.status >= 200
        if not head_done:
            if read == 0:
                raise ConnectionResetError("the connection closed before an answer")
            raise WireError("no complete answer")
        reusable = answer.complete and answer.messages == 1 and answer.keep_alive
        return answer.status, reusable


class Connections:
    """Kept-alive connections by origin, taken by one thread for a claim's batch and
    given back when it is done (a subscription's requests go one after the other)."""

    def __init__(
        self,
        *,
        timeout_seconds: float,
        ssl_context: ssl.SSLContext,
        idle_per_origin: int = 8,
        idle_seconds: float = 30.0,
    ) -> None:
        self.timeout_seconds = timeout_seconds
        self.ssl_context = ssl_context
        self.idle_per_origin = idle_per_origin
        self.idle_seconds = idle_seconds
        self._idle: dict[Origin, list[Connection]] = {}
        self._mutex = threading.Lock()

    def take(self, origin: Origin) -> Connection:
        """An idle connection to ``origin`` that the peer has not closed, or a new one."""
        now = time.monotonic()
        while True:
            with self._mutex:
                idle = self._idle.get(origin)
                found = idle.pop() if idle else None
            if found is None:
                return self.open(origin)
            if now - found.idle_since < self.idle_seconds and not found.stale():
                return found
            found.close()

    def open(self, origin: Origin) -> Connection:
        sock = socket.create_connection((origin.address, origin.port), self.timeout_seconds)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.timeout_seconds)  # each connect, write and read
            if origin.tls_name is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=origin.tls_name)
        except BaseException:
            sock.close()
            raise
        return Connection(origin, sock)

    def give_back(self, connection: Connection) -> None:
        connection.idle_since = time.monotonic()
        with self._mutex:
            idle = self._idle.setdefault(connection.origin, [])
            if len(idle) < self.idle_per_origin:
                idle.append(connection)
                return
        connection.close()

    def close(self) -> None:
        with self._mutex:
            every = [each for idle in self._idle.values() for each in idle]
            self._idle.clear()
        for connection in every:
            connection.close()
