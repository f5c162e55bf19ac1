"""OAA's wire: the GroupResponse family, JSON and XML both ways, content negotiation.

``Accept`` picks the answer's format (JSON unless the client prefers XML), ``Content-Type``
the body's. XML is read only through defusedxml with DTDs, entities and external
references forbidden, so nothing in a body is ever expanded or fetched. Lists are written
as repeated elements named after the field (``<values>a</values><values>b</values>``,
``<groups>...</groups><groups>...</groups>``), which is how JAXB, the Java binding behind
Oracle's service, writes a list without a wrapper.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar

import defusedxml
import defusedxml.ElementTree as SafeET
import msgspec
from msgspec import UNSET, UnsetType
from starlette.datastructures import Headers
from starlette.responses import Response

from groupd.api.http import ApiRequest, json_response
from groupd.api.text_rules import VALUE_SCHEMAS, Description, Name
from groupd.errors import InvalidInput, NotAcceptable, UnsupportedMediaType

T = TypeVar("T")

COLLECTION = "/oaa-policy/group/v1"
ITEM = COLLECTION + "/{groupid}"
# What an ``Allow`` header names on a 405 (HTTP requires one; OAA answers 405 for bad input).
ALLOWED_METHODS = {COLLECTION: "GET, POST", ITEM: "GET, PUT, DELETE"}

GROUP_RESPONSE = "GroupResponse"
ALL_GROUP_RESPONSE = "AllGroupResponse"
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


# answers --------------------------------------------------------------------------------
class OaaGroup(msgspec.Struct, kw_only=True):
    """A group as OAA shows it; fields in the order of Oracle's samples."""

    groupid: str
    agentid: str | UnsetType = UNSET  # groups made through the native API may have none
    grouptype: str
    groupname: str
    description: str
    values: list[str] | UnsetType = UNSET  # left out of the answer to a delete


class OaaGroupResponse(msgspec.Struct, kw_only=True):
    """``GroupResponse``: the answer about one group, and the body of every error."""

    status: str
    message: str
    groupid: str | UnsetType = UNSET
    group: OaaGroup | UnsetType = UNSET


class OaaAllGroupResponse(msgspec.Struct, kw_only=True):
    """``AllGroupResponse``: an agent's groups."""

    status: str
    message: str
    groups: list[OaaGroup] | UnsetType = UNSET


# requests -------------------------------------------------------------------------------
# Oracle types the values as "long, string, integer": whole numbers are read as their
# decimal text and then validated like any other value.
WireValues = list[str | int] | None


GROUP_TYPE_VALUES = {
    "User ID": "user_id",
    "Generic Strings": "string",
    "Actions": "action",
    "IP Ranges": "ip_range",
    "IPs": "ip",
}
AgentId = Annotated[str, msgspec.Meta(extra_json_schema={"format": "uuid"})]
GroupType = Annotated[str, msgspec.Meta(extra_json_schema={"enum": list(GROUP_TYPE_VALUES)})]


class OaaGroupCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``POST /oaa-policy/group/v1``. ``null`` counts as absent."""

    agentid: AgentId
    grouptype: GroupType
    groupname: Name
    description: Description | None = None
    values: WireValues = None
    groupid: str | None = None  # Oracle's schema lists it; the server makes the id

    # The values each group type takes (``values.PARSERS``), one variant per type.
    OPENAPI_RULES: ClassVar[dict[str, Any]] = {
        "anyOf": [
            {
                "properties": {
                    "grouptype": {"const": name},
                    "values": {
                        "anyOf": [
                            {"type": "null"},
                            {"type": "array", "items": VALUE_SCHEMAS[value_type]},
                        ]
                    },
                }
            }
            for name, value_type in GROUP_TYPE_VALUES.items()
        ]
    }


class OaaGroupUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of ``PUT /oaa-policy/group/v1/{groupid}``. ``null`` counts as absent."""

    groupname: Name | None = None
    description: Description | None = None
    addvalues: WireValues = None
    removevalues: WireValues = None


# negotiation ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Format:
    kind: str  # "json" | "xml"
    media_type: str


JSON = Format("json", "application/json")
XML = Format("xml", "application/xml")
# In order of preference when the client rates several equally (``*/*``: JSON).
_OFFERS = (JSON, XML, Format("xml", "text/xml"))


def _accept_ranges(header: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value.strip())
                except ValueError:
                    quality = 0.0  # an unreadable weight accepts nothing
        ranges.append((media.lower(), quality))
    return ranges


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> float:
    """The weight of the most specific range matching ``media_type`` (RFC 9110 12.5.1)."""
    kind = media_type.split("/")[0]
    best_specificity, quality = -1, 0.0
    for media, weight in ranges:
        if media == media_type:
            specificity = 2
        elif media == f"{kind}/*":
            specificity = 1
        elif media == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity:
            best_specificity, quality = specificity, weight
        elif specificity == best_specificity:
            quality = max(quality, weight)
    return quality


