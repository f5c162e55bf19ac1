"""The hostile-input catalogue, on every API surface.

Each case is one request a careless or malicious client could send: oversize and deep
bodies, XML bombs and external entities, malformed ids, overlong, invisible, bidi and
control-character names, lone surrogates and NFD spellings, SQL metacharacters, bad IPs,
CIDRs and ranges, impossible page sizes, repeated query parameters, wrong media types.
Each must be answered with the surface's own clear 4xx whose message names the problem,
and the database must be byte-for-byte what it was (row counts and a checksum of every
row of every table).

Two kinds of case: the catalogue below, written per surface, and the generic ones made
for every endpoint of the app's own table (too large, too deep, not JSON, wrong media
type, a malformed id in the path), so a route that lands later is covered at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from string import Template
from typing import Any

import pytest

from groupd.api.app import all_endpoints
from groupd.api.http import Endpoint
from invariants import assert_invariants
from surfaces import (
    PROFILES,
    Probe,
    World,
    build_world,
    fill,
    generic_probe,
    id_of,
    param_kind,
    path_params,
    route_id,
    samples_for,
    snapshot,
)

MAX_BODY = 1024 * 1024  # the hostile world's body limit (the default, 10 MB, has its own test)
DEPTH = 32  # the default max_json_depth
# Each surface's status for a malformed body: OAA answers every bad input with 405.
BAD_INPUT = {"native": 400, "eset": 400, "oaa": 405, "appviewx": 400, "scim": 400}
# A malformed id in a path: an id that names nothing (not-found), or for ESET, whose
# gateway validates path fields, INVALID_ARGUMENT (400).
BAD_ID = {"native": 404, "eset": 400, "oaa": 404, "appviewx": 404, "scim": 404}


@dataclass
class Case:
    """One hostile request. ``$static``-style placeholders name acme's objects."""

    surface: str
    name: str
    method: str
    path: str
    status: int
    says: tuple[str, ...]  # each must appear in the answer's message (case-insensitive)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False  # send without credentials (login paths)
    bug: str | None = None  # a known 5xx, reported and not yet fixed: a strict xfail

    @property
    def id(self) -> str:
        return f"{self.surface}:{self.name}"


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return Template(value).safe_substitute(ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


XML = {"Content-Type": "application/xml", "Accept": "application/json"}
TEXT = {"Content-Type": "text/plain"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<GroupRequest><agentid>$agent</agentid><grouptype>Generic Strings</grouptype>
<groupname>&lol4;</groupname><description>x</description></GroupRequest>"""
XXE_FILE = b"""<?xml version="1.0"?>
<!DOCTYPE g [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<GroupRequest><agentid>$agent</agentid><grouptype>Generic Strings</grouptype>
<groupname>&xxe;</groupname></GroupRequest>"""
XXE_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE GroupRequest SYSTEM "http://127.0.0.1:9/evil.dtd">
<GroupRequest><agentid>$agent</agentid><grouptype>IPs</grouptype>
<groupname>dtd</groupname></GroupRequest>"""
XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE g [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd"> %remote;]>
<GroupRequest><groupname>p</groupname></GroupRequest>"""
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE g [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]><GroupRequest><groupname>'
    + b"&a;" * 1000
    + b"</groupname></GroupRequest>"
)
LONG = "n" * 256
NFD_CAFE = "Cafe\u0301"  # "Café" spelled with a combining accent
HUGE_CURSOR = "azk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"  # base64 of "k" + 30 nines
SQL = "1' OR '1'='1"
SQL_PATH = "1'%20OR%20'1'='1"


def _native() -> list[Case]:
    g = "/api/v1/groups"

    def group(label: str, status: int, says: tuple[str, ...], **body: Any) -> Case:
        return Case(
            "native",
            label,
            "POST",
            g,
            status,
            says,
            json={"name": "ok", "parentId": "$static", **body},
        )

    def policy(label: str, value_type: str, value: str, says: tuple[str, ...]) -> Case:
        return Case(
            "native",
            label,
            "POST",
            g,
            400,
            says,
            json={
                "name": f"p-{label}",
                "kind": "policy",
                "valueType": value_type,
                "values": [value],
                "agentId": "$agent",
            },
        )

    return [
        group("name-overlong", 400, ("longer than 255",), name=LONG),
        group("name-control-char", 400, ("U+0007",), name="bell\u0007name"),
        group("name-nul", 400, ("NUL",), name="nul\u0000name"),
        group("name-bidi-override", 400, ("U+202E",), name="invoice\u202egpj.exe"),
        group("name-zero-width", 400, ("U+200B",), name="adm\u200bin"),
        Case(
            "native",
            "name-lone-surrogate",
            "POST",
            g,
            400,
            ("not valid JSON",),
            content=b'{"name": "x\\ud800y", "parentId": "$static"}',
            headers={"Content-Type": "application/json"},
        ),
        group("name-nfd-duplicate", 409, ("Café",), name=NFD_CAFE),
        group("name-empty", 400, ("must not be empty",), name=""),
        group("name-padded", 400, ("whitespace",), name=" padded"),
        group("description-overlong", 400, ("longer than 2000",), description="d" * 2001),
        group("parent-not-uuid", 400, ("parentId", "not-a-uuid"), parentId="not-a-uuid"),
        group("parent-sql", 400, ("parentId", "not a UUID"), parentId=SQL),
        group("unknown-field", 400, ("unknown field", "admin"), admin=True),
        group("wrong-type", 400, ("expected `str`",), name=5),
        policy("ip-invalid", "ip", "999.1.1.1", ("999.1.1.1", "not an IP address")),
        policy("ip-zone-id", "ip", "fe80::1%eth0", ("zone ids",)),
        policy("cidr-host-bits", "ip_range", "10.0.0.1/24", ("10.0.0.1/24", "CIDR")),
        policy("cidr-prefix-too-long", "ip_range", "10.0.0.0/33", ("10.0.0.0/33", "CIDR")),
        policy("range-reversed", "ip_range", "10.0.0.9-10.0.0.1", ("ends before it starts",)),
        policy("range-mixed-families", "ip_range", "10.0.0.1-::1", ("mixes IPv4 and IPv6",)),
        policy("range-garbage", "ip_range", "10.0.0.1-banana", ("not an IP range",)),
        policy("value-type-unknown", "sql", "x", ("valueType must be one of",)),
        Case("native", "path-id-sql", "GET", f"{g}/{SQL_PATH}", 404, ("no group",)),
        Case("native", "path-id-integer", "GET", "/api/v1/objects/12345", 404, ("12345",)),
        Case("native", "kind-filter-sql", "GET", f"{g}?kind=static'--", 400, ("kind",)),
        Case("native", "cursor-forged", "GET", f"{g}?cursor={SQL_PATH}", 400, ("cursor",)),
        Case("native", "limit-negative", "GET", f"{g}?limit=-5", 400, ("limit", "at least 1")),
        Case(
            "native",
            "limit-huge",
            "GET",
            f"{g}?limit=99999999999999999999",
            400,
            ("limit", "at most 1000"),
        ),
        Case("native", "limit-not-a-number", "GET", f"{g}?limit=ten", 400, ("integer",)),
        Case(
            "native",
            "limit-repeated",
            "GET",
            f"{g}?limit=1&limit=2",
            400,
            ("limit", "more than once"),
        ),
        Case(
            "native",
            "parent-filter-repeated",
            "GET",
            f"{g}?parentId=$static&parentId=$root",
            400,
            ("parentId", "more than once"),
        ),
        Case("native", "query-not-utf8", "GET", f"{g}?name=%ff%fe", 400, ("query string",)),
        Case(
            "native",
            "audit-since-garbage",
            "GET",
            "/api/v1/audit?since=yesterday",
            400,
            ("since", "ISO 8601"),
        ),
        Case(
            "native",
            "content-type-xml",
            "POST",
            g,
            415,
            ("application/json",),
            content=b"<group><name>x</name></group>",
            headers=XML,
        ),
        Case(
            "native",
            "xml-bomb-not-parsed",
            "POST",
            g,
            415,
            ("application/json",),
            content=BILLION_LAUGHS,
            headers=XML,
        ),
        Case(
            "native",
            "content-type-form",
            "POST",
            g,
            415,
            ("application/x-www-form-urlencoded",),
            content=b"name=x",
            headers=FORM,
        ),
        Case(
            "native",
            "content-type-missing",
            "POST",
            g,
            415,
            ("none",),
            content=b'{"name": "x", "parentId": "$static"}',
        ),
        Case(
            "native",
            "body-not-utf8",
            "POST",
            g,
            400,
            ("not valid JSON",),
            content=b'{"name": "\xff\xfe", "parentId": "$static"}',
            headers={"Content-Type": "application/json"},
        ),
        Case(
            "native",
            "batch-too-large",
            "POST",
            f"{g}:batchCreate",
            400,
            ("at most 10000",),
            json={"groups": [{"name": f"b{i}", "parentId": "$static"} for i in range(10_001)]},
        ),
        Case(
            "native",
            "move-under-itself",
            "POST",
            f"{g}/$static/move",
            409,
            ("itself",),
            json={"parentId": "$static"},
        ),
        Case(
            "native",
            "if-match-garbage",
            "PATCH",
            f"{g}/$static",
            400,
            ("If-Match",),
            json={"description": "x"},
            headers={"If-Match": "'; DROP TABLE groups; --"},
        ),
        Case(
            "native",
            "object-kind-unknown",
            "POST",
            "/api/v1/objects",
            400,
            ("kind",),
            json={"kind": "robot", "name": "r2", "homeGroupId": "$static"},
        ),
        Case(
            "native",
            "object-attribute-nested",
            "POST",
            "/api/v1/objects",
            400,
            ("attributes",),
            json={
                "kind": "device",
                "name": "d",
                "homeGroupId": "$static",
                "attributes": {"a": {"b": 1}},
            },
        ),
        Case(
            "native",
            "object-status-unknown",
            "PATCH",
            "/api/v1/objects/$user",
            400,
            ("status",),
            json={"status": "deleted"},
        ),
        Case(
            "native",
            "licence-units-negative",
            "POST",
            "/api/v1/licenses",
            400,
            ("totalUnits",),
            json={"product": "neg", "unitKind": "seat", "totalUnits": -1},
        ),
        Case(
            "native",
            "licence-units-huge",
            "POST",
            "/api/v1/licenses",
            400,
            ("totalUnits",),
            json={"product": "huge", "unitKind": "seat", "totalUnits": 10**30},
        ),
        Case(
            "native",
            "licence-units-int64",
            "POST",
            "/api/v1/licenses",
            400,
            ("totalUnits",),
            json={"product": "big", "unitKind": "seat", "totalUnits": 2**63},
        ),
        Case(
            "native",
            "activation-units-zero",
            "POST",
            "/api/v1/licenses/$licence/activations",
            400,
            ("units",),
            json={"objectId": "$device", "units": 0},
        ),
        Case(
            "native",
            "basic-not-base64",
            "GET",
            g,
            401,
            ("base64",),
            headers={"Authorization": "Basic !!!not-base64!!!"},
            anonymous=True,
        ),
        Case(
            "native",
            "token-grant-unknown",
            "POST",
            "/api/v1/auth/token",
            400,
            ("grant",),
            json={"grantType": "implicit"},
            anonymous=True,
        ),
        Case(
            "native",
            "token-form-field-repeated",
            "POST",
            "/api/v1/auth/token",
            400,
            ("more than once",),
            content=b"grant_type=password&grant_type=refresh_token",
            headers=FORM,
            anonymous=True,
        ),
    ]


def _eset() -> list[Case]:
    def create(label: str, status: int, says: tuple[str, ...], **group: Any) -> Case:
        return Case(
            "eset",
            label,
            "POST",
            "/v1/groups",
            status,
            says,
            json={"group": {"displayName": "ok", "parentGroupUuid": "$static", **group}},
        )

    token = "/oauth/token"
    return [
        create("name-overlong", 400, ("longer than 255",), displayName=LONG),
        create("name-control-char", 400, ("U+0007",), displayName="bell\u0007"),
        create("name-bidi-override", 400, ("U+202E",), displayName="a\u202eb"),
        create("name-zero-width", 400, ("U+200B",), displayName="a\u200bb"),
        Case(
            "eset",
            "name-lone-surrogate",
            "POST",
            "/v1/groups",
            400,
            ("not valid JSON",),
            content=b'{"group": {"displayName": "\\udc00", "parentGroupUuid": "$static"}}',
            headers={"Content-Type": "application/json"},
        ),
        create("name-nfd-duplicate", 409, ("Café",), displayName=NFD_CAFE),
        create("parent-not-uuid", 400, ("not-a-uuid",), parentGroupUuid="not-a-uuid"),
        create("parent-sql", 400, ("not a UUID",), parentGroupUuid=SQL),
        create("linked-entity-sql", 400, ("linkedEntityType",), linkedEntityType=SQL),
        create("uuid-not-uuid", 400, ("uuid",), uuid="zzz"),
        create("unknown-field", 400, ("unknown field",), role="admin"),
        create("wrong-type", 400, ("expected `str`",), displayName=["a"]),
        Case("eset", "path-id-not-uuid", "GET", "/v1/devices/not-a-uuid", 400, ("not-a-uuid",)),
        Case(
            "eset",
            "path-id-sql",
            "GET",
            f"/v1/device_groups/{SQL_PATH}/devices",
            400,
            ("1' OR '1'='1",),
        ),
        Case(
            "eset", "page-size-negative", "GET", "/v1/device_groups?pageSize=-1", 400, ("pageSize",)
        ),
        Case(
            "eset",
            "page-size-not-a-number",
            "GET",
            "/v1/device_groups?pageSize=lots",
            400,
            ("pageSize",),
        ),
        Case(
            "eset",
            "page-size-repeated",
            "GET",
            "/v1/device_groups?pageSize=1&pageSize=2",
            400,
            ("pageSize", "more than once"),
        ),
        Case(
            "eset",
            "page-token-forged",
            "GET",
            f"/v1/device_groups?pageToken={SQL_PATH}",
            400,
            ("pageToken",),
        ),
        Case(
            "eset",
            "content-type-xml",
            "POST",
            "/v1/groups",
            415,
            ("application/json",),
            content=b"<group/>",
            headers=XML,
        ),
        Case(
            "eset",
            "batch-too-large",
            "POST",
            "/v1/devices:batchImport",
            400,
            ("1000",),
            json={
                "devices": [{"displayName": f"d{i}", "groupUuid": "$static"} for i in range(1001)]
            },
        ),
        Case(
            "eset",
            "batch-units-negative",
            "POST",
            "/v1/devices:batchImport",
            400,
            ("units",),
            json={
                "devices": [
                    {
                        "displayName": "d",
                        "groupUuid": "$static",
                        "activeProducts": [{"product": "acme-product", "units": -1}],
                    }
                ]
            },
        ),
        Case(
            "eset",
            "move-under-itself",
            "POST",
            "/v1/groups/$static:move",
            400,
            ("itself",),
            json={"newParentUuid": "$static"},
        ),
        Case(
            "eset",
            "rename-empty",
            "POST",
            "/v1/groups/$static:rename",
            400,
            ("must not be empty",),
            json={"displayName": ""},
        ),
        Case(
            "eset",
            "authorization-malformed",
            "GET",
            "/v1/device_groups",
            400,
            ("authorization",),
            headers={"Authorization": "Bearer two words"},
            anonymous=True,
        ),
        Case(
            "eset",
            "token-json-body",
            "POST",
            token,
            415,
            ("application/x-www-form-urlencoded",),
            json={"grant_type": "password"},
            anonymous=True,
        ),
        Case(
            "eset",
            "token-grant-unknown",
            "POST",
            token,
            400,
            ("grant_type",),
            content=b"grant_type=implicit",
            headers=FORM,
            anonymous=True,
        ),
        Case(
            "eset",
            "token-field-repeated",
            "POST",
            token,
            400,
            ("more than once",),
            content=b"grant_type=password&grant_type=password",
            headers=FORM,
            anonymous=True,
        ),
    ]


def _oaa() -> list[Case]:
    base = "/oaa-policy/group/v1"
    json_headers = {"Accept": "application/json"}

    def create(label: str, status: int, says: tuple[str, ...], **body: Any) -> Case:
        payload = {
            "agentid": "$agent",
            "grouptype": "IPs",
            "groupname": "ok",
            "description": "",
            "values": ["10.0.0.1"],
            **body,
        }
        return Case("oaa", label, "POST", base, status, says, json=payload, headers=json_headers)

    def xml(label: str, body: bytes, says: tuple[str, ...]) -> Case:
        return Case("oaa", label, "POST", base, 405, says, content=body, headers=XML)

    return [
        xml("xml-billion-laughs", BILLION_LAUGHS, ("DTD",)),
        xml("xml-external-entity-file", XXE_FILE, ("DTD",)),
        xml("xml-external-dtd", XXE_DTD, ("DTD",)),
        xml("xml-parameter-entity", XXE_PARAMETER, ("DTD",)),
        xml("xml-quadratic-blowup", QUADRATIC, ("DTD",)),
        xml("xml-malformed", b"<GroupRequest><groupname>x</GroupRequest>", ("well-formed",)),
        xml(
            "xml-nested-field",
            b"<GroupRequest><groupname><b>x</b></groupname></GroupRequest>",
            ("groupname",),
        ),
        xml(
            "xml-nested-100000-deep",
            b"<GroupRequest><groupname>"
            + b"<a>" * 100_000
            + b"</a>" * 100_000
            + b"</groupname></GroupRequest>",
            ("groupname",),
        ),
        create("grouptype-unknown", 405, ("grouptype",), grouptype="Colors"),
        create("grouptype-sql", 405, ("grouptype",), grouptype=SQL),
        create("ip-invalid", 405, ("999.1.1.1",), values=["999.1.1.1"]),
        create("ip-zone-id", 405, ("zone ids",), values=["fe80::1%eth0"]),
        create(
            "range-cidr-host-bits", 405, ("CIDR",), grouptype="IP Ranges", values=["192.168.1.1/24"]
        ),
        create(
            "range-reversed",
            405,
            ("ends before it starts",),
            grouptype="IP Ranges",
            values=["10.0.0.9-10.0.0.1"],
        ),
        create(
            "range-mixed-families",
            405,
            ("mixes IPv4 and IPv6",),
            grouptype="IP Ranges",
            values=["10.0.0.1-::1"],
        ),
        create("name-overlong", 405, ("longer than 255",), groupname=LONG),
        create("name-bidi-override", 405, ("U+202E",), groupname="a\u202eb"),
        create("name-zero-width", 405, ("U+200B",), groupname="a\u200bb"),
        create("name-control-char", 405, ("U+001B",), groupname="esc\u001b[31m"),
        Case(
            "oaa",
            "name-lone-surrogate",
            "POST",
            base,
            405,
            ("not valid JSON",),
            content=b'{"agentid": "$agent", "grouptype": "IPs", "groupname": "\\ud834abc"}',
            headers={"Content-Type": "application/json", **json_headers},
        ),
        create("name-nfd-duplicate", 409, ("Politique-é",), groupname="Politique-e\u0301"),
        create("agentid-not-uuid", 405, ("agentid",), agentid=SQL),
        create("unknown-field", 405, ("unknown field",), owner="root"),
        Case("oaa", "list-without-agentid", "GET", base, 405, ("agentid",), headers=json_headers),
        Case(
            "oaa",
            "list-agentid-repeated",
            "GET",
            f"{base}?agentid=$agent&agentid=$agent",
            405,
            ("agentid", "more than once"),
            headers=json_headers,
        ),
        Case(
            "oaa",
            "list-grouptype-sql",
            "GET",
            f"{base}?agentid=$agent&grouptype={SQL_PATH}",
            405,
            ("grouptype",),
            headers=json_headers,
        ),
        Case(
            "oaa",
            "path-id-sql",
            "GET",
            f"{base}/{SQL_PATH}",
            404,
            ("1' OR '1'='1",),
            headers=json_headers,
        ),
        Case(
            "oaa",
            "update-value-invalid",
            "PUT",
            f"{base}/$oaa",
            405,
            ("not-an-ip",),
            json={"addvalues": ["not-an-ip"]},
            headers=json_headers,
        ),
        Case(
            "oaa",
            "accept-unsupported",
            "GET",
            f"{base}/$oaa",
            406,
            ("Accept",),
            headers={"Accept": "image/png"},
        ),
    ]


def _appviewx() -> list[Case]:
    q = "gwsource=external"

    def add(label: str, status: int, says: tuple[str, ...], payload: Any) -> Case:
        return Case(
            "appviewx",
            label,
            "POST",
            f"/avxapi/usergroup?{q}",
            status,
            says,
            json={"payload": payload},
        )

    def search(label: str, says: tuple[str, ...], **payload: Any) -> Case:
        return Case(
            "appviewx",
            label,
            "POST",
            f"/avxapi/usergroup-search?{q}",
            400,
            says,
            json={"payload": payload},
        )

    return [
        Case(
            "appviewx",
            "gwsource-missing",
            "POST",
            "/avxapi/usergroup-search",
            400,
            ("gwsource",),
            json={"payload": {}},
        ),
        Case(
            "appviewx",
            "gwsource-sql",
            "POST",
            f"/avxapi/usergroup-search?gwsource={SQL_PATH}",
            400,
            ("gwsource",),
            json={"payload": {}},
        ),
        Case(
            "appviewx",
            "gwsource-repeated",
            "POST",
            f"/avxapi/usergroup-search?{q}&gwsource=web",
            400,
            ("gwsource", "more than once"),
            json={"payload": {}},
        ),
        add("name-overlong", 400, ("longer than 255",), {"name": LONG}),
        add("name-bidi-override", 400, ("U+202E",), {"name": "a\u202eb"}),
        add("name-zero-width", 400, ("U+FEFF",), {"name": "\ufeffadmin"}),
        add("name-control-char", 400, ("U+0008",), {"name": "back\u0008space"}),
        Case(
            "appviewx",
            "name-lone-surrogate",
            "POST",
            f"/avxapi/usergroup?{q}",
            400,
            ("not valid JSON",),
            content=b'{"payload": {"name": "\\udfff"}}',
            headers={"Content-Type": "application/json"},
        ),
        add("name-nfd-duplicate", 409, ("already exists",), {"name": "E\u0301quipe"}),
        add("name-missing", 400, ("userGroupName",), {"description": "no name"}),
        add("unknown-field", 400, ("unknown field",), {"name": "x", "roles": ["admin"]}),
        search("max-size-zero", ("maxSize",), maxSize=0),
        search("max-size-huge", ("maxSize",), maxSize=10**12),
        search("start-index-negative", ("startIndex",), startIndex=-1),
        search("sort-column-sql", ("sortColumn",), sortColumn="name; DROP TABLE groups"),
        search("sort-order-unknown", ("sortOrder",), sortOrder="sideways"),
        Case(
            "appviewx",
            "update-login-missing",
            "PUT",
            f"/avxapi/user-updateUsergroups?{q}",
            400,
            ("loginName",),
            json={"payload": {"assignUserGroups": ["acme-team"]}},
        ),
        Case(
            "appviewx",
            "update-both-unassign-spellings",
            "PUT",
            f"/avxapi/user-updateUsergroups?{q}",
            400,
            ("unassignUserGroups",),
            json={
                "payload": {
                    "loginName": "acme-user",
                    "unassignUserGroups": [],
                    "unAssignUserGroups": [],
                }
            },
        ),
        Case(
            "appviewx",
            "delete-name-missing",
            "DELETE",
            f"/avxapi/userGroup?{q}",
            400,
            ("userGroupName",),
        ),
        Case(
            "appviewx",
            "delete-name-repeated",
            "DELETE",
            f"/avxapi/userGroup?{q}&userGroupName=a&userGroupName=b",
            400,
            ("userGroupName", "more than once"),
        ),
        Case(
            "appviewx",
            "semicolon-query-empty-name",
            "DELETE",
            "/avxapi/userGroup?userGroupName=;gwsource=external",
            400,
            ("userGroupName",),
        ),
        Case(
            "appviewx",
            "content-type-xml",
            "POST",
            f"/avxapi/usergroup?{q}",
            415,
            ("application/json",),
            content=b"<payload/>",
            headers=XML,
        ),
        Case(
            "appviewx",
            "gwkey-other-tenant",
            "POST",
            f"/avxapi/usergroup-search?{q}&gwkey=globex",
            401,
            ("gwkey",),
            json={"payload": {}},
        ),
        Case(
            "appviewx",
            "login-empty-username",
            "POST",
            f"/avxapi/login?{q}",
            400,
            ("Username or password",),
            headers={"username": "", "password": "x"},
            json={},
            anonymous=True,
        ),
        Case(
            "appviewx",
            "service-token-not-base64",
            "POST",
            f"/avxapi/acctmgmt-get-service-token?{q}",
            400,
            ("base64",),
            content=b"grant_type=client_credentials",
            headers={**FORM, "Authorization": "Basic %%%"},
            anonymous=True,
        ),
    ]


def _scim() -> list[Case]:
    users = "/scim/v2/Users"
    groups = "/scim/v2/Groups"
    patch_urn = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

    def query(label: str, filter_: str, says: tuple[str, ...]) -> Case:
        return Case("scim", label, "GET", f"{users}?filter={filter_}", 400, says)

    def patch(label: str, status: int, says: tuple[str, ...], *ops: Any) -> Case:
        body = {"schemas": [patch_urn], "Operations": list(ops)}
        return Case("scim", label, "PATCH", f"{groups}/$user_group", status, says, json=body)

    return [
        query("filter-syntax", "userName%20eq", ("invalid syntax",)),
        query("filter-unknown-attribute", 'nickName%20eq%20"x"', ("cannot filter on 'nickName'",)),
        query("filter-sql", f"userName%20eq%20%22{SQL_PATH}%22%20or", ("invalid syntax",)),
        query("filter-id-ordering", 'id%20gt%20"a"', ("eq or ne",)),
        Case("scim", "count-not-a-number", "GET", f"{users}?count=many", 400, ("integer",)),
        Case(
            "scim",
            "user-without-username",
            "POST",
            users,
            400,
            ("userName",),
            json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]},
        ),
        Case(
            "scim",
            "user-name-taken-ignoring-case",
            "POST",
            users,
            409,
            ("already exists",),
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "ACME-USER",
            },
        ),
        Case(
            "scim",
            "user-name-control-char",
            "POST",
            users,
            400,
            ("U+0008",),
            json={
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "back\u0008space",
            },
        ),
        patch("patch-unknown-op", 400, ("not a PATCH operation",), {"op": "move", "path": "x"}),
        patch(
            "patch-member-not-a-user",
            404,
            ("no user",),
            {"op": "add", "path": "members", "value": [{"value": "$device"}]},
        ),
        patch(
            "patch-member-filter-not-eq",
            400,
            ("value eq",),
            {"op": "remove", "path": 'members[value co "a"]'},
        ),
        patch("patch-no-operations", 400, ("operations",)),
        Case(
            "scim",
            "if-match-stale",
            "PATCH",
            f"{groups}/$user_group",
            412,
            ("version",),
            headers={"If-Match": 'W/"999"'},
            json={
                "schemas": [patch_urn],
                "Operations": [{"op": "replace", "path": "externalId", "value": "x"}],
            },
        ),
    ]


def _known_bugs() -> list[Case]:
    """5xx answers this catalogue once found (now fixed): kept as regression cases."""
    return [
        Case(
            "native",
            "cursor-beyond-64-bits",
            "GET",
            f"/api/v1/groups?cursor={HUGE_CURSOR}",
            400,
            ("cursor",),
        ),
        Case(
            "native",
            "attribute-beyond-64-bits",
            "POST",
            "/api/v1/objects",
            400,
            ("attributes",),
            json={
                "kind": "device",
                "name": "big",
                "homeGroupId": "$static",
                "attributes": {"k": 10**30},
            },
        ),
        Case(
            "native",
            "token-label-overlong",
            "POST",
            "/api/v1/tokens",
            400,
            ("label",),
            json={"label": "l" * 300},
        ),
        Case(
            "eset",
            "page-token-beyond-64-bits",
            "GET",
            f"/v1/device_groups?pageToken={HUGE_CURSOR}",
            400,
            ("pageToken",),
        ),
        Case(
            "appviewx",
            "start-index-beyond-64-bits",
            "POST",
            "/avxapi/usergroup-search?gwsource=external",
            400,
            ("startIndex",),
            json={"payload": {"startIndex": 10**30}},
        ),
    ]


def _generic() -> list[tuple[Endpoint, str]]:
    """(endpoint, kind) for every endpoint of the app's own table."""
    cases: list[tuple[Endpoint, str]] = []
    for endpoint in all_endpoints():
        if endpoint.method in ("POST", "PUT", "PATCH"):
            cases.append((endpoint, "oversize"))
            cases.append((endpoint, "oversize-chunked"))
        if endpoint.body is not None:
            cases += [(endpoint, "deep-json"), (endpoint, "not-json"), (endpoint, "text-plain")]
        if path_params(endpoint):
            cases.append((endpoint, "malformed-id"))
    return cases


CATALOGUE = _native() + _eset() + _oaa() + _appviewx() + _scim() + _known_bugs()
SURFACES = {e.surface.name for e in all_endpoints()}
CASES = [c for c in CATALOGUE if c.surface in SURFACES]
GENERIC = _generic()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    with build_world(
        request.param, tmp_path_factory.mktemp("hostile"), request, max_body_bytes=MAX_BODY
    ) as built:
        # NFC spellings the NFD cases collide with.
        built.post("/api/v1/groups", {"name": "Café", "parentId": built.ids["acme"]["static"]})
        built.post("/api/v1/groups", {"name": "Équipe", "kind": "user"})
        built.post(
            "/api/v1/groups",
            {
                "name": "Politique-é",
                "kind": "policy",
                "valueType": "ip",
                "values": ["10.0.0.1"],
                "agentId": built.agents["acme"],
            },
        )
        yield built
        assert_invariants(built.db)


def _placeholders(world: World) -> dict[str, str]:
    ids = dict(world.ids["acme"])
    ids["root"] = world.tenants["acme"].root_id
    ids["agent"] = world.agents["acme"]
    ids["oaa"] = world.oaa_ids.get("acme", "")
    return ids


def _send(world: World, surface: str, probe: Probe, *, anonymous: bool = False) -> Any:
    profile = PROFILES[surface]
    if not anonymous:
        for name, value in profile.credentials(world, "acme", "admin").items():
            probe.headers.setdefault(name, value)
    before = snapshot(world.db)
    response = probe.send(world.client)
    after = snapshot(world.db)
    changed = sorted(t for t in before if before[t] != after[t])
    return response, changed


def _check(
    world: World,
    surface: str,
    response: Any,
    changed: list[str],
    status: int,
    says: tuple[str, ...],
    what: str,
) -> None:
    profile = PROFILES[surface]
    assert response.status_code == status, (
        f"{what}: expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    assert profile.error_form(response), f"{what}: not the surface's error form: {response.text}"
    message = profile.message(response).lower()
    missing = [s for s in says if s.lower() not in message]
    assert not missing, f"{what}: the message does not say {missing}: {message[:500]}"
    assert not changed, f"{what} changed the tables {changed}"


def test_the_catalogue_covers_every_surface_with_25_cases() -> None:
    per_surface = {s: len([c for c in CASES if c.surface == s and not c.bug]) for s in SURFACES}
    generic = {s: len([g for g in GENERIC if g[0].surface.name == s]) for s in SURFACES}
    for surface in SURFACES:
        assert per_surface[surface] + generic[surface] >= 25, (surface, per_surface, generic)
    assert len(CASES) >= 25


def _params(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            c, id=c.id, marks=[pytest.mark.xfail(strict=True, reason=c.bug)] if c.bug else []
        )
        for c in cases
    ]


@pytest.mark.parametrize("case", _params(CASES))
def test_hostile_case(world: World, case: Case) -> None:
    ids = _placeholders(world)
    probe = Probe(
        case.method,
        _fill(case.path, ids),
        headers=dict(case.headers),
        json=_fill(case.json, ids),
        content=_fill(case.content.decode("utf-8", "surrogateescape"), ids).encode(
            "utf-8", "surrogateescape"
        )
        if case.content is not None
        else None,
    )
    response, changed = _send(world, case.surface, probe, anonymous=case.anonymous)
    _check(world, case.surface, response, changed, case.status, case.says, case.id)


def _deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize(
    ("endpoint", "kind"), GENERIC, ids=[f"{route_id(e)}-{kind}" for e, kind in GENERIC]
)
def test_generic_hostile_case(world: World, endpoint: Endpoint, kind: str) -> None:
    surface = endpoint.surface.name
    profile = PROFILES[surface]
    if kind == "malformed-id":
        # The route's sample request (a valid body), with every path id malformed.
        (probe, *_) = samples_for(world, endpoint, "acme", "acme") or [
            generic_probe(world, endpoint, "acme")
        ]
        probe.path = fill(endpoint.path, {p: "not-a-uuid" for p in path_params(endpoint)})
    else:
        values = {p: id_of(world, "acme", param_kind(endpoint, p)) for p in path_params(endpoint)}
        probe = Probe(
            endpoint.method, fill(endpoint.path, values), dict(profile.query), dict(profile.headers)
        )
    json_type = {"Content-Type": "application/json"}
    if kind == "oversize":
        probe.content, probe.headers = b"x" * (MAX_BODY + 1), {**probe.headers, **json_type}
        status, says = 413, ("larger than",)
    elif kind == "oversize-chunked":
        # No Content-Length: the limit must hold while the body streams in.
        body = b" " * (MAX_BODY + 1)
        probe.headers.update(json_type)
        response, changed = _send_stream(world, surface, probe, body)
        _check(
            world, surface, response, changed, 413, ("larger than",), f"{route_id(endpoint)} {kind}"
        )
        return
    elif kind == "deep-json":
        probe.content, probe.headers = _deep(DEPTH + 8), {**probe.headers, **json_type}
        status, says = BAD_INPUT[surface], (f"nested deeper than {DEPTH}",)
    elif kind == "not-json":
        probe.content, probe.headers = b"{'single': 'quotes'}", {**probe.headers, **json_type}
        status, says = BAD_INPUT[surface], ("not valid JSON",)
    elif kind == "text-plain":
        probe.content, probe.headers = b"hello", {**probe.headers, **TEXT}
        status, says = 415, ("text/plain",)
    else:
        status, says = BAD_ID[surface], ("not-a-uuid",)
    anonymous = endpoint.role is None
    response, changed = _send(world, surface, probe, anonymous=anonymous)
    _check(world, surface, response, changed, status, says, f"{route_id(endpoint)} {kind}")


def _send_stream(world: World, surface: str, probe: Probe, body: bytes) -> Any:
    profile = PROFILES[surface]
    for name, value in profile.credentials(world, "acme", "admin").items():
        probe.headers.setdefault(name, value)
    before = snapshot(world.db)
    response = world.client.request(
        probe.method,
        probe.path,
        params=probe.query or None,
        headers=probe.headers,
        content=_chunks(body),
    )
    after = snapshot(world.db)
    return response, sorted(t for t in before if before[t] != after[t])
