"""Conditional requests (RFC 9110 §13): ``If-Match`` and ``If-None-Match`` for every
resource that has an ETag, on every surface that sends one.

A resource's ETag is its version as a strong entity tag (``"3"``). ``If-Match`` uses the
strong comparison: a weak tag (``W/"3"``) or a tag this server never issued (``"stale"``)
matches nothing, so the condition is false and the answer is 412, not 400. Only a header
that is not an entity-tag list at all is 400. ``If-None-Match`` uses the weak comparison:
on a GET or HEAD a match is 304 with the ETag and no body; on any other method, 412.

Reads evaluate here, against the version they show (``not_modified``); writes hand a
``Precondition`` to the service, which checks it against the version it has locked, so
the check and the change are one atomic step (decision record 0020).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from starlette.responses import Response

from groupd.api.http import ApiRequest
from groupd.errors import InvalidInput, PreconditionFailed
from groupd.services.common import Precondition

# One list element: an optional weak prefix and a quoted opaque tag (RFC 9110 §8.8.3).
_ELEMENT = re.compile(r'[ \t]*(W/)?"([\x21\x23-\x7e\x80-\xff]*)"[ \t]*')
_VERSION = re.compile(r"[1-9][0-9]{0,11}")
HEADER_MAX = 4096


@dataclass(frozen=True, slots=True)
class EntityTag:
    weak: bool
    opaque: str


@dataclass(frozen=True, slots=True)
class TagList:
    """A parsed ``If-Match`` or ``If-None-Match``: ``*`` or a list of entity tags."""

    any: bool
    tags: tuple[EntityTag, ...]


def entity_tag(version: int) -> str:
    """The ETag of a resource at ``version``."""
    return f'"{version}"'


def parse_tags(value: str, *, header: str) -> TagList:
    """``*`` or ``#entity-tag`` (empty list elements allowed, as RFC 9110 §5.6.1 says)."""
    if len(value) > HEADER_MAX:
        raise InvalidInput(f"{header} is longer than {HEADER_MAX} characters", field=header)
    if value.strip() == "*":
        return TagList(True, ())
    tags: list[EntityTag] = []
    for element in _split(value, header=header):
        match = _ELEMENT.fullmatch(element)
        if match is None:
            raise InvalidInput(
                f'{header} must be \'*\' or a list of entity tags such as "3" or W/"3"; '
                f"'{element.strip()}' is not one",
                field=header,
            )
        tags.append(EntityTag(match.group(1) is not None, match.group(2)))
    if not tags:
        raise InvalidInput(f"{header} is empty", field=header)
    return TagList(False, tuple(tags))


def _split(value: str, *, header: str) -> list[str]:
    """List elements, splitting on commas outside quoted strings; blank ones dropped."""
    elements: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            elements.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise InvalidInput(f"{header} has an unterminated quoted entity tag", field=header)
    elements.append("".join(current))
    return [element for element in elements if element.strip()]


def _versions(tags: tuple[EntityTag, ...], *, strong: bool) -> frozenset[int]:
    """The versions that ``tags`` name: only our own tags, and only strong ones if asked."""
    return frozenset(
        int(tag.opaque)
        for tag in tags
        if _VERSION.fullmatch(tag.opaque) and not (strong and tag.weak)
    )


def precondition(req: ApiRequest) -> Precondition | None:
    """The request's conditions as versions, for a service to check under its lock."""
    if_match = req.headers.get("if-match")
    if_none_match = req.headers.get("if-none-match")
    if if_match is None and if_none_match is None:
        return None
    match = None
    if if_match is not None:
        tags = parse_tags(if_match, header="If-Match")
        match = None if tags.any else _versions(tags.tags, strong=True)
    none_match: frozenset[int] = frozenset()
    none_match_any = False
    if if_none_match is not None:
        tags = parse_tags(if_none_match, header="If-None-Match")
        none_match_any = tags.any
        none_match = _versions(tags.tags, strong=False)
    return Precondition(match=match, none_match=none_match, none_match_any=none_match_any)


def not_modified(req: ApiRequest, *, version: int, what: str) -> Response | None:
    """For a read of a resource at ``version``: 304 (a Response) when ``If-None-Match``
    names it, PreconditionFailed when ``If-Match`` does not; None to answer in full."""
    condition = precondition(req)
    if condition is None:
        return None
    try:
        condition.check(version, what=what)
    except PreconditionFailed:
        if condition.match is not None and version not in condition.match:
            raise  # If-Match is evaluated first, and is false
        # only If-None-Match is false: on a GET or HEAD that means "not modified"
        return Response(status_code=304, headers={"ETag": entity_tag(version)})
    return None