def answer_format(headers: Headers) -> Format:
    """The format the client accepts best; JSON without ``Accept``; NotAcceptable (406)
    when it accepts neither JSON nor XML."""
    header = ", ".join(headers.getlist("accept")).strip()
    if not header:
        return JSON
    ranges = _accept_ranges(header)
    best, best_quality = None, 0.0
    for offer in _OFFERS:
        quality = _quality(offer.media_type, ranges)
        if quality > best_quality:
            best, best_quality = offer, quality
    if best is None:
        raise NotAcceptable(
            f"Accept '{header}' allows neither application/json nor application/xml"
        )
    return best


def body_format(headers: Headers) -> str:
    """``json`` or ``xml`` from ``Content-Type``; UnsupportedMediaType (415) otherwise."""
    media = headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media in ("application/xml", "text/xml") or media.endswith("+xml"):
        return "xml"
    raise UnsupportedMediaType(
        f"the body must be application/json or application/xml, not '{media or 'none'}'"
    )


# reading bodies -------------------------------------------------------------------------
def decode_body(req: ApiRequest, kind: type[T], *, list_fields: frozenset[str]) -> T:
    """The body as ``kind``, from JSON or XML; InvalidInput naming what is wrong.

    ``list_fields`` are the fields an XML body gives as repeated elements.
    """
    if body_format(req.headers) == "json":
        return req.decode(kind)
    fields = read_xml_fields(req.body, list_fields=list_fields)
    try:
        return msgspec.convert(fields, kind)
    except msgspec.ValidationError as error:
        raise InvalidInput(f"invalid body: {error}") from None


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_xml(body: bytes) -> ET.Element:
    """Parse with every expansion refused: a DTD, an entity declaration or an external
    reference makes the body invalid before anything is expanded or fetched."""
    if not body.strip():
        raise InvalidInput("an XML body is required")
    try:
        root: ET.Element = SafeET.fromstring(
            body, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DTDForbidden:
        raise InvalidInput(
            "the XML body declares a DTD (<!DOCTYPE>); DTDs, entities and external "
            "references are not accepted"
        ) from None
    except defusedxml.EntitiesForbidden:
        raise InvalidInput("the XML body declares entities; they are not accepted") from None
    except defusedxml.ExternalReferenceForbidden:
        raise InvalidInput(
            "the XML body refers to an external resource; it is not accepted"
        ) from None
    except ET.ParseError as error:
        raise InvalidInput(f"the body is not well-formed XML: {error}") from None
    return root


def read_xml_fields(body: bytes, *, list_fields: frozenset[str]) -> dict[str, Any]:
    """The root's child elements as a flat mapping: text for scalar fields, a list of
    texts for ``list_fields``. The root's own name is not checked (Oracle does not
    document it); anything but text in a field is refused."""
    root = parse_xml(body)
    if (root.text or "").strip():
        raise InvalidInput("the XML root must hold elements, not text")
    fields: dict[str, Any] = {}
    for child in root:
        name = _local_name(child.tag)
        if len(child):
            raise InvalidInput(f"<{name}> must hold text, not elements", field=name)
        if (child.tail or "").strip():
            raise InvalidInput(f"text after <{name}> is outside any element", field=name)
        text = child.text or ""
        if name in list_fields:
            fields.setdefault(name, []).append(text)
        elif name in fields:
            raise InvalidInput(f"<{name}> is given more than once", field=name)
        else:
            fields[name] = text
    return fields


# writing answers ------------------------------------------------------------------------
def _append(parent: ET.Element, mapping: dict[str, Any]) -> None:
    for name, value in mapping.items():
        for item in value if isinstance(value, list) else [value]:
            child = ET.SubElement(parent, name)
            if isinstance(item, dict):
                _append(child, item)
            else:
                child.text = str(item)


def xml_document(root: str, payload: msgspec.Struct) -> bytes:
    """``payload`` as an XML document under ``root``, elements in field order."""
    element = ET.Element(root)
    _append(element, msgspec.to_builtins(payload))
    return XML_DECLARATION + ET.tostring(element, encoding="unicode").encode("utf-8")


def render(
    payload: OaaGroupResponse | OaaAllGroupResponse,
    answer: Format,
    status: int,
    *,
    headers: dict[str, str] | None = None,
) -> Response:
    """The answer in the negotiated format; the XML root is the payload's OAA name."""
    if answer.kind == "xml":
        root = ALL_GROUP_RESPONSE if isinstance(payload, OaaAllGroupResponse) else GROUP_RESPONSE
        return Response(
            xml_document(root, payload),
            status_code=status,
            headers=headers,
            media_type=answer.media_type,
        )
    return json_response(payload, status, headers=headers, media_type=answer.media_type)
