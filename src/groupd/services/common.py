"""Values every service shares: who is acting, paging cursors, id allocation."""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from groupd.errors import InvalidInput, NotFound, PermissionDenied, PreconditionFailed

ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
MAX_PAGE = 1000
MAX_KEY = 2**63 - 1  # keys are 64-bit on every database


_VERSION_7 = 0x7 << 76
_RFC_9562_VARIANT = 0x2 << 62
_VERSION_AND_VARIANT = (0xF << 76) | (0x3 << 62)
_last_uuid = 0
_last_uuid_lock = threading.Lock()


def new_uuid() -> uuid.UUID:
    """A time-ordered UUID (version 7, RFC 9562): 48 bits of Unix milliseconds, then
    random bits. Rows created together sit together in the uuid indexes as they do in
    the key order, so bulk deletes touch few index pages (random v4 uuids scatter them).

    Within this process each one is greater than the one before, also within one
    millisecond (RFC 9562's monotonic random: the previous one plus one), so a listing in
    uuid order is creation order (a licence's activations, migration 0009)."""
    global _last_uuid
    millis = time.time_ns() // 1_000_000
    value = (millis & (2**48 - 1)) << 80 | secrets.randbits(80)
    value = (value & ~_VERSION_AND_VARIANT) | _VERSION_7 | _RFC_9562_VARIANT
    with _last_uuid_lock:
        if value <= _last_uuid:
            # The random bits below the variant, plus one; the variant bits above them
            # stay as they are unless 62 random bits ran over (then the next millisecond).
            value = (_last_uuid + 1) & ~_VERSION_AND_VARIANT | _VERSION_7 | _RFC_9562_VARIANT
            if value <= _last_uuid:
                value = ((millis + 1) & (2**48 - 1)) << 80 | _VERSION_7 | _RFC_9562_VARIANT
        _last_uuid = value
    return uuid.UUID(int=value)


@dataclass(frozen=True, slots=True)
class Actor:
    """The authenticated caller of a use case, and where the call came from."""

    tenant_id: int
    account_id: int | None
    username: str
    role: str
    request_id: str = ""
    source: str | None = None

    def require(self, role: str) -> None:
        """Raise PermissionDenied unless this actor's role is at least ``role``."""
        if ROLE_RANK[self.role] < ROLE_RANK[role]:
            raise PermissionDenied(f"the {self.role} role may not do this; {role} is needed")


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a keyset listing, and the cursor of the next (None on the last)."""

    items: list[Any]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Precondition:
    """What a request's ``If-Match`` and ``If-None-Match`` ask of a resource's version
    (RFC 9110 §13.1.1-2), in versions: the API turns entity tags into these.

    ``match``: the version must be one of these (``None``: no condition, the header was
    absent or ``*``; empty: no tag this server issued, so never). ``none_match``: the
    version must be none of these; ``none_match_any``: ``If-None-Match: *``, false for
    any resource that exists.
    """

    match: frozenset[int] | None = None
    none_match: frozenset[int] = frozenset()
    none_match_any: bool = False

    def check(self, version: int, *, what: str) -> None:
        """Raise PreconditionFailed unless ``what``, at ``version``, meets the condition."""
        if self.match is not None and version not in self.match:
            if len(self.match) == 1:
                (expected,) = self.match
                raise PreconditionFailed(f"{what} is at version {version}, not {expected}")
            raise PreconditionFailed(
                f"{what} is at version {version}, which If-Match does not name"
            )
        if self.none_match_any or version in self.none_match:
            raise PreconditionFailed(f"{what} is at version {version}, which If-None-Match names")


def system_actor(tenant_id: int, *, name: str = "system") -> Actor:
    return Actor(tenant_id=tenant_id, account_id=None, username=name, role="admin")


def parse_uuid(value: str, *, what: str = "id") -> uuid.UUID:
    """A UUID from the API, or NotFound: a malformed id names nothing that exists."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise NotFound(f"no {what} '{value}'") from None


def parse_uuid_field(value: str, *, field: str) -> uuid.UUID:
    """A UUID in a request body or query: malformed is bad input (400), not a miss."""
    try:
        return uuid.UUID(value)
    except (ValueError, AttributeError, TypeError):
        raise InvalidInput(f"{field} '{value}' is not a UUID", field=field) from None


def encode_cursor(last_id: int) -> str:
    return _encode_cursor(f"k{last_id}")


def encode_uuid_cursor(last: uuid.UUID) -> str:
    return _encode_cursor(f"u{last.hex}")


def decode_cursor(cursor: str | None, *, field: str = "cursor") -> int:
    """The key after which a page starts (0 for the first page)."""
    if not cursor:
        return 0
    payload = _cursor_payload(cursor, kind="k", field=field)
    if not (payload.isascii() and payload.isdigit()) or int(payload) > MAX_KEY:
        raise _not_issued(field)
    return int(payload)


def decode_uuid_cursor(cursor: str | None, *, field: str = "cursor") -> uuid.UUID | None:
    """The uuid after which a page in uuid order starts (None for the first page)."""
    if not cursor:
        return None
    payload = _cursor_payload(cursor, kind="u", field=field)
    if len(payload) != 32:
        raise _not_issued(field)
    try:
        return uuid.UUID(hex=payload)
    except ValueError:
        raise _not_issued(field) from None


def _encode_cursor(payload: str) -> str:
    return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")


def _cursor_payload(cursor: str, *, kind: str, field: str) -> str:
    """What a cursor this server issued of ``kind`` ("k": a key, "u": a uuid) carries."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise _not_issued(field) from None
    if not raw.startswith(kind):
        raise _not_issued(field)
    return raw[len(kind) :]


def _not_issued(field: str) -> InvalidInput:
    return InvalidInput(f"{field} is not a cursor this server issued", field=field)


def check_limit(limit: int, *, field: str = "limit") -> int:
    if limit < 1 or limit > MAX_PAGE:
        raise InvalidInput(f"{field} must be between 1 and {MAX_PAGE}", field=field)
    return limit
