"""Helpers the native resources share."""

from __future__ import annotations

import uuid

from groupd.api.http import ApiRequest, QueryParam
from groupd.services.common import parse_uuid_field

PAGING = [
    QueryParam("limit", "integer", "page size (1-1000, default 50)", minimum=1, maximum=1000),
    QueryParam("cursor", "string", "nextCursor of the previous page"),
]
# RFC 9110 §13 conditions on a resource with an ETag (api/conditional.py).
ENTITY_TAGS = r'^[ \t]*(\*|(W/)?"[!#-~]*"([ \t]*,[ \t]*(W/)?"[!#-~]*")*)[ \t]*$'
CONDITIONS = [
    QueryParam(
        "If-Match",
        "string",
        "'*' or ETags, one of which the resource must still have (strong comparison)",
        pattern=ENTITY_TAGS,
    ),
    QueryParam(
        "If-None-Match",
        "string",
        "'*' or ETags the resource must not have; on a read, a match answers 304",
        pattern=ENTITY_TAGS,
    ),
]


def limit_and_cursor(req: ApiRequest) -> tuple[int, str | None]:
    return (
        req.query_int("limit", 50, minimum=1, maximum=1000),
        req.query_str("cursor"),
    )


def optional_uuid(value: str | None, *, field: str) -> uuid.UUID | None:
    return parse_uuid_field(value, field=field) if value is not None else None
