"""Sending a claim's messages: the body, the Standard Webhooks signature, the address
checks after name resolution, and the limits on what a subscriber may cost us."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
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
            "data": message.data,
        }
        return _encoder.encode(document), "application/cloudevents+json"
    document = {
        "type": message.event_type,
        "timestamp": _timestamp(message.occurred_at),
        "data": message.data,
    }
    return _encoder.encode(document), "application/json"


class Sender:
    """Sends messages over one pooled HTTP client; never follows a redirect."""

    def __init__(
        self,
        *,
        networks: tuple[addresses.Network, ...],
        timeout_seconds: float,
        response_max_bytes: int,
        resolver: Resolver = resolve,
        client: httpx.Client | None = None,
    ) -> None:
        self.networks = networks
        self.response_max_bytes = response_max_bytes
        self.resolver = resolver
        self.client = client or httpx.Client(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment sees the events
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )

    def close(self) -> None:
        self.client.close()

    def send(self, claim: Claim, *, budget_seconds: float) -> list[Outcome]:
        """Send the claim's messages in order, stopping at the first failure or when the
        budget is spent (the rest stay pending); what each attempt came to."""
        try:
            url, headers, extensions = self._pinned(claim.url)
        except (InvalidInput, OSError, UnicodeError) as error:
            detail = getattr(error, "detail", None) or f"cannot resolve the host: {error}"
            return [Outcome(claim.messages[0].delivery_id, False, None, detail)]
        signer = Webhook(claim.secret)
        ends = time.monotonic() + budget_seconds
        outcomes: list[Outcome] = []
        for message in claim.messages:
            outcome = self._send_one(claim, message, signer, url, headers, extensions)
            outcomes.append(outcome)
            if not outcome.ok or time.monotonic() >= ends:
                break
        return outcomes

    def _pinned(self, url: str) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
        """The URL to connect to: the host's checked address, with the name kept for the
        Host header and TLS, so what was checked is what is reached (decision 0062)."""
        target = addresses.check_url(url, self.networks)
        if target.literal is not None:
            return httpx.URL(url), {}, {}
        resolved = self.resolver(target.host, target.port)
        if not resolved:
            raise InvalidInput(f"'{target.host}' resolves to no address")
        checked = [ipaddress.ip_address(item) for item in resolved]
        for address in checked:
            addresses.check_address(target, address, self.networks)
        original = httpx.URL(url)
        host_header = target.host if original.port is None else f"{target.host}:{original.port}"
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        return original.copy_with(host=str(checked[0])), {"Host": host_header}, extensions

    def _send_one(
        self,
        claim: Claim,
        message: Message,
        signer: Webhook,
        url: httpx.URL,
        headers: dict[str, str],
        extensions: dict[str, Any],
    ) -> Outcome:
        body, media_type = body_of(claim, message)
        webhook_id = str(message.event_uuid)
        sent_at = datetime.now(UTC)  # the receiver checks it against its own clock
        request_headers = {
            **headers,
            "content-type": media_type,
            "user-agent": "groupd-webhooks/1",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signer.sign(webhook_id, sent_at, body),
        }
        try:
            request = self.client.build_request(
                "POST", url, content=body, headers=request_headers, extensions=extensions
            )
            response = self.client.send(request, stream=True)
            try:
                self._read_capped(response)
            finally:
                response.close()
        except httpx.HTTPError as error:
            return Outcome(message.delivery_id, False, None, f"{type(error).__name__}: {error}")
        if 200 <= response.status_code < 300:
            return Outcome(message.delivery_id, True, response.status_code)
        return Outcome(
            message.delivery_id, False, response.status_code, f"answered {response.status_code}"
        )

    def _read_capped(self, response: httpx.Response) -> None:
        # What a subscriber answers is not ours to keep: read at most the cap, then drop
        # the connection rather than drain a larger answer.
        read = 0
        for chunk in response.iter_raw():
            read += len(chunk)
            if read >= self.response_max_bytes:
                break
