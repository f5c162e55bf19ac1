"""Oracle Advanced Authentication's policy groups: the seed replayed, CRUD in JSON and XML,
credentials, content negotiation, errors, and the same data as the native API."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
import xml.etree.ElementTree as ET
from typing import Any

import defusedxml.ElementTree as SafeET
from sqlalchemy import select, text
from starlette.testclient import TestClient

from conftest import SNAPSHOT_TABLES, Caller, TenantFixture
from groupd.store.db import Database
from groupd.store.models import Group
from invariants import assert_invariants

BASE = "/oaa-policy/group/v1"
AGENT = "dede64d3-1d6a-42e9-89e1-714e88f8967c"
GROUP_ID = re.compile(r"[1-9][0-9]*_[0-9a-f]{64}")

# The seed's samples (003_cd99b517083b0407.txt), verbatim.
SEED_JSON = """{
    "status": "200",
    "message": "Group deleted",
    "groupid": "140_b6b25bc75ffae259297e85b5b0a82483bc4e806dd8c7e278a00a134a0474a608",
    "group": {
        "groupid": "140_b6b25bc75ffae259297e85b5b0a82483bc4e806dd8c7e278a00a134a0474a608",
        "agentid": "dede64d3-1d6a-42e9-89e1-714e88f8967c",
        "grouptype": "Actions",
        "groupname": "FactorRuleGrp2",
        "description": "Group to set factors"
    }
}"""
SEED_XML = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
 <GroupResponse>
     <status>200</status>
     <message>Group deleted</message>
     <groupid>140_b6b25bc75ffae259297e85b5b0a82483bc4e806dd8c7e278a00a134a0474a608</groupid>
     <group>
         <groupid>140_b6b25bc75ffae259297e85b5b0a82483bc4e806dd8c7e278a00a134a0474a608</groupid>
         <agentid>dede64d3-1d6a-42e9-89e1-714e88f8967c</agentid>
         <grouptype>Actions</grouptype>
         <groupname>FactorRuleGrp2</groupname>
         <description>Group to set factors</description>
     </group>
 </GroupResponse>"""
XML_HEADERS = {"Content-Type": "application/xml", "Accept": "application/xml"}


# helpers --------------------------------------------------------------------------------
def token_basic(caller: Caller) -> dict[str, str]:
    """HTTP Basic with the caller's API token as the password: OAA's scheme, without an
    argon2 check on every request (the password path is covered by the seed and auth
    tests)."""
    raw = base64.b64encode(f"{caller.username}:{caller.token}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def table_counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {
            t: connection.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
            for t in SNAPSHOT_TABLES
        }


