"""Helpers the native resources share."""

from __future__ import annotations

import uuid

from groupd.api.http import ApiRequest, QueryParam
from groupd.errors import InvalidInput
from groupd.services.common import parse_uuid_field

PAGING = [
    QueryParam("limit", "integer", "page size (1-1000, default 50)", minimum=1, maximum=1000),
    QueryParam("cursor", "string", "nextCursor of the previous page"),
]


def limit_and_cursor(req: ApiRequest) -> tuple[int, str | None]:
    return (
        req.query_int("limit", 50, minimum=1, maximum=1000),
        req.query_str("cursor"),
    )


def if_match(req: ApiRequest) -> int | None:
    """The version an ``If-Match`` header names (``"3"``, ``W/"3"``), ``*`` meaning any."""
    header = req.headers.get("if-match")
    if header is None:
        return None
    value = header.strip()
    if value == "*":
        return None
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    if not value.isdigit() or len(value) > 12:
        raise InvalidInput(
            f"If-Match '{header}' is not an ETag this server issued", field="If-Match"
        )
    return int(value)


def optional_uuid(value: str | None, *, field: str) -> uuid.UUID | None:
    return parse_uuid_field(value, field=field) if value is not None else None
