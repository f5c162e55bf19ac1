"""A real webhook receiver on 127.0.0.1: records what it is sent, and can go down
(stop listening) and come back on the same port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def type(self) -> str:
        document = self.document
        return str(document["type"])


class Receiver:
    """Answers ``status`` (200 unless told otherwise) after ``delay`` seconds."""

    def __init__(self, port: int = 0) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = port
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver.status
                if 200 <= status < 300:
                    with receiver._lock:
                        receiver.received.append(
                            Received({k.lower(): v for k, v in self.headers.items()}, body)
                        )
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused until ``start``."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def types(self) -> list[str]:
        with self._lock:
            return [item.type for item in self.received]

    def verified(self, secret: str) -> list[dict[str, Any]]:
        """Every body received, each checked against its signature with the library."""
        signer = Webhook(secret)
        with self._lock:
            items = list(self.received)
        return [signer.verify(item.body, item.headers) for item in items]

    def wait_for(self, count: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"{len(self.received)} of {count} received"
