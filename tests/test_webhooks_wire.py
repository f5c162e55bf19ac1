"""The sender against a scripted receiver on loopback: what it does with the answers a
subscriber may give (redirects, long, chunked, closing ones) and with kept-alive
connections the subscriber dropped."""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from groupd.delivery.sender import Sender
from groupd.services.webhooks import addresses, sealing
from groupd.services.webhooks.deliveries import Claim, Message

Answer = Callable[[int], bytes]  # the answer to the n-th request (from 0)


class Scripted:
    """A TCP receiver answering each request with ``answer(n)``; counts connections and
    keeps every request it read whole. ``close_after_answer`` drops each connection."""

    def __init__(self, answer: Answer, *, close_after_answer: bool = False) -> None:
        self.answer = answer
        self.close_after_answer = close_after_answer
        self.requests: list[tuple[int, bytes, bytes]] = []  # connection, head, body
        self.connections = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def wrap(self, sock: socket.socket) -> socket.socket:
        return sock

    def drop_idle(self) -> None:
        """Close every connection from this side, as a server's idle timeout does."""
        for sock in self._open:
            with contextlib.suppress(OSError):  # closed by its peer already
                sock.shutdown(socket.SHUT_RDWR)  # the FIN now, whoever waits on it
            sock.close()
        self._open.clear()

    def stop(self) -> None:
        self.drop_idle()
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
                sock = self.wrap(sock)
            except ssl.SSLError:
                continue  # the client refused the handshake
            except OSError:
                return
            index = self.connections
            self.connections += 1
            self._open.append(sock)
            threading.Thread(target=self._serve, args=(sock, index), daemon=True).start()

    def _serve(self, sock: socket.socket, index: int) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
                self.requests.append((index, head, body))
                sock.sendall(self.answer(len(self.requests) - 1))
                if self.close_after_answer:
                    sock.close()
                    return
        except OSError:
            return


def ok(_: int) -> bytes:
    return b"HTTP/1.1 204 No Content\r\n\r\n"


SECRET = sealing.new_secret()


def claim(url: str, count: int) -> Claim:
    return Claim(
        1,
        uuid.uuid4(),
        uuid.uuid4(),
        url,
        SECRET,
        "standard",
        [
            Message(i + 1, uuid.uuid4(), "group.updated", datetime.now(UTC), b'{"n": %d}' % i, 0)
            for i in range(count)
        ],
    )


@pytest.fixture
def sender() -> Iterator[Sender]:
    made = Sender(
        networks=addresses.parse_networks("127.0.0.0/8"),
        timeout_seconds=2.0,
        response_max_bytes=4096,
    )
    yield made
    made.close()


def run(sender: Sender, receiver: Scripted, count: int) -> list[tuple[bool, int | None]]:
    outcomes = sender.send(claim(receiver.url, count), budget_seconds=30)
    return [(outcome.ok, outcome.status) for outcome in outcomes]


def test_a_batch_goes_over_one_kept_alive_connection_signed(sender: Sender) -> None:
    receiver = Scripted(ok)
    try:
        assert run(sender, receiver, 5) == [(True, 204)] * 5
        assert run(sender, receiver, 2) == [(True, 204)] * 2  # the next claim reuses it
        assert receiver.connections == 1
        for _, head, body in receiver.requests:
            headers = dict(
                (name.strip().lower(), value.strip())
                for name, _, value in (
                    line.decode().partition(":") for line in head.split(b"\r\n")[1:]
                )
            )
            assert Webhook(SECRET).verify(body, headers)["data"]["n"] in range(5)
    finally:
        receiver.stop()


