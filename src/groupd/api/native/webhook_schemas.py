"""Native wire types of /api/v1/webhooks."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, UnsetType

from groupd.api.native.schemas import In, Out

WebhookFormat = Literal["standard", "cloudevents"]
Url = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uri", "maxLength": 2000})]
EventPatterns = Annotated[list[str], msgspec.Meta(extra_json_schema={"maxItems": 50})]


class WebhookCreate(In):
    url: Url
    events: EventPatterns
    description: str = ""
    format: WebhookFormat = "standard"


class WebhookUpdate(In):
    url: Url | UnsetType = UNSET
    events: EventPatterns | UnsetType = UNSET
    description: str | UnsetType = UNSET
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
