"""What the OpenAPI document says about text the services check (``groupd.values``).

A body field typed ``Name`` or ``Description`` is documented by a shared component
(``#/components/schemas/Name``) whose pattern is built from the same Unicode categories
``values.clean_name`` refuses, so every string the document allows is one the server
takes (decision record 0022). The services still do the checking, with their own
messages; these types only document.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Annotated, Any

import msgspec

from groupd import values

RULE = "x-groupd-text"


def _marked(rule: str) -> Any:
    return msgspec.Meta(extra_json_schema={RULE: rule})


Name = Annotated[str, _marked("Name")]
Description = Annotated[str, _marked("Description")]
EntityType = Annotated[str, _marked("EntityType")]
AttributeValue = Annotated[str, _marked("AttributeValue")]
# A value of a policy group whose valueType the request does not say (a PATCH).
PolicyValue = Annotated[str, _marked("PolicyString")]


# The characters the document names: Latin with its extensions (U+0020-U+024F). The
# server takes any visible character of any script; the document states this subset
# because generating test data from a class of more scripts is seconds slower per field
# (decision record 0022), and a client that keeps to the document is never refused.
DOCUMENTED_BLOCKS = ((0x20, 0x24F),)


@cache
def _char_class(*, spaces: bool, extra: str = "") -> str:
    """A regex character class body: characters of ``DOCUMENTED_BLOCKS`` that ``values``
    accepts in text (no control, format, surrogate, private-use or unassigned ones),
    without those NFC turns into longer sequences; with or without whitespace."""
    ranges: list[tuple[int, int]] = []
    points = [*(p for low, high in DOCUMENTED_BLOCKS for p in range(low, high + 1))]
    points += sorted(ord(char) for char in extra)
    for point in points:
        char = chr(point)
        accepted = (
            unicodedata.category(char) not in values.FORBIDDEN_CATEGORIES
            and len(unicodedata.normalize("NFC", char)) == 1
            and (spaces or not char.isspace())
        ) or char in extra
        if not accepted:
            continue
        if ranges and ranges[-1][1] == point - 1:
            ranges[-1] = (ranges[-1][0], point)
        else:
            ranges.append((point, point))
    return "".join(
        f"\\u{low:04x}" if low == high else f"\\u{low:04x}-\\u{high:04x}" for low, high in ranges
    )


IPV4 = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# What each valueType's values look like (``values.PARSERS``). An IP range documents its
# two exact forms for IPv4: a /24 network, or an address as a /32.
VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "user_id": {"$ref": "#/components/schemas/UserId"},
    "string": {"$ref": "#/components/schemas/PolicyString"},
    "action": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_.:\\-]{0,127}$"},
    "ip": {"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    "ip_range": {
        "type": "string",
        "pattern": f"^(({IPV4}\\.){{3}}0/24|({IPV4}\\.){{3}}{IPV4}/32)$",
    },
}


@cache
def components() -> dict[str, dict[str, Any]]:
    inner, edge = _char_class(spaces=True), _char_class(spaces=False)
    return {
        "Name": {
            "type": "string",
            "minLength": 1,
            "maxLength": values.NAME_MAX,
            "pattern": f"^[{edge}]([{inner}]*[{edge}])?$",
            "description": "1-255 visible characters, not padded with spaces",
        },
        "AttributeValue": {
            "type": "string",
            "maxLength": 1024,
            "pattern": f"^[{_char_class(spaces=True, extra=chr(10) + chr(9))}]*$",
        },
        "Description": {
            "type": "string",
            "maxLength": values.DESCRIPTION_MAX,
            "pattern": f"^[{_char_class(spaces=True, extra=chr(10) + chr(9))}]*$",
        },
        "EntityType": {
            "type": "string",
            "minLength": 1,
            "maxLength": 32,
            "pattern": f"^[{edge}]([{inner}]*[{edge}])?$",
        },
        # ``services.objects``: at most 64 attributes; keys are names; values 64-bit
        # integers, numbers, booleans, null or text of up to 1024 characters.
        "Attributes": {
            "type": "object",
            "maxProperties": 64,
            "propertyNames": {"$ref": "#/components/schemas/Name"},
            "additionalProperties": {
                "anyOf": [
                    {"$ref": "#/components/schemas/AttributeValue"},
                    {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
                    {"type": "number"},
                    {"type": "boolean"},
                    {"type": "null"},
                ]
            },
        },
        "PolicyString": {
            "type": "string",
            "minLength": 1,
            "maxLength": values.VALUE_MAX,
            "pattern": f"^[{inner}]+$",
        },
        "UserId": {
            "type": "string",
            "minLength": 1,
            "maxLength": values.NAME_MAX,
            "pattern": f"^[{edge}]+$",
        },
    }


def apply(document: Any) -> Any:
    """``document`` with every marked schema replaced by a reference to its component."""
    if isinstance(document, dict):
        rule = document.get(RULE)
        if rule is not None:
            return {"$ref": f"#/components/schemas/{rule}"}
        return {key: apply(value) for key, value in document.items()}
    if isinstance(document, list):
        return [apply(value) for value in document]
    return document
