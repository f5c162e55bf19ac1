"""The event types, which audit action tells which, and how subscriptions name them."""

from __future__ import annotations

import re

from groupd.errors import InvalidInput

EVENT_TYPES = (
    "group.created",
    "group.updated",
    "group.moved",
    "group.deleted",
    "group.delete.completed",
    "group.restored",
    "group.purged",
    "object.created",
    "object.updated",
    "object.moved",
    "object.deleted",
    "membership.added",
    "membership.removed",
    "licence.units_released",
    "operation.failed",
)
TEST_EVENT = "webhook.test"

# Each audited action that is a change a subscriber may want, and its event type. An
# action not named here (logins, tokens, accounts, webhooks themselves) emits nothing.
TYPE_OF_ACTION: dict[str, str] = {
    "group.create": "group.created",
    "group.batch_create": "group.created",
    "group.update": "group.updated",
    "group.move": "group.moved",
    "group.delete.accepted": "group.deleted",
    "group.delete.succeeded": "group.delete.completed",
    "group.delete.failed": "operation.failed",
    "group.restore": "group.restored",
    "group.purge": "group.purged",
    "object.create": "object.created",
    "object.batch_import": "object.created",
    "object.update": "object.updated",
    "object.move": "object.moved",
    "object.delete": "object.deleted",
    "membership.add": "membership.added",
    "membership.remove": "membership.removed",
    "license.release": "licence.units_released",
}

_PATTERN = re.compile(r"^(\*|[a-z_]+(\.[a-z_]+)*(\.\*)?)$")
MAX_PATTERNS = 50


def check_patterns(patterns: list[str]) -> list[str]:
    """The event names a subscription asks for, each an event type, a prefix ending in
    ``.*`` (``group.*``) or ``*``; InvalidInput naming the first that matches none."""
    if not patterns:
        raise InvalidInput("events must name at least one event type", field="events")
    if len(patterns) > MAX_PATTERNS:
        raise InvalidInput(f"at most {MAX_PATTERNS} event patterns", field="events")
    cleaned: list[str] = []
    for pattern in patterns:
        if not _PATTERN.match(pattern) or not any(matches([pattern], kind) for kind in EVENT_TYPES):
            raise InvalidInput(
                f"events: '{pattern[:100]}' names no event type; "
                f"known types: {', '.join(EVENT_TYPES)}",
                field="events",
            )
        if pattern not in cleaned:
            cleaned.append(pattern)
    return cleaned


def matches(patterns: list[str], event_type: str) -> bool:
    """Whether a subscription asking for ``patterns`` receives ``event_type``."""
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