def shape(value: Any) -> Any:
    """Keys in order and value types, recursively: what 'the same structure' means."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(item) for item in value]
    return type(value).__name__


def xml_shape(element: ET.Element) -> Any:
    """Element names in document order, recursively; leaves are marked as text."""
    children = list(element)
    if not children:
        return (element.tag, "text")
    return (element.tag, [xml_shape(child) for child in children])


def parse_answer(response: Any) -> ET.Element:
    assert response.headers["content-type"].startswith("application/xml"), response.headers
    root: ET.Element = SafeET.fromstring(response.content, forbid_dtd=True)
    return root


def xml_body(root: str, **fields: Any) -> bytes:
    element = ET.Element(root)
    for name, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            ET.SubElement(element, name).text = item
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)


def xml_values(group: ET.Element, name: str = "values") -> list[str]:
    return [item.text or "" for item in group.findall(name)]


def create_json(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"agentid": AGENT, "grouptype": "Actions", "description": "", "values": []}
    payload.update(body)
    response = client.post(BASE, json=payload, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def native_policy_group(client: TestClient, tenant: TenantFixture, name: str) -> dict[str, Any]:
    listed = client.get(
        "/api/v1/groups", params={"kind": "policy", "name": name}, headers=tenant.viewer.headers
    )
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert len(items) == 1, items
    return items[0]  # type: ignore[no-any-return]


# the seed, replayed ----------------------------------------------------------------------
def test_seed_delete_in_json_answers_like_the_sample(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    basic = acme.editor.basic
    created = create_json(
        client,
        basic,
        groupname="FactorRuleGrp2",
        description="Group to set factors",
        values=["deny", "allow"],
    )
    groupid = created["groupid"]
    # curl --location --request DELETE '<PolicyUrl>/oaa-policy/group/v1/<id>' \
    #      --header 'Authorization: Basic ...'
    response = client.delete(f"{BASE}/{groupid}", headers=basic)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    sample = json.loads(SEED_JSON)
    assert shape(body) == shape(sample)
    assert body["status"] == "200" and body["message"] == "Group deleted"
    assert body["groupid"] == body["group"]["groupid"] == groupid
    assert GROUP_ID.fullmatch(groupid)
    assert {k: v for k, v in body["group"].items() if k != "groupid"} == {
        k: v for k, v in sample["group"].items() if k != "groupid"
    }
    assert client.get(f"{BASE}/{groupid}", headers=basic).status_code == 404
    assert client.get(BASE, params={"agentid": AGENT}, headers=basic).json()["groups"] == []
    assert_invariants(db)


def test_seed_delete_in_xml_answers_like_the_sample(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    basic = acme.editor.basic
    created = create_json(
        client,
        basic,
        groupname="FactorRuleGrp2",
        description="Group to set factors",
        values=["deny"],
    )
    groupid = created["groupid"]
    # The same call with --header 'Content-Type: application/xml'
    # --header 'Accept: application/xml' (and no body).
    response = client.delete(f"{BASE}/{groupid}", headers={**basic, **XML_HEADERS})
    assert response.status_code == 200, response.text
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>')
    answer = parse_answer(response)
    sample = SafeET.fromstring(SEED_XML.encode(), forbid_dtd=True)
    assert xml_shape(answer) == xml_shape(sample)
    assert answer.findtext("status") == "200"
    assert answer.findtext("message") == "Group deleted"
    assert answer.findtext("groupid") == answer.findtext("group/groupid") == groupid
    for name in ("agentid", "grouptype", "groupname", "description"):
        assert answer.findtext(f"group/{name}") == sample.findtext(f"group/{name}")
    assert client.get(f"{BASE}/{groupid}", headers=basic).status_code == 404
    assert_invariants(db)


# create, read, update, list ------------------------------------------------------------
def test_crud_in_json(client: TestClient, acme: TenantFixture, db: Database) -> None:
    basic = token_basic(acme.editor)
    response = client.post(
        BASE,
        headers=basic,
        json={
            "agentid": AGENT.upper(),
            "grouptype": "IP Ranges",
            "groupname": "Offices",
            "description": "office networks",
            "values": ["10.0.0.1 - 10.0.0.255", "192.168.0.0/16", "10.0.0.1-10.0.0.255"],
        },
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert list(body) == ["status", "message", "groupid", "group"]
    assert body["status"] == "201" and body["message"] == "Group is created"
    groupid = body["groupid"]
    assert response.headers["location"] == f"{BASE}/{groupid}"
    assert body["group"] == {
        "groupid": groupid,
        "agentid": AGENT,
        "grouptype": "IP Ranges",
        "groupname": "Offices",
        "description": "office networks",
        "values": ["10.0.0.1-10.0.0.255", "192.168.0.0/16"],
    }
    got = client.get(f"{BASE}/{groupid}", headers=token_basic(acme.viewer))
    assert got.status_code == 200
    assert got.json() == {**body, "status": "200", "message": "Group information"}

    updated = client.put(
        f"{BASE}/{groupid}",
        headers=basic,
        json={
            "groupname": "Office ranges",
            "description": "all offices",
            "addvalues": ["172.16.0.0/12"],
            "removevalues": ["192.168.0.0/16", "1.1.1.1-1.1.1.2"],
        },
    )
    assert updated.status_code == 200, updated.text
    group = updated.json()["group"]
    assert updated.json()["message"] == "Group is updated"
    assert group["groupid"] == groupid  # stable across a rename
    assert (group["groupname"], group["description"]) == ("Office ranges", "all offices")
    assert group["values"] == ["10.0.0.1-10.0.0.255", "172.16.0.0/12"]
    # Fields left out (or null) are kept.
    kept = client.put(f"{BASE}/{groupid}", headers=basic, json={"description": None})
    assert kept.status_code == 200 and kept.json()["group"] == group

    other = create_json(
        client, basic, groupname="Blocked", grouptype="IPs", values=["2001:DB8::1", "10.1.2.3"]
    )
    assert other["group"]["values"] == ["2001:db8::1", "10.1.2.3"]
    create_json(client, basic, groupname="Elsewhere", agentid=str(uuid.uuid4()))
    listed = client.get(BASE, params={"agentid": AGENT}, headers=basic)
    assert listed.status_code == 200
    assert list(listed.json()) == ["status", "message", "groups"]
    assert listed.json()["status"] == "200"
    assert listed.json()["message"] == "Groups information"
    assert [g["groupname"] for g in listed.json()["groups"]] == ["Office ranges", "Blocked"]
    only_ips = client.get(BASE, params={"agentid": AGENT, "grouptype": "IPs"}, headers=basic)
    assert [g["groupid"] for g in only_ips.json()["groups"]] == [other["groupid"]]
    both = client.get(
        BASE, params={"agentid": AGENT, "grouptype": "IPs, IP Ranges,Actions"}, headers=basic
    )
    assert len(both.json()["groups"]) == 2
    assert_invariants(db)


def test_crud_in_xml(client: TestClient, acme: TenantFixture, db: Database) -> None:
    basic = {**token_basic(acme.editor), **XML_HEADERS}
    response = client.post(
        BASE,
        headers=basic,
        content=xml_body(
            "group",
            agentid=AGENT,
            grouptype="User ID",
            groupname="Managers",
            description="Group for Managers",
            values=["manager1", "manager2", "manager1"],
        ),
    )
    assert response.status_code == 201, response.text
    answer = parse_answer(response)
    groupid = answer.findtext("groupid")
    assert groupid is not None and GROUP_ID.fullmatch(groupid)
    assert xml_shape(answer) == (
        "GroupResponse",
        [
            ("status", "text"),
            ("message", "text"),
            ("groupid", "text"),
            (
                "group",
                [
                    ("groupid", "text"),
                    ("agentid", "text"),
                    ("grouptype", "text"),
                    ("groupname", "text"),
                    ("description", "text"),
                    ("values", "text"),
                    ("values", "text"),
                ],
            ),
        ],
    )
    assert answer.findtext("status") == "201"
    assert answer.findtext("message") == "Group is created"
    assert xml_values(answer.find("group")) == ["manager1", "manager2"]  # type: ignore[arg-type]

    got = parse_answer(client.get(f"{BASE}/{groupid}", headers=basic))
    assert got.findtext("message") == "Group information"
    assert got.findtext("group/groupname") == "Managers"

    updated = client.put(
        f"{BASE}/{groupid}",
        headers=basic,
        content=xml_body(
            "group",
            groupname="Managers EU",
            addvalues=["manager3", "manager4"],
            removevalues=["manager1", "nobody"],
        ),
    )
    assert updated.status_code == 200, updated.text
    group = parse_answer(updated).find("group")
    assert group is not None
    assert group.findtext("groupname") == "Managers EU"
    assert group.findtext("description") == "Group for Managers"
    assert xml_values(group) == ["manager2", "manager3", "manager4"]

    empty = client.post(
        BASE,
        headers=basic,
        content=xml_body(
            "group", agentid=AGENT, grouptype="Generic Strings", groupname="Nothing yet"
        ),
    )
    assert empty.status_code == 201, empty.text
    listed = client.get(BASE, params={"agentid": AGENT}, headers=basic)
    root = parse_answer(listed)
    assert root.tag == "AllGroupResponse"
    assert [child.tag for child in root] == ["status", "message", "groups", "groups"]
    assert root.findtext("message") == "Groups information"
    assert [g.findtext("groupname") for g in root.findall("groups")] == [
        "Managers EU",
        "Nothing yet",
    ]
    assert xml_values(root.findall("groups")[1]) == []
    assert_invariants(db)


def test_values_may_be_numbers_and_null_means_absent(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    # Oracle types values as "long, string, integer": numbers count as their decimal text.
    created = create_json(
        client,
        token_basic(acme.editor),
        grouptype="User ID",
        groupname="Numbers",
        description=None,
        values=[1001, "1002", 1001],
    )
    assert created["group"]["values"] == ["1001", "1002"]
    assert created["group"]["description"] == ""
    refused = client.post(
        BASE,
        headers=token_basic(acme.editor),
        json={"agentid": AGENT, "grouptype": "User ID", "groupname": "Floats", "values": [1.5]},
    )
    assert refused.status_code == 405
    assert "values[0]" in refused.json()["message"]
    assert_invariants(db)


# one data set, two APIs -----------------------------------------------------------------
def test_native_api_and_oaa_see_the_same_groups(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    created = create_json(
        client, token_basic(acme.editor), groupname="Factors", values=["otp", "push"]
    )
    native = native_policy_group(client, acme, "Factors")
    assert native["valueType"] == "action"
    assert native["values"] == ["otp", "push"]
    assert native["agentId"] == AGENT
    assert native["parentId"] is None
    # The groupid's digest is the SHA-256 of the native UUID.
    digest = hashlib.sha256(native["id"].encode()).hexdigest()
    assert created["groupid"].endswith(f"_{digest}")

    patched = client.patch(
        f"/api/v1/groups/{native['id']}", json={"values": ["sms"]}, headers=acme.editor.headers
    )
    assert patched.status_code == 200, patched.text
    seen = client.get(f"{BASE}/{created['groupid']}", headers=token_basic(acme.viewer)).json()
    assert seen["group"]["values"] == ["sms"]

    client.put(
        f"{BASE}/{created['groupid']}",
        headers=token_basic(acme.editor),
        json={"addvalues": ["email"]},
    )
    native_after = client.get(f"/api/v1/groups/{native['id']}", headers=acme.viewer.headers)
    assert native_after.json()["values"] == ["sms", "email"]

    made_natively = client.post(
        "/api/v1/groups",
        headers=acme.editor.headers,
        json={
            "name": "Native IPs",
            "kind": "policy",
            "valueType": "ip",
            "values": ["10.0.0.1"],
            "agentId": AGENT,
        },
    )
    assert made_natively.status_code == 201, made_natively.text
    listed = client.get(
        BASE, params={"agentid": AGENT, "grouptype": "IPs"}, headers=token_basic(acme.viewer)
    ).json()["groups"]
    assert [(g["groupname"], g["values"]) for g in listed] == [("Native IPs", ["10.0.0.1"])]

    deleted = client.delete(f"{BASE}/{created['groupid']}", headers=token_basic(acme.editor))
    assert deleted.status_code == 200
    assert (
        client.get(f"/api/v1/groups/{native['id']}", headers=acme.viewer.headers).status_code == 404
    )
    # The name is free again at once.
    create_json(client, token_basic(acme.editor), groupname="Factors")
    assert_invariants(db)


def test_groupid_names_one_group_for_its_life(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    basic = token_basic(acme.editor)
    first = create_json(client, basic, groupname="Once")["groupid"]
    renamed = client.put(f"{BASE}/{first}", headers=basic, json={"groupname": "Twice"})
    assert renamed.json()["groupid"] == first
    assert client.delete(f"{BASE}/{first}", headers=basic).status_code == 200
    second = create_json(client, basic, groupname="Twice")["groupid"]
    assert second != first
    # Even when the database hands the key out again (SQLite), the old id names nothing.
    assert client.get(f"{BASE}/{first}", headers=basic).status_code == 404
    assert client.get(f"{BASE}/{second}", headers=basic).status_code == 200
    assert_invariants(db)


# credentials ----------------------------------------------------------------------------
def test_basic_credentials_only(client: TestClient, acme: TenantFixture, db: Database) -> None:
    def basic(username: str, password: str) -> dict[str, str]:
        raw = base64.b64encode(f"{username}:{password}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}

    for headers in (
        {},
        basic(acme.viewer.username, "wrong password"),
        acme.viewer.headers,  # a Bearer token: OAA speaks Basic only
        {"Authorization": "Basic !!!"},
    ):
        response = client.get(BASE, params={"agentid": AGENT}, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"].startswith("Basic ")
        assert response.json()["status"] == "401"
        assert response.json()["message"].startswith("Unauthorized")
    in_xml = client.get(BASE, params={"agentid": AGENT}, headers={"Accept": "application/xml"})
    assert in_xml.status_code == 401 and parse_answer(in_xml).findtext("status") == "401"

    # An API token is accepted as the password.
    with_token = client.get(
        BASE, params={"agentid": AGENT}, headers=basic(acme.viewer.username, acme.viewer.token)
    )
    assert with_token.status_code == 200
    before = table_counts(db)
    forbidden = client.post(
        BASE,
        headers=acme.viewer.basic,
        json={"agentid": AGENT, "grouptype": "Actions", "groupname": "Nope"},
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["status"] == "403"
    assert table_counts(db) == before
    assert_invariants(db)


# content negotiation --------------------------------------------------------------------
def test_accept_picks_the_answer_format(client: TestClient, acme: TenantFixture) -> None:
    cases = [
        (None, "application/json"),
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/xml", "application/xml"),
        ("text/xml", "text/xml"),
        ("application/*", "application/json"),
        ("application/xml;q=0.5, application/json;q=0.9", "application/json"),
        ("application/json;q=0.4, application/xml", "application/xml"),
        ("application/json;q=0, */*", "application/xml"),
        ("text/html, application/xml;q=0.1", "application/xml"),
    ]
    for accept, expected in cases:
        headers = token_basic(acme.viewer)
        if accept is not None:
            headers["Accept"] = accept
        response = client.get(BASE, params={"agentid": AGENT}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].split(";")[0] == expected, accept
        if expected == "application/json":
            assert response.json()["message"] == "Groups information"
        else:
            root = SafeET.fromstring(response.content, forbid_dtd=True)
            assert root.tag == "AllGroupResponse"


def test_unsupported_formats_are_refused_and_change_nothing(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    basic = token_basic(acme.editor)
    groupid = create_json(client, basic, groupname="Kept", values=["a"])["groupid"]
    before = table_counts(db)
    body = json.dumps({"agentid": AGENT, "grouptype": "Actions", "groupname": "New"})
    for accept in ("text/html", "application/json;q=0, application/xml;q=0"):
        response = client.post(
            BASE,
            headers={**basic, "Accept": accept, "Content-Type": "application/json"},
            content=body,
        )
        assert response.status_code == 406, response.text
        assert response.json()["status"] == "406"
        assert "Accept" in response.json()["message"]
    refused_delete = client.delete(f"{BASE}/{groupid}", headers={**basic, "Accept": "text/csv"})
    assert refused_delete.status_code == 406
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = dict(basic)
        if content_type:
            headers["Content-Type"] = content_type
        response = client.post(BASE, headers=headers, content=body)
        assert response.status_code == 415, response.text
        assert response.json()["status"] == "415"
        assert "application/json or application/xml" in response.json()["message"]
        put = client.put(
            f"{BASE}/{groupid}", headers={**headers, "Accept": "application/xml"}, content=b"{}"
        )
        assert put.status_code == 415
        assert parse_answer(put).findtext("status") == "415"
    assert table_counts(db) == before
    assert client.get(f"{BASE}/{groupid}", headers=basic).json()["group"]["values"] == ["a"]
    assert_invariants(db)


# errors ---------------------------------------------------------------------------------
def test_unknown_groupids_answer_404(client: TestClient, acme: TenantFixture, db: Database) -> None:
    basic = token_basic(acme.editor)
    groupid = create_json(client, basic, groupname="Real")["groupid"]
    key, digest = groupid.split("_")
    wrong_digest = f"{key}_{hashlib.sha256(b'another').hexdigest()}"
    wrong_key = f"{int(key) + 1000}_{digest}"
    # A group of another kind, addressed the OAA way, is no policy group.
    with db.engine.connect() as connection:
        admin_key, admin_uuid = connection.execute(
            select(Group.id, Group.uuid).where(Group.tenant_id == acme.id, Group.name == "Admin")
        ).one()
    admin_digest = hashlib.sha256(str(admin_uuid).encode()).hexdigest()
    user_group = f"{admin_key}_{admin_digest}"
    before = table_counts(db)
    for unknown in (
        wrong_digest,
        wrong_key,
        "140_" + "0" * 64,
        "not-an-id",
        "0_" + digest,
        f"{key}_{digest[:-1]}",
        user_group,
    ):
        for method in ("GET", "PUT", "DELETE"):
            response = client.request(
                method,
                f"{BASE}/{unknown}",
                headers=basic,
                json={"description": "x"} if method == "PUT" else None,
            )
            assert response.status_code == 404, (method, unknown, response.text)
            body = response.json()
            assert body["status"] == "404"
            assert body["message"] == f"Group not found: no policy group '{unknown}'"
    xml_miss = client.get(f"{BASE}/{wrong_digest}", headers={**basic, **XML_HEADERS})
    assert parse_answer(xml_miss).tag == "GroupResponse"
    assert parse_answer(xml_miss).findtext("status") == "404"
    assert table_counts(db) == before
    assert client.get(f"{BASE}/{groupid}", headers=basic).status_code == 200
    assert_invariants(db)


def test_invalid_input_is_405_naming_what_is_wrong(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    basic = token_basic(acme.editor)
    groupid = create_json(client, basic, groupname="Taken", values=["read"])["groupid"]
    before = table_counts(db)
    good = {"agentid": AGENT, "grouptype": "Actions", "groupname": "Fresh"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "grouptype": "Colours"}, "grouptype 'Colours'"),
        ({**good, "agentid": "agent-7"}, "agentid 'agent-7' is not a UUID"),
        ({**good, "values": ["ok", "not ok"]}, "values[1]: 'not ok' is not an action"),
        ({**good, "groupname": " padded"}, "groupname must not start or end"),
        ({**good, "groupname": ""}, "groupname must not be empty"),
        ({**good, "colour": "red"}, "colour"),
        ({k: v for k, v in good.items() if k != "groupname"}, "groupname"),
        ({k: v for k, v in good.items() if k != "agentid"}, "agentid"),
    ]
    for body, named in cases:
        response = client.post(BASE, headers=basic, json=body)
        assert response.status_code == 405, (body, response.text)
        assert response.headers["allow"] == "GET, POST"
        answer = response.json()
        assert answer["status"] == "405"
        assert answer["message"].startswith("Invalid input: ")
        assert named in answer["message"], (named, answer["message"])
    for body, named in [
        ({"addvalues": ["ok", "9lives"]}, "addvalues[1]: '9lives'"),
        ({"groupname": "a\u0007b"}, "groupname contains a forbidden character U+0007"),
        ({"values": ["x"]}, "values"),  # PUT takes addvalues/removevalues, not values
    ]:
        response = client.put(f"{BASE}/{groupid}", headers=basic, json=body)
        assert response.status_code == 405, (body, response.text)
        assert response.headers["allow"] == "GET, PUT, DELETE"
        assert named in response.json()["message"]
    for params, named in [
        ({}, "'agentid' is required"),
        ({"agentid": "x"}, "agentid 'x' is not a UUID"),
        ({"agentid": AGENT, "grouptype": "IPs,Nope"}, "grouptype 'Nope'"),
    ]:
        response = client.get(BASE, params=params, headers={**basic, "Accept": "application/xml"})
        assert response.status_code == 405
        root = parse_answer(response)
        assert root.tag == "AllGroupResponse"  # Oracle documents the list's 405 so
        assert root.findtext("status") == "405"
        assert named in (root.findtext("message") or "")
    bad_xml = client.post(
        BASE,
        headers={**basic, **XML_HEADERS},
        content=b"<group><groupname>Fresh</groupname><values><v>1</v></values></group>",
    )
    assert bad_xml.status_code == 405
    assert "<values> must hold text" in (parse_answer(bad_xml).findtext("message") or "")
    twice = client.post(
        BASE, headers={**basic, **XML_HEADERS}, content=xml_body("group", groupname=["A", "B"])
    )
    assert "<groupname> is given more than once" in (parse_answer(twice).findtext("message") or "")
    assert table_counts(db) == before
    assert_invariants(db)


def test_a_taken_group_name_is_409(client: TestClient, acme: TenantFixture, db: Database) -> None:
    basic = token_basic(acme.editor)
    create_json(client, basic, groupname="Dup")
    other = create_json(client, basic, groupname="Other")["groupid"]
    before = table_counts(db)
    again = client.post(
        BASE,
        headers=basic,
        json={"agentid": str(uuid.uuid4()), "grouptype": "IPs", "groupname": "Dup"},
    )
    assert again.status_code == 409, again.text
    assert again.json()["status"] == "409"
    assert "'Dup' already exists" in again.json()["message"]
    rename = client.put(
        f"{BASE}/{other}",
        headers={**basic, **XML_HEADERS},
        content=xml_body("group", groupname="Dup"),
    )
    assert rename.status_code == 409
    assert parse_answer(rename).findtext("status") == "409"
    assert table_counts(db) == before
    assert_invariants(db)


def test_a_blocked_delete_is_409_and_keeps_the_group(
    client: TestClient, acme: TenantFixture, db: Database
) -> None:
    made = client.post(
        "/api/v1/groups",
        headers=acme.editor.headers,
        json={
            "name": "Linked",
            "kind": "policy",
            "valueType": "string",
            "values": ["x"],
            "agentId": AGENT,
            "linkedEntity": {"type": "CUSTOMER", "ref": "c-1"},
        },
    )
    assert made.status_code == 201, made.text
    groupid = client.get(BASE, params={"agentid": AGENT}, headers=token_basic(acme.viewer)).json()[
        "groups"
    ][0]["groupid"]
    before = table_counts(db)
    refused = client.delete(f"{BASE}/{groupid}", headers=token_basic(acme.editor))
    assert refused.status_code == 409, refused.text
    assert "linked to an entity" in refused.json()["message"]
    assert table_counts(db) == before
    assert client.get(f"{BASE}/{groupid}", headers=token_basic(acme.viewer)).status_code == 200
    assert_invariants(db)


def test_tenants_do_not_see_each_other(
    client: TestClient, acme: TenantFixture, globex: TenantFixture, db: Database
) -> None:
    groupid = create_json(client, token_basic(acme.editor), groupname="Acme only", values=["a"])[
        "groupid"
    ]
    before = table_counts(db)
    outsider = token_basic(globex.editor)
    assert client.get(f"{BASE}/{groupid}", headers=outsider).status_code == 404
    assert (
        client.put(f"{BASE}/{groupid}", headers=outsider, json={"addvalues": ["b"]}).status_code
        == 404
    )
    assert client.delete(f"{BASE}/{groupid}", headers=outsider).status_code == 404
    listed = client.get(BASE, params={"agentid": AGENT}, headers=outsider)
    assert listed.json()["groups"] == []
    assert table_counts(db) == before
    # Names are unique per tenant, not across tenants.
    create_json(client, outsider, groupname="Acme only")
    mine = client.get(f"{BASE}/{groupid}", headers=token_basic(acme.viewer)).json()["group"]
    assert mine["values"] == ["a"]
    assert_invariants(db)
