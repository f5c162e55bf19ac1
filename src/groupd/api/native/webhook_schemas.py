"""Native wire types of /api/v1/webhooks."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from groupd.api.native.schemas import In, Out
from groupd.api.text_rules import Description
from groupd.services.webhooks.catalogue import EVENT_TYPES, MAX_PATTERNS

WebhookFormat = Literal["standard", "cloudevents"]
# What ``services.webhooks.addresses.check_url`` always takes: https to a DNS name under
# a public top-level domain (an address literal or a local name may be refused), a port,
# a path. The server takes more (any public host; http to an allowed network).
URL_PATTERN = (
    r"^https://([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+(com|org|net|io|dev)"
    r"(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~!$&'()*+,;=:@/-]*)?$"
)
Url = Annotated[
    str,
    msgspec.Meta(extra_json_schema={"format": "uri", "maxLength": 2000, "pattern": URL_PATTERN}),
]
# ``catalogue.check_patterns``: event types, a prefix ending in ``.*``, or ``*``.
_PREFIXES = sorted(
    {
        ".".join(kind.split(".")[:n]) + ".*"
        for kind in EVENT_TYPES
        for n in range(1, kind.count(".") + 1)
    }
)
EventPattern = Annotated[
    str, msgspec.Meta(extra_json_schema={"enum": ["*", *EVENT_TYPES, *_PREFIXES]})
]
EventPatterns = Annotated[
    list[EventPattern],
    msgspec.Meta(extra_json_schema={"minItems": 1, "maxItems": MAX_PATTERNS}),
]


class WebhookCreate(In):
    url: Url
    events: EventPatterns
    description: Description = ""
    format: WebhookFormat = "standard"


class WebhookUpdate(In):
    url: Url | UnsetType = UNSET
    events: EventPatterns | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    enabled: bool | UnsetType = UNSET


class WebhookOut(Out):
    id: str
    url: str
    events: list[str]
    description: str
    format: str
    enabled: bool
    disabled_reason: str | None
    created_at: str
    updated_at: str


class WebhookWithSecret(WebhookOut):
    secret: str


class WebhookPage(Out):
    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(Out):
    id: str
    event_id: str
    event: str
    status: str
    attempts: int
    last_response_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    delivered_at: str | None


class DeliveryPage(Out):
    items: list[DeliveryOut]
    next_cursor: str | None