def _data_segments_received(sock: socket.socket) -> int:
    """How many TCP segments carrying data the kernel has received on ``sock``
    (``tcpi_data_segs_in`` of Linux's ``struct tcp_info``, since 4.6)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, 152)[0])


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="TCP_INFO is Linux's")
def test_each_request_is_one_write_head_and_body_together(sender: Sender) -> None:
    # http.client writes a request's head and its body apart (two segments: a second
    # system call here and a second read at the receiver); the sender writes them once.
    receiver = Scripted(ok)
    try:
        assert run(sender, receiver, 5) == [(True, 204)] * 5
        assert receiver.connections == 1
        assert _data_segments_received(receiver._open[0]) == 5
    finally:
        receiver.stop()


def test_a_redirect_is_a_failure_and_is_not_followed(sender: Sender) -> None:
    elsewhere = Scripted(ok)
    receiver = Scripted(
        lambda _: (
            f"HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere.url}\r\n"
            "content-length: 0\r\n\r\n".encode()
        )
    )
    try:
        assert run(sender, receiver, 3) == [(False, 307)]  # the rest wait behind it
        assert elsewhere.requests == []
    finally:
        receiver.stop()
        elsewhere.stop()


def test_a_long_answer_is_read_to_the_cap_and_its_connection_dropped(sender: Sender) -> None:
    long_body = b"x" * 1_000_000
    receiver = Scripted(
        lambda _: b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(long_body), long_body)
    )
    try:
        assert run(sender, receiver, 3) == [(True, 200)] * 3
        assert receiver.connections == 3  # never drained: dropped, a new one each time
    finally:
        receiver.stop()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok",
    ],
    ids=["chunked", "interim-1xx"],
)
def test_framed_answers_keep_the_connection(sender: Sender, answer: bytes) -> None:
    receiver = Scripted(lambda _: answer)
    try:
        assert {outcome[0] for outcome in run(sender, receiver, 3)} == {True}
        assert receiver.connections == 1
    finally:
        receiver.stop()


def test_an_answer_read_to_its_close_counts_and_the_next_goes_on_a_new_connection(
    sender: Sender,
) -> None:
    receiver = Scripted(lambda _: b"HTTP/1.0 200 OK\r\n\r\nbye", close_after_answer=True)
    try:
        assert run(sender, receiver, 3) == [(True, 200)] * 3
        assert receiver.connections == 3
    finally:
        receiver.stop()


def test_a_kept_alive_connection_the_receiver_dropped_is_replaced(sender: Sender) -> None:
    receiver = Scripted(ok)
    try:
        assert run(sender, receiver, 2) == [(True, 204)] * 2
        receiver.drop_idle()  # the receiver's idle timeout
        # The sender sees the idle connection closed (readable at EOF) before it reuses
        # it, and sends over a new one: no attempt fails for it.
        assert run(sender, receiver, 2) == [(True, 204)] * 2
        assert run(sender, receiver, 2) == [(True, 204)] * 2
        assert receiver.connections == 2
    finally:
        receiver.stop()


def test_garbage_and_silence_are_failures(sender: Sender) -> None:
    garbage = Scripted(lambda _: b"SMTP ready\r\n\r\n")
    closed = Scripted(lambda _: b"", close_after_answer=True)
    try:
        (outcome,) = sender.send(claim(garbage.url, 2), budget_seconds=30)
        assert not outcome.ok and outcome.status is None and outcome.error
        (outcome,) = sender.send(claim(closed.url, 2), budget_seconds=30)
        assert not outcome.ok and outcome.status is None
    finally:
        garbage.stop()
        closed.stop()


class ScriptedTLS(Scripted):
    """The same, over TLS with a certificate for ``names`` from a throwaway CA; keeps
    the name each client asked for (SNI)."""

    def __init__(self, answer: Answer, ca: trustme.CA, names: list[str]) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(*names).configure_cert(self.context)
        self.server_names: list[str | None] = []
        self.context.sni_callback = lambda _sock, name, _ctx: self.server_names.append(name)
        super().__init__(answer)

    def wrap(self, sock: socket.socket) -> socket.socket:
        return self.context.wrap_socket(sock, server_side=True)


def test_https_goes_to_the_checked_address_verified_against_the_name() -> None:
    """The connection is made to the address the name resolved to (and was checked),
    while TLS asks for the name (SNI) and checks the certificate against it."""
    ca = trustme.CA()
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    sender = Sender(
        networks=addresses.parse_networks("127.0.0.0/8"),
        timeout_seconds=2.0,
        response_max_bytes=4096,
        resolver=lambda host, port: ["127.0.0.1"],
        tls=client_tls,
    )
    right = ScriptedTLS(ok, ca, ["hooks.example.com"])
    wrong = ScriptedTLS(ok, ca, ["other.example.com"])
    try:
        url = f"https://hooks.example.com:{right.port}/hook"
        outcomes = sender.send(claim(url, 2), budget_seconds=30)
        assert [(o.ok, o.status) for o in outcomes] == [(True, 204)] * 2
        assert right.server_names == ["hooks.example.com"]  # one handshake, kept alive
        assert b"host: hooks.example.com:%d" % right.port in right.requests[0][1].lower()
        (refused,) = sender.send(
            claim(f"https://hooks.example.com:{wrong.port}/hook", 1), budget_seconds=30
        )
        assert not refused.ok and "certificate" in (refused.error or "").lower()
        assert wrong.requests == []
    finally:
        sender.close()
        right.stop()
        wrong.stop()
