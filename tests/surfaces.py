"""Support for the hardening suites: one populated app per database, and what each API
surface needs to be probed generically (credentials, its not-found and error forms).

The suites walk ``app.state.endpoints``; everything surface-specific lives in the
``PROFILES`` table here, so a dialect that lands later is covered once it has a row.

A ``World`` is built once per test module and database (seeding accounts costs argon2
time), holding tenants ``acme`` and ``globex`` with one object of every kind each. Tests
that use it must leave it usable: fresh credentials per test, fresh objects for anything
destructive.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
import pytest
from argon2 import PasswordHasher
from sqlalchemy import create_engine, text
from starlette.applications import Starlette
from starlette.testclient import TestClient

from conftest import (
    PASSWORD,
    TABLES,
    TenantFixture,
    empty_pg_tables,
    make_settings,
    seed_tenant,
)
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.api.http import Endpoint
from groupd.clock import system_clock
from groupd.services import accounts, deletion
from groupd.services.common import Actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from groupd.store.queue import copy_database

ROLES = ("viewer", "editor", "admin")
# Routes that revoke the credential they were called with.
REVOKING = {"native:POST /api/v1/auth/revoke", "console:POST /console/sign-out"}
CREDENTIAL_KINDS = ("none", "bad", "expired", "viewer", "editor", "admin")
ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}
# Routes every surface serves without credentials by design (health, metrics, docs).
OPEN_ROUTES = (
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/init.js",
    "/console",
)
CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
KINDS = (
    "static",
    "user_group",
    "policy",
    "device",
    "user",
    "licence",
    "activation",
    "operation",
    "deleted_group",
    "webhook",
    "delivery",
)


# the world ------------------------------------------------------------------------------
@dataclass
class World:
    """A running app over one database with two populated tenants."""

    kind: str
    db: Database
    settings: Settings
    ctx: AppContext
    app: Starlette
    client: TestClient
    tenants: dict[str, TenantFixture]
    ids: dict[str, dict[str, str]] = field(default_factory=dict)  # tenant → kind → id
    names: dict[str, dict[str, str]] = field(default_factory=dict)  # tenant → kind → name
    oaa_ids: dict[str, str] = field(default_factory=dict)  # tenant → its policy group's id
    agents: dict[str, str] = field(default_factory=dict)  # tenant → its policy agent's id
    made: dict[str, set[str]] = field(default_factory=dict)  # tenant → ids, names made later
    _accounts: dict[str, accounts.AccountView] = field(default_factory=dict)
    _secrets: dict[tuple[str, str, str, bool], str] = field(default_factory=dict)

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self.app.state.endpoints)

    def markers(self, tenant: str) -> set[str]:
        """Strings only ``tenant``'s data contains: its ids, names and usernames."""
        found = set(self.ids[tenant].values()) | set(self.names[tenant].values())
        if tenant in self.oaa_ids:
            found.add(self.oaa_ids[tenant])
        found |= {f"{role}@{tenant}" for role in ROLES}
        return found | self.made.get(tenant, set())

    def remember(self, tenant: str, *values: str) -> None:
        self.made.setdefault(tenant, set()).update(values)

    def native(self, tenant: str, role: str = "admin") -> dict[str, str]:
        caller = getattr(self.tenants[tenant], role)
        return {"Authorization": f"Bearer {caller.token}"}

    def account(self, tenant: str, role: str) -> accounts.AccountView:
        key = f"{role}@{tenant}"
        if key not in self._accounts:
            with transaction(self.db) as uow:
                self._accounts[key] = accounts.get_account(uow, username=key)
        return self._accounts[key]

    def add_account(self, tenant: str, role: str) -> str:
        """A new account (password PASSWORD) of ``tenant``; its username."""
        username = f"{role}-{uuid.uuid4().hex[:8]}@{tenant}"
        with pytest.MonkeyPatch.context() as patch, transaction(self.db) as uow:
            patch.setattr(accounts, "hash_password", lambda _: CHEAP_HASH)
            accounts.create_account(
                uow,
                tenant_id=self.tenants[tenant].id,
                username=username,
                role=role,
                password=PASSWORD,
                now=system_clock(),
            )
        return username

    def mint(
        self, tenant: str, role: str, kind: str, *, expired: bool = False, fresh: bool = False
    ) -> str:
        """A secret of ``kind`` (api, access, session, service) for the role's account;
        the same one each time unless ``fresh`` (see ``forget_credentials``)."""
        key = (tenant, role, kind, expired)
        if not fresh and key in self._secrets:
            return self._secrets[key]
        account = self.account(tenant, role)
        now = system_clock()
        idle = 900 if kind == "session" else None
        if expired:
            now -= timedelta(days=2)
        with transaction(self.db) as uow:
            token = accounts.issue_credential(
                uow,
                account=account,
                kind=kind,
                ttl_seconds=3600,
                now=now,
                idle_timeout_seconds=idle,
            )
        self._secrets[key] = token.secret
        return token.secret

    def forget_credentials(self) -> None:
        """Mint anew from now on (after a request that revoked its own credential)."""
        self._secrets.clear()

    # building blocks over the native API ----------------------------------------------
    def post(self, path: str, body: dict[str, Any], tenant: str = "acme") -> dict[str, Any]:
        response = self.client.post(path, json=body, headers=self.native(tenant))
        assert response.status_code in (200, 201), response.text
        made: dict[str, Any] = response.json()
        self.remember(tenant, *(str(made[k]) for k in ("id", "name") if k in made))
        return made

    def fresh_group(self, tenant: str = "acme", *, kind: str = "static") -> dict[str, Any]:
        name = f"{tenant}-tmp-{uuid.uuid4().hex[:10]}"
        body: dict[str, Any] = {"name": name, "kind": kind}
        if kind == "static":
            body["parentId"] = self.tenants[tenant].root_id
        if kind == "policy":
            body.update(valueType="ip", values=["10.9.9.9"], agentId=self.agents[tenant])
        return self.post("/api/v1/groups", body, tenant)

    def fresh_binned(self, tenant: str = "acme") -> str:
        """A fresh static group put in the recycle bin (the world's deletes skip it:
        retention 0), through the service; its id is its bin entry's."""
        group = self.fresh_group(tenant)
        actor = Actor(
            tenant_id=self.tenants[tenant].id, account_id=None, username="suite", role="admin"
        )
        with transaction(self.db) as uow:
            plan = deletion.request_delete(
                uow,
                actor=actor,
                group_id=group["id"],
                release_units=False,
                now=system_clock(),
                retention_seconds=3600,
            )
        self.ctx.worker.run_until_idle()
        # The app's own worker may have taken the operation: wait until it is done, so
        # that nothing changes later under a probe.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            operation = self.client.get(
                f"/api/v1/operations/{plan.operation_uuid}", headers=self.native(tenant)
            ).json()
            if operation["state"] == "succeeded":
                return str(group["id"])
            time.sleep(0.02)
        raise AssertionError(f"the delete to the bin of {group['id']} did not end")

    def settle(self) -> None:
        """Wait until no operation is unfinished: a console action answers before its
        operation ends, and nothing may change later under the next probe."""
        self.ctx.worker.run_until_idle()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with self.db.engine.connect() as connection:
                running = connection.execute(
                    text("SELECT count(*) FROM operations WHERE state IN ('accepted', 'running')")
                ).scalar_one()
            if not running:
                return
            time.sleep(0.02)
        raise AssertionError("an operation did not end")

    def fresh_device(self, tenant: str = "acme") -> dict[str, Any]:
        return self.post(
            "/api/v1/objects",
            {
                "kind": "device",
                "name": f"{tenant}-dev-{uuid.uuid4().hex[:10]}",
                "homeGroupId": self.ids[tenant]["static"],
            },
            tenant,
        )

    def fresh_user(self, tenant: str = "acme") -> dict[str, Any]:
        login = f"{tenant}-u-{uuid.uuid4().hex[:10]}"
        return self.post(
            "/api/v1/objects",
            {
                "kind": "user",
                "name": login,
                "loginName": login,
                "status": "inactive",
                "homeGroupId": self.ids[tenant]["static"],
            },
            tenant,
        )

    def fresh_webhook(self, tenant: str = "acme") -> dict[str, Any]:
        return self.post(
            "/api/v1/webhooks",
            {"url": f"https://hooks.example.com/{tenant}", "events": ["group.*"]},
            tenant,
        )

    def fresh_activation(self, tenant: str = "acme") -> dict[str, Any]:
        device = self.fresh_device(tenant)
        return self.post(
            f"/api/v1/licenses/{self.ids[tenant]['licence']}/activations",
            {"objectId": device["id"], "units": 1},
            tenant,
        )


def _populate(world: World, tenant: str) -> None:
    fixture = world.tenants[tenant]
    names = {
        "static": f"{tenant}-static",
        "user_group": f"{tenant}-team",
        "policy": f"{tenant}-policy",
        "device": f"{tenant}-device",
        "user": f"{tenant}-user",
        "licence": f"{tenant}-product",
        "gone": f"{tenant}-gone",
    }
    ids: dict[str, str] = {}
    ids["static"] = world.post(
        "/api/v1/groups", {"name": names["static"], "parentId": fixture.root_id}, tenant
    )["id"]
    ids["user_group"] = world.post(
        "/api/v1/groups", {"name": names["user_group"], "kind": "user"}, tenant
    )["id"]
    ids["policy"] = world.post(
        "/api/v1/groups",
        {
            "name": names["policy"],
            "kind": "policy",
            "valueType": "ip",
            "values": ["10.1.2.3"],
            "agentId": world.agents[tenant],
        },
        tenant,
    )["id"]
    ids["device"] = world.post(
        "/api/v1/objects",
        {"kind": "device", "name": names["device"], "homeGroupId": ids["static"]},
        tenant,
    )["id"]
    ids["user"] = world.post(
        "/api/v1/objects",
        {
            "kind": "user",
            "name": names["user"],
            "loginName": names["user"],
            "status": "active",
            "homeGroupId": ids["static"],
        },
        tenant,
    )["id"]
    member = world.client.put(
        f"/api/v1/groups/{ids['user_group']}/members/{ids['user']}", headers=world.native(tenant)
    )
    assert member.status_code == 201, member.text
    ids["licence"] = world.post(
        "/api/v1/licenses",
        {"product": names["licence"], "unitKind": "seat", "totalUnits": 1000},
        tenant,
    )["id"]
    ids["activation"] = world.post(
        f"/api/v1/licenses/{ids['licence']}/activations",
        {"objectId": ids["device"], "units": 1},
        tenant,
    )["id"]
    gone = world.post(
        "/api/v1/groups", {"name": names["gone"], "parentId": fixture.root_id}, tenant
    )
    deleted = world.client.delete(f"/api/v1/groups/{gone['id']}", headers=world.native(tenant))
    assert deleted.status_code == 200, deleted.text
    ids["operation"] = deleted.json()["id"]
    ids["gone"] = gone["id"]
    ids["deleted_group"] = world.fresh_binned(tenant)
    ids["webhook"] = world.fresh_webhook(tenant)["id"]
    tested = world.client.post(
        f"/api/v1/webhooks/{ids['webhook']}/test", headers=world.native(tenant)
    )
    assert tested.status_code == 202, tested.text
    ids["delivery"] = tested.json()["id"]
    world.remember(tenant, ids["delivery"])
    names.pop("gone")  # the deleted group's name may be taken again: not a marker
    world.ids[tenant] = ids
    world.names[tenant] = names
    if any(e.surface.name == "oaa" for e in world.endpoints):
        raw = base64.b64encode(f"admin@{tenant}:{PASSWORD}".encode()).decode()
        listed = world.client.get(
            "/oaa-policy/group/v1",
            params={"agentid": world.agents[tenant]},
            headers={"Authorization": f"Basic {raw}", "Accept": "application/json"},
        )
        assert listed.status_code == 200, listed.text
        (group,) = [g for g in listed.json()["groups"] if g["groupname"] == names["policy"]]
        world.oaa_ids[tenant] = group["groupid"]


def _database_url(kind: str, tmp: Path, request: Any) -> str:
    if kind == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp / "world.db"
        copy_database(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    engine = create_engine(url)
    with engine.begin() as connection:
        empty_pg_tables(connection)
    engine.dispose()
    return url


@contextmanager
def build_world(kind: str, tmp: Path, request: Any, **overrides: Any) -> Iterator[World]:
    """A populated app over a fresh database of ``kind`` (sqlite or postgres)."""
    # Webhook deliveries would try the world's made-up hosts: they stay queued.
    overrides = {"webhook_delivery_enabled": False, **overrides}
    settings = make_settings(_database_url(kind, tmp, request), **overrides)
    db = Database.from_settings(settings)
    ctx = AppContext.create(settings, db=db)
    app = create_app(context=ctx)
    try:
        with TestClient(app, raise_server_exceptions=False) as client:
            with pytest.MonkeyPatch.context() as patch:
                # argon2 is slow on purpose (about a second a hash on a busy 2-core box);
                # the world's accounts get a valid argon2 hash of PASSWORD made with low
                # cost parameters, so that checking it is cheap as well.
                patch.setattr(accounts, "hash_password", lambda _: CHEAP_HASH)
                tenants = {name: seed_tenant(db, name) for name in ("acme", "globex")}
            world = World(kind, db, settings, ctx, app, client, tenants)
            world.agents = {name: str(uuid.uuid4()) for name in tenants}
            for name in tenants:
                _populate(world, name)
            yield world
    finally:
        db.dispose()


# snapshots ------------------------------------------------------------------------------
# Columns a read may legitimately touch: a session's sliding idle deadline.
VOLATILE_COLUMNS = {"credentials": {"last_used_at"}}


def snapshot(db: Database, *, tenant_id: int | None = None) -> dict[str, tuple[int, str]]:
    """Per table: the row count and a SHA-256 over every row (sorted), volatile columns
    aside; with ``tenant_id``, only that tenant's rows. Two equal snapshots mean no row
    was added, removed or changed."""
    lines: dict[str, list[str]] = {table: [] for table in TABLES}
    with db.engine.connect() as connection:
        if db.is_sqlite:
            for table in TABLES:
                sql, params = _rows_of(table, tenant_id)
                rows = connection.execute(text(f"SELECT * {sql}"), params)
                skip = VOLATILE_COLUMNS.get(table, set())
                names = rows.keys()
                columns = [c for c in names if c not in skip]
                lines[table] = [
                    json.dumps([_plain(row._mapping[c]) for c in columns], default=str)
                    for row in rows
                ]
        else:
            # One round trip: every row of every table as JSON text.
            parts, params = [], {}
            for table in TABLES:
                sql, table_params = _rows_of(table, tenant_id, alias=" r")
                drop = "".join(f" - '{c}'" for c in VOLATILE_COLUMNS.get(table, ()))
                parts.append(f"SELECT '{table}' AS t, (to_jsonb(r){drop})::text AS row {sql}")
                params.update(table_params)
            for table, row in connection.execute(text(" UNION ALL ".join(parts)), params):
                lines[table].append(row)
    result: dict[str, tuple[int, str]] = {}
    for table, rows_text in lines.items():
        digest = hashlib.sha256("\n".join(sorted(rows_text)).encode()).hexdigest()
        result[table] = (len(rows_text), digest)
    return result


def _rows_of(table: str, tenant_id: int | None, *, alias: str = "") -> tuple[str, dict[str, Any]]:
    source = f"FROM {table}{alias}"
    if tenant_id is None:
        return source, {}
    if table == "tenants":
        return f"{source} WHERE id = :t", {"t": tenant_id}
    if table == "system_flags":
        return f"{source} WHERE 1 = 0", {}
    return f"{source} WHERE tenant_id = :t", {"t": tenant_id}


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        # SQLite hands JSON columns back as text; PostgreSQL as objects.
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


# requests -------------------------------------------------------------------------------
@dataclass
class Probe:
    """One request, as the suites build it before sending."""

    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    # The ids it names are only filters of a list: another tenant's ids then match
    # nothing, and an empty page is as good an answer as not-found.
    filter_only: bool = False
    # A console action answers 303 to the page that follows it (an operation's progress):
    # its probe stops there, as the redirect's request would not carry the credentials.
    follow: bool = True

    def send(self, client: TestClient) -> httpx.Response:
        kwargs: dict[str, Any] = {"params": self.query or None, "headers": self.headers}
        if not self.follow:
            kwargs["follow_redirects"] = False
        if self.content is not None:
            kwargs["content"] = self.content
        elif self.json is not None:
            kwargs["json"] = self.json
        return client.request(self.method, self.path, **kwargs)

    def echo(self) -> str:
        """Everything the request itself says (an answer may repeat it)."""
        body = self.content.decode("utf-8", "replace") if self.content else json.dumps(self.json)
        return f"{self.path} {self.query} {body}"


# surfaces -------------------------------------------------------------------------------
def _basic(username: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _xml_text(response: httpx.Response) -> str:
    try:
        root = ElementTree.fromstring(response.content)
    except ElementTree.ParseError:
        return ""
    return " ".join(element.text or "" for element in root.iter())


@dataclass
class Profile:
    """What one API surface needs for generic probing."""

    name: str
    credentials: Callable[[World, str, str], dict[str, str]]  # (world, tenant, kind)
    # Status for a request without usable credentials: none, bad, expired.
    refused: dict[str, int]
    message: Callable[[httpx.Response], str]  # the human text of an error answer
    error_form: Callable[[httpx.Response], bool]  # the surface's own error shape
    not_found: Callable[[httpx.Response], bool]
    query: dict[str, str] = field(default_factory=dict)  # sent on every request
    headers: dict[str, str] = field(default_factory=dict)


# native: RFC 9457 problem details, Bearer or Basic
def _native_credentials(world: World, tenant: str, kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "bad":
        return _bearer("gdk_" + secrets.token_urlsafe(32))
    if kind == "expired":
        return _bearer(world.mint(tenant, "viewer", "api", expired=True))
    return _bearer(world.mint(tenant, kind, "api"))


def _native_message(response: httpx.Response) -> str:
    body = _json(response)
    return str(body.get("detail", "")) if isinstance(body, dict) else ""


def _native_form(response: httpx.Response) -> bool:
    body = _json(response)
    return (
        response.headers.get("content-type", "").startswith("application/problem+json")
        and isinstance(body, dict)
        and {"type", "title", "status", "code", "detail", "requestId"} <= set(body)
        and body["status"] == response.status_code
    )


def _native_not_found(response: httpx.Response) -> bool:
    body = _json(response)
    return response.status_code == 404 and _native_form(response) and body["code"] == "not_found"


# ESET: google.rpc.Status, Bearer access tokens; a missing header is a 400
def _eset_credentials(world: World, tenant: str, kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "bad":
        return _bearer("gda_" + secrets.token_urlsafe(32))
    if kind == "expired":
        return _bearer(world.mint(tenant, "viewer", "access", expired=True))
    return _bearer(world.mint(tenant, kind, "access"))


def _eset_message(response: httpx.Response) -> str:
    body = _json(response)
    if not isinstance(body, dict):
        return ""
    return f"{body.get('message', '')} {json.dumps(body.get('details', []))}"


def _eset_form(response: httpx.Response) -> bool:
    body = _json(response)
    return (
        isinstance(body, dict)
        and body.get("code") == response.status_code
        and isinstance(body.get("message"), str)
        and isinstance(body.get("details"), list)
    )


def _eset_not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and _eset_form(response)


# OAA: GroupResponse (JSON or XML), HTTP Basic
def _oaa_credentials(world: World, tenant: str, kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "bad":
        # A token-shaped password is checked as a token: no argon2, no failure counted.
        return _basic(f"viewer@{tenant}", "gdk_" + secrets.token_urlsafe(32))
    if kind == "expired":
        # Basic has no expiry of its own; an expired token given as the password has.
        return _basic(f"viewer@{tenant}", world.mint(tenant, "viewer", "api", expired=True))
    return _basic(f"{kind}@{tenant}", PASSWORD)


def _oaa_message(response: httpx.Response) -> str:
    body = _json(response)
    if isinstance(body, dict):
        return str(body.get("message", ""))
    return _xml_text(response)


def _oaa_form(response: httpx.Response) -> bool:
    body = _json(response)
    if isinstance(body, dict):
        return body.get("status") == str(response.status_code) and "message" in body
    try:
        root = ElementTree.fromstring(response.content)
    except ElementTree.ParseError:
        return False
    return root.tag in ("GroupResponse", "AllGroupResponse") and (
        root.findtext("status") == str(response.status_code)
    )


def _oaa_not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and _oaa_form(response)


# AppViewX: the {response, message, appStatusCode, tags, headers} envelope, sessionId
def _avx_credentials(world: World, tenant: str, kind: str) -> dict[str, str]:
    if kind == "none":
        return {}
    if kind == "bad":
        return {"sessionId": "gds_" + secrets.token_urlsafe(32)}
    if kind == "expired":
        return {"sessionId": world.mint(tenant, "viewer", "session", expired=True)}
    return {"sessionId": world.mint(tenant, kind, "session")}


def _avx_message(response: httpx.Response) -> str:
    body = _json(response)
    if not isinstance(body, dict):
        return ""
    return f"{body.get('message', '')} {json.dumps(body.get('tags'))}"


def _avx_form(response: httpx.Response) -> bool:
    body = _json(response)
    return (
        isinstance(body, dict)
        and {"response", "message", "appStatusCode", "tags", "headers"} <= set(body)
        and isinstance(body["appStatusCode"], str)
    )


AVX_NOT_FOUND_CODES = {
    "ACCT_USERGROUP_030",
    "NO_RECORDS_FOUND",
    "GROUPD_USER_NOT_FOUND",
    "GROUPD_NOT_FOUND",
}


def _avx_not_found(response: httpx.Response) -> bool:
    body = _json(response)
    return (
        response.status_code == 404
        and _avx_form(response)
        and body["appStatusCode"] in AVX_NOT_FOUND_CODES
    )


# console: HTML pages, a session cookie and a CSRF token (header or form field)
def _console_credentials(world: World, tenant: str, kind: str) -> dict[str, str]:
    from groupd.api.console.surface import SESSION_COOKIE, csrf_token

    # The suites' client keeps cookies; the console's credentials are only what is sent.
    world.client.cookies.clear()
    if kind == "none":
        return {}
    if kind == "bad":
        secret = "gds_" + secrets.token_urlsafe(32)
    elif kind == "expired":
        secret = world.mint(tenant, "viewer", "session", expired=True)
    else:
        secret = world.mint(tenant, kind, "session")
    return {"Cookie": f"{SESSION_COOKIE}={secret}", "X-CSRF-Token": csrf_token(secret)}


_ALERT = re.compile(r'role="alert"[^>]*>(.*?)</p>', re.S)


def _console_message(response: httpx.Response) -> str:
    import html

    found = _ALERT.search(response.text)
    return html.unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip() if found else ""


def _console_form(response: httpx.Response) -> bool:
    return (
        response.headers.get("content-type", "").startswith("text/html")
        and f'data-status="{response.status_code}"' in response.text
        and bool(_console_message(response))
    )


def _console_not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and _console_form(response)


# SCIM: RFC 7644 Error messages, Bearer API tokens (the native credentials)
SCIM_ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def _scim_message(response: httpx.Response) -> str:
    body = _json(response)
    return str(body.get("detail", "")) if isinstance(body, dict) else ""


def _scim_form(response: httpx.Response) -> bool:
    body = _json(response)
    return (
        response.headers.get("content-type", "").startswith("application/scim+json")
        and isinstance(body, dict)
        and body.get("schemas") == [SCIM_ERROR]
        and body.get("status") == str(response.status_code)
    )


def _scim_not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 and _scim_form(response)


PROFILES: dict[str, Profile] = {
    "native": Profile(
        "native",
        _native_credentials,
        {"none": 401, "bad": 401, "expired": 401},
        _native_message,
        _native_form,
        _native_not_found,
    ),
    # ESET documents 400 for "bad or missing authorization" and 401 for a token that has
    # expired or is invalid.
    "eset": Profile(
        "eset",
        _eset_credentials,
        {"none": 400, "bad": 401, "expired": 401},
        _eset_message,
        _eset_form,
        _eset_not_found,
    ),
    "oaa": Profile(
        "oaa",
        _oaa_credentials,
        {"none": 401, "bad": 401, "expired": 401},
        _oaa_message,
        _oaa_form,
        _oaa_not_found,
        headers={"Accept": "application/json"},
    ),
    "appviewx": Profile(
        "appviewx",
        _avx_credentials,
        {"none": 401, "bad": 401, "expired": 401},
        _avx_message,
        _avx_form,
        _avx_not_found,
        query={"gwsource": "external"},
    ),
    # A page asked for without a live session answers 401 with the sign-in form.
    "console": Profile(
        "console",
        _console_credentials,
        {"none": 401, "bad": 401, "expired": 401},
        _console_message,
        _console_form,
        _console_not_found,
    ),
    "scim": Profile(
        "scim",
        _native_credentials,
        {"none": 401, "bad": 401, "expired": 401},
        _scim_message,
        _scim_form,
        _scim_not_found,
    ),
}


def profile_of(endpoint: Endpoint) -> Profile:
    try:
        return PROFILES[endpoint.surface.name]
    except KeyError:
        raise AssertionError(
            f"surface '{endpoint.surface.name}' has no row in tests/surfaces.py PROFILES; "
            "add its credentials, not-found and error forms"
        ) from None


def route_id(endpoint: Endpoint) -> str:
    return f"{endpoint.surface.name}:{endpoint.method} {endpoint.path}"


PATH_PARAM = re.compile(r"{([^}]+)}")


def path_params(endpoint: Endpoint) -> list[str]:
    return PATH_PARAM.findall(endpoint.path)


def fill(path: str, values: dict[str, str]) -> str:
    return PATH_PARAM.sub(lambda m: values[m.group(1)], path)


def param_kind(endpoint: Endpoint, param: str) -> str:
    """Which kind of object a path parameter names."""
    path = endpoint.path
    by_name = {
        "activationId": "activation",
        "objectId": "user",
        "deviceUuid": "device",
        "groupUuid": "static",
        "groupid": "oaa_policy",
        "activation": "activation",
        "resourceType": "scim_resource_type",
        "schema": "scim_schema",
        "deliveryId": "delivery",
    }
    if param in by_name:
        return by_name[param]
    if param == "id":
        prefixes = (
            ("/api/v1/groups/{id}/members", "user_group"),
            ("/api/v1/groups", "static"),
            ("/api/v1/objects/{id}/memberships", "user"),
            ("/api/v1/objects", "device"),
            ("/api/v1/licenses", "licence"),
            ("/api/v1/operations", "operation"),
            ("/console/groups", "static"),
            ("/console/licences", "licence"),
            ("/console/operations", "operation"),
            ("/console/bin", "deleted_group"),
            ("/api/v1/deleted-groups", "deleted_group"),
            ("/scim/v2/Users", "user"),
            ("/scim/v2/Groups", "user_group"),
            ("/api/v1/webhooks", "webhook"),
        )
        for prefix, kind in prefixes:
            if path.startswith(prefix):
                return kind
    raise AssertionError(f"tests/surfaces.py: no kind known for {{{param}}} in {path}")


# Path parameters that name something every tenant shares (SCIM's schemas), not data.
SHARED = {"scim_resource_type": "User", "scim_schema": "urn:ietf:params:scim:schemas:core:2.0:User"}


def names_shared_only(endpoint: Endpoint) -> bool:
    """Whether every path parameter of ``endpoint`` names something no tenant owns."""
    return all(param_kind(endpoint, p) in SHARED for p in path_params(endpoint))


def id_of(world: World, tenant: str, kind: str) -> str:
    if kind in SHARED:
        return SHARED[kind]
    if kind == "oaa_policy":
        return world.oaa_ids[tenant]
    return world.ids[tenant][kind]


def generic_probe(world: World, endpoint: Endpoint, tenant: str) -> Probe:
    """A request to ``endpoint`` naming ``tenant``'s objects, with a body of the right
    media type (the surface refuses or accepts it after authentication)."""
    profile = profile_of(endpoint)
    values = {p: id_of(world, tenant, param_kind(endpoint, p)) for p in path_params(endpoint)}
    probe = Probe(
        endpoint.method, fill(endpoint.path, values), dict(profile.query), dict(profile.headers)
    )
    if endpoint.method in ("POST", "PUT", "PATCH") and endpoint.json_body:
        probe.json = {}
    return probe


# samples: requests that succeed for a caller with a sufficient role ---------------------
# ``sample(world, caller, owner)``: probes from ``caller``'s tenant naming ``owner``'s
# objects. With caller == owner they must succeed (the auth suite); with another owner
# each must answer the surface's not-found and change nothing (the tenancy suite).
Sample = Callable[[World, str, str], list[Probe]]


def _fresh(prefix: str = "s") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _p(method: str, path: str, **kwargs: Any) -> Probe:
    return Probe(method, path, **kwargs)


def _oaa_basic(tenant: str) -> dict[str, str]:
    return {**_basic(f"admin@{tenant}", PASSWORD), "Accept": "application/json"}


def _oaa_fresh(world: World, tenant: str) -> str:
    response = world.client.post(
        "/oaa-policy/group/v1",
        headers=_oaa_basic(tenant),
        json={
            "agentid": world.agents[tenant],
            "grouptype": "IPs",
            "groupname": _fresh(tenant),
            "description": "",
            "values": ["10.0.0.1"],
        },
    )
    assert response.status_code == 201, response.text
    groupid = str(response.json()["groupid"])
    world.remember(tenant, groupid)
    return groupid


def _native_samples() -> dict[tuple[str, str], Sample]:
    api = "/api/v1"

    def ids(w: World, t: str) -> dict[str, str]:
        return w.ids[t]

    def membership(w: World, c: str, o: str) -> list[Probe]:
        user = w.fresh_user(o)
        added = w.client.put(
            f"{api}/groups/{ids(w, o)['user_group']}/members/{user['id']}", headers=w.native(o)
        )
        assert added.status_code == 201, added.text
        return [_p("DELETE", f"{api}/groups/{ids(w, o)['user_group']}/members/{user['id']}")]

    return {
        ("GET", f"{api}/deleted-groups"): lambda w, c, o: [_p("GET", f"{api}/deleted-groups")],
        ("GET", f"{api}/deleted-groups/{{id}}"): lambda w, c, o: [
            _p("GET", f"{api}/deleted-groups/{ids(w, o)['deleted_group']}")
        ],
        ("POST", f"{api}/deleted-groups/{{id}}/restore"): lambda w, c, o: [
            _p("POST", f"{api}/deleted-groups/{w.fresh_binned(o)}/restore", json={})
        ],
        ("DELETE", f"{api}/deleted-groups/{{id}}"): lambda w, c, o: [
            _p("DELETE", f"{api}/deleted-groups/{w.fresh_binned(o)}")
        ],
        ("POST", f"{api}/auth/revoke"): lambda w, c, o: [_p("POST", f"{api}/auth/revoke")],
        ("POST", f"{api}/tokens"): lambda w, c, o: [
            _p("POST", f"{api}/tokens", json={"label": "suite"})
        ],
        ("POST", f"{api}/accounts"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/accounts",
                json={
                    "username": _fresh("acct"),
                    "role": "viewer",
                    "password": "a long enough password",
                },
            )
        ],
        ("GET", f"{api}/accounts"): lambda w, c, o: [_p("GET", f"{api}/accounts")],
        ("POST", f"{api}/groups"): lambda w, c, o: [
            _p("POST", f"{api}/groups", json={"name": _fresh(), "parentId": ids(w, o)["static"]})
        ],
        ("POST", f"{api}/groups:batchCreate"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/groups:batchCreate",
                json={"groups": [{"name": _fresh(), "parentId": ids(w, o)["static"]}]},
            )
        ],
        ("GET", f"{api}/groups"): lambda w, c, o: [
            _p("GET", f"{api}/groups", query={"parentId": ids(w, o)["static"]}, filter_only=True)
        ],
        ("GET", f"{api}/groups/{{id}}"): lambda w, c, o: [
            _p("GET", f"{api}/groups/{ids(w, o)['static']}")
        ],
        ("PATCH", f"{api}/groups/{{id}}"): lambda w, c, o: [
            _p("PATCH", f"{api}/groups/{ids(w, o)['static']}", json={"description": "d"})
        ],
        ("POST", f"{api}/groups/{{id}}/move"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/groups/{w.fresh_group(c)['id']}/move",
                json={"parentId": ids(w, o)["static"]},
            ),
            _p(
                "POST",
                f"{api}/groups/{ids(w, o)['static']}/move",
                json={"parentId": w.tenants[c].root_id if c == o else ids(w, c)["static"]},
            ),
        ],
        ("DELETE", f"{api}/groups/{{id}}"): lambda w, c, o: [
            _p("DELETE", f"{api}/groups/{w.fresh_group(o)['id']}")
        ],
        ("POST", f"{api}/objects"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/objects",
                json={"kind": "device", "name": _fresh(), "homeGroupId": ids(w, o)["static"]},
            )
        ],
        ("POST", f"{api}/objects:batchImport"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/objects:batchImport",
                json={
                    "objects": [
                        {"kind": "device", "name": _fresh(), "homeGroupId": ids(w, o)["static"]}
                    ]
                },
            ),
            _p(
                "POST",
                f"{api}/objects:batchImport",
                json={
                    "objects": [
                        {
                            "kind": "device",
                            "name": _fresh(),
                            "homeGroupId": ids(w, c)["static"],
                            "activations": [{"licenseId": ids(w, o)["licence"], "units": 1}],
                        }
                    ]
                },
            ),
        ],
        ("GET", f"{api}/objects/{{id}}"): lambda w, c, o: [
            _p("GET", f"{api}/objects/{ids(w, o)['device']}")
        ],
        ("PATCH", f"{api}/objects/{{id}}"): lambda w, c, o: [
            _p(
                "PATCH",
                f"{api}/objects/{ids(w, o)['device']}",
                json={"attributes": {"site": "lab"}},
            )
        ],
        ("POST", f"{api}/objects/{{id}}/move"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/objects/{w.fresh_device(c)['id']}/move",
                json={"groupId": ids(w, o)["static"]},
            ),
            _p(
                "POST",
                f"{api}/objects/{ids(w, o)['device']}/move",
                json={"groupId": ids(w, c)["static"]},
            ),
        ],
        ("GET", f"{api}/objects/{{id}}/memberships"): lambda w, c, o: [
            _p("GET", f"{api}/objects/{ids(w, o)['user']}/memberships")
        ],
        ("GET", f"{api}/groups/{{id}}/objects"): lambda w, c, o: [
            _p("GET", f"{api}/groups/{ids(w, o)['static']}/objects", query={"recursive": "true"})
        ],
        ("PUT", f"{api}/groups/{{id}}/members/{{objectId}}"): lambda w, c, o: [
            _p("PUT", f"{api}/groups/{ids(w, o)['user_group']}/members/{w.fresh_user(o)['id']}"),
            _p("PUT", f"{api}/groups/{ids(w, c)['user_group']}/members/{ids(w, o)['user']}"),
            _p("PUT", f"{api}/groups/{ids(w, o)['user_group']}/members/{ids(w, c)['user']}"),
        ],
        ("DELETE", f"{api}/groups/{{id}}/members/{{objectId}}"): membership,
        ("GET", f"{api}/groups/{{id}}/members"): lambda w, c, o: [
            _p("GET", f"{api}/groups/{ids(w, o)['user_group']}/members")
        ],
        ("POST", f"{api}/licenses"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/licenses",
                json={"product": _fresh("p"), "unitKind": "seat", "totalUnits": 5},
            )
        ],
        ("GET", f"{api}/licenses"): lambda w, c, o: [_p("GET", f"{api}/licenses")],
        ("GET", f"{api}/licenses/{{id}}"): lambda w, c, o: [
            _p("GET", f"{api}/licenses/{ids(w, o)['licence']}")
        ],
        ("POST", f"{api}/licenses/{{id}}/activations"): lambda w, c, o: [
            _p(
                "POST",
                f"{api}/licenses/{ids(w, o)['licence']}/activations",
                json={"objectId": w.fresh_device(o)["id"], "units": 1},
            ),
            _p(
                "POST",
                f"{api}/licenses/{ids(w, c)['licence']}/activations",
                json={"objectId": ids(w, o)["device"], "units": 1},
            ),
        ],
        ("GET", f"{api}/licenses/{{id}}/activations"): lambda w, c, o: [
            _p("GET", f"{api}/licenses/{ids(w, o)['licence']}/activations")
        ],
        ("GET", f"{api}/licenses/{{id}}/activations/{{activationId}}"): lambda w, c, o: [
            _p(
                "GET",
                f"{api}/licenses/{ids(w, o)['licence']}/activations/{ids(w, o)['activation']}",
            ),
            _p(
                "GET",
                f"{api}/licenses/{ids(w, c)['licence']}/activations/{ids(w, o)['activation']}",
            ),
        ],
        ("DELETE", f"{api}/licenses/{{id}}/activations/{{activationId}}"): lambda w, c, o: [
            _p(
                "DELETE",
                f"{api}/licenses/{ids(w, o)['licence']}/activations/{w.fresh_activation(o)['id']}",
            )
        ],
        ("GET", f"{api}/operations/{{id}}"): lambda w, c, o: [
            _p("GET", f"{api}/operations/{ids(w, o)['operation']}")
        ],
        ("GET", f"{api}/audit"): lambda w, c, o: [
            _p("GET", f"{api}/audit", query={"target": ids(w, o)["static"]}, filter_only=True)
        ],
        **_webhook_samples(),
    }


def _webhook_samples() -> dict[tuple[str, str], Sample]:
    hooks = "/api/v1/webhooks"

    def hook(w: World, t: str) -> str:
        return f"{hooks}/{w.ids[t]['webhook']}"

    return {
        ("POST", hooks): lambda w, c, o: [
            _p("POST", hooks, json={"url": "https://hooks.example.com/new", "events": ["*"]})
        ],
        ("GET", hooks): lambda w, c, o: [_p("GET", hooks)],
        ("GET", f"{hooks}/{{id}}"): lambda w, c, o: [_p("GET", hook(w, o))],
        ("PATCH", f"{hooks}/{{id}}"): lambda w, c, o: [
            _p("PATCH", hook(w, o), json={"description": "changed"})
        ],
        ("DELETE", f"{hooks}/{{id}}"): lambda w, c, o: [
            _p("DELETE", f"{hooks}/{w.fresh_webhook(o)['id']}")
        ],
        ("POST", f"{hooks}/{{id}}/rotate-secret"): lambda w, c, o: [
            _p("POST", f"{hook(w, o)}/rotate-secret")
        ],
        ("GET", f"{hooks}/{{id}}/deliveries"): lambda w, c, o: [
            _p("GET", f"{hook(w, o)}/deliveries")
        ],
        ("POST", f"{hooks}/{{id}}/deliveries/{{deliveryId}}/retry"): lambda w, c, o: [
            _p("POST", f"{hook(w, o)}/deliveries/{w.ids[o]['delivery']}/retry"),
            _p("POST", f"{hook(w, c)}/deliveries/{w.ids[o]['delivery']}/retry"),
        ],
        ("POST", f"{hooks}/{{id}}/test"): lambda w, c, o: [_p("POST", f"{hook(w, o)}/test")],
    }


def _eset_samples() -> dict[tuple[str, str], Sample]:
    def ids(w: World, t: str) -> dict[str, str]:
        return w.ids[t]

    return {
        ("POST", "/v1/groups"): lambda w, c, o: [
            _p(
                "POST",
                "/v1/groups",
                json={"group": {"displayName": _fresh(), "parentGroupUuid": ids(w, o)["static"]}},
            )
        ],
        ("POST", "/v1/groups/{groupUuid}:move"): lambda w, c, o: [
            _p(
                "POST",
                f"/v1/groups/{w.fresh_group(c)['id']}:move",
                json={"newParentUuid": ids(w, o)["static"]},
            ),
            _p(
                "POST",
                f"/v1/groups/{ids(w, o)['static']}:move",
                json={"newParentUuid": w.tenants[c].root_id if c == o else ids(w, c)["static"]},
            ),
        ],
        ("POST", "/v1/groups/{groupUuid}:rename"): lambda w, c, o: [
            _p(
                "POST",
                f"/v1/groups/{w.fresh_group(o)['id']}:rename",
                json={"displayName": _fresh()},
            )
        ],
        ("DELETE", "/v1/groups/{groupUuid}"): lambda w, c, o: [
            _p("DELETE", f"/v1/groups/{w.fresh_group(o)['id']}")
        ],
        ("GET", "/v1/device_groups"): lambda w, c, o: [_p("GET", "/v1/device_groups")],
        ("GET", "/v1/device_groups/{groupUuid}/devices"): lambda w, c, o: [
            _p("GET", f"/v1/device_groups/{ids(w, o)['static']}/devices")
        ],
        ("GET", "/v1/devices/{deviceUuid}"): lambda w, c, o: [
            _p("GET", f"/v1/devices/{ids(w, o)['device']}")
        ],
        ("POST", "/v1/devices:batchImport"): lambda w, c, o: [
            _p(
                "POST",
                "/v1/devices:batchImport",
                json={"devices": [{"displayName": _fresh(), "groupUuid": ids(w, o)["static"]}]},
            )
        ],
    }


def _oaa_samples() -> dict[tuple[str, str], Sample]:
    base = "/oaa-policy/group/v1"
    return {
        ("POST", base): lambda w, c, o: [
            _p(
                "POST",
                base,
                json={
                    "agentid": w.agents[o],
                    "grouptype": "IPs",
                    "groupname": _fresh(),
                    "description": "",
                    "values": ["10.0.0.1"],
                },
            )
        ],
        ("GET", base): lambda w, c, o: [
            _p("GET", base, query={"agentid": w.agents[o]}, filter_only=True)
        ],
        ("GET", base + "/{groupid}"): lambda w, c, o: [_p("GET", f"{base}/{w.oaa_ids[o]}")],
        ("PUT", base + "/{groupid}"): lambda w, c, o: [
            _p("PUT", f"{base}/{w.oaa_ids[o]}", json={"addvalues": ["10.0.0.2"]})
        ],
        ("DELETE", base + "/{groupid}"): lambda w, c, o: [
            _p("DELETE", f"{base}/{_oaa_fresh(w, o)}")
        ],
    }


def _appviewx_samples() -> dict[tuple[str, str], Sample]:
    def names(w: World, t: str) -> dict[str, str]:
        return w.names[t]

    return {
        ("POST", "/avxapi/usergroup"): lambda w, c, o: [
            _p(
                "POST",
                "/avxapi/usergroup",
                json={"payload": {"name": _fresh(), "description": "d"}},
            )
        ],
        ("POST", "/avxapi/usergroup-search"): lambda w, c, o: [
            _p(
                "POST",
                "/avxapi/usergroup-search",
                json={"payload": {"filterValue": names(w, o)["user_group"]}},
            )
        ],
        ("PUT", "/avxapi/user-updateUsergroups"): lambda w, c, o: [
            _p(
                "PUT",
                "/avxapi/user-updateUsergroups",
                json={
                    "payload": {
                        "loginName": names(w, o)["user"],
                        "assignUserGroups": [names(w, o)["user_group"]],
                    }
                },
            ),
            _p(
                "PUT",
                "/avxapi/user-updateUsergroups",
                json={
                    "payload": {
                        "loginName": names(w, c)["user"],
                        "assignUserGroups": [names(w, o)["user_group"]],
                    }
                },
            ),
            _p(
                "PUT",
                "/avxapi/user-updateUsergroups",
                json={
                    "payload": {
                        "loginName": names(w, o)["user"],
                        "assignUserGroups": [names(w, c)["user_group"]],
                    }
                },
            ),
        ],
        ("DELETE", "/avxapi/userGroup"): lambda w, c, o: [
            _p(
                "DELETE",
                "/avxapi/userGroup",
                query={"userGroupName": w.fresh_group(o, kind="user")["name"]},
            )
        ],
    }


def _console_samples() -> dict[tuple[str, str], Sample]:
    # Releasing spends an activation: each probe gets a fresh one, the world's stays.
    release = "/console/licences/{id}/activations/{activation}/release"
    return {
        ("GET", "/console/groups/{id}"): lambda w, c, o: [
            _p("GET", f"/console/groups/{w.ids[o]['static']}")
        ],
        ("POST", "/console/sign-out"): lambda w, c, o: [_p("POST", "/console/sign-out")],
        # A restore or a purge spends its bin entry: each probe gets a fresh one.
        ("POST", "/console/bin/{id}/restore"): lambda w, c, o: [
            _p("POST", f"/console/bin/{w.fresh_binned(o)}/restore", follow=False)
        ],
        ("POST", "/console/bin/{id}/purge"): lambda w, c, o: [
            _p("POST", f"/console/bin/{w.fresh_binned(o)}/purge", follow=False)
        ],
        ("POST", release): lambda w, c, o: [
            _p(
                "POST",
                release.format(id=w.ids[o]["licence"], activation=w.fresh_activation(o)["id"]),
            )
        ],
    }


def _scim_samples() -> dict[tuple[str, str], Sample]:
    base = "/scim/v2"
    user_schema = "urn:ietf:params:scim:schemas:core:2.0:User"
    group_schema = "urn:ietf:params:scim:schemas:core:2.0:Group"
    patch_schema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"

    def ids(w: World, t: str) -> dict[str, str]:
        return w.ids[t]

    def patch(*operations: dict[str, Any]) -> dict[str, Any]:
        return {"schemas": [patch_schema], "Operations": list(operations)}

    def user_filter(w: World, o: str) -> dict[str, str]:
        return {"filter": f'userName eq "{w.names[o]["user"]}"'}

    def group_filter(w: World, o: str) -> dict[str, str]:
        return {"filter": f'displayName eq "{w.names[o]["user_group"]}"'}

    def members(*users: str) -> list[dict[str, str]]:
        return [{"value": user} for user in users]

    return {
        ("GET", f"{base}/Users"): lambda w, c, o: [
            _p("GET", f"{base}/Users", query=user_filter(w, o), filter_only=True)
        ],
        ("POST", f"{base}/Users/.search"): lambda w, c, o: [
            _p("POST", f"{base}/Users/.search", json=user_filter(w, o), filter_only=True)
        ],
        ("POST", f"{base}/Users"): lambda w, c, o: [
            _p("POST", f"{base}/Users", json={"schemas": [user_schema], "userName": _fresh()})
        ],
        ("GET", f"{base}/Users/{{id}}"): lambda w, c, o: [
            _p("GET", f"{base}/Users/{ids(w, o)['user']}")
        ],
        ("PUT", f"{base}/Users/{{id}}"): lambda w, c, o: [
            _p(
                "PUT",
                f"{base}/Users/{w.fresh_user(o)['id']}",
                json={"schemas": [user_schema], "userName": _fresh(), "active": False},
            )
        ],
        ("PATCH", f"{base}/Users/{{id}}"): lambda w, c, o: [
            _p(
                "PATCH",
                f"{base}/Users/{w.fresh_user(o)['id']}",
                json=patch({"op": "Replace", "path": "active", "value": "False"}),
            )
        ],
        ("DELETE", f"{base}/Users/{{id}}"): lambda w, c, o: [
            _p("DELETE", f"{base}/Users/{w.fresh_user(o)['id']}")
        ],
        ("GET", f"{base}/Groups"): lambda w, c, o: [
            _p("GET", f"{base}/Groups", query=group_filter(w, o), filter_only=True)
        ],
        ("POST", f"{base}/Groups/.search"): lambda w, c, o: [
            _p("POST", f"{base}/Groups/.search", json=group_filter(w, o), filter_only=True)
        ],
        ("POST", f"{base}/Groups"): lambda w, c, o: [
            _p("POST", f"{base}/Groups", json={"schemas": [group_schema], "displayName": _fresh()}),
            _p(
                "POST",
                f"{base}/Groups",
                json={
                    "schemas": [group_schema],
                    "displayName": _fresh(),
                    "members": members(ids(w, o)["user"]),
                },
            ),
        ],
        ("GET", f"{base}/Groups/{{id}}"): lambda w, c, o: [
            _p("GET", f"{base}/Groups/{ids(w, o)['user_group']}")
        ],
        ("PUT", f"{base}/Groups/{{id}}"): lambda w, c, o: [
            _p(
                "PUT",
                f"{base}/Groups/{w.fresh_group(o, kind='user')['id']}",
                json={"schemas": [group_schema], "displayName": _fresh(), "members": []},
            ),
            _p(
                "PUT",
                f"{base}/Groups/{w.fresh_group(c, kind='user')['id']}",
                json={
                    "schemas": [group_schema],
                    "displayName": _fresh(),
                    "members": members(w.fresh_user(o)["id"]),
                },
            ),
        ],
        ("PATCH", f"{base}/Groups/{{id}}"): lambda w, c, o: [
            _p(
                "PATCH",
                f"{base}/Groups/{w.fresh_group(o, kind='user')['id']}",
                json=patch({"op": "Add", "path": "members", "value": members(ids(w, o)["user"])}),
            ),
            _p(
                "PATCH",
                f"{base}/Groups/{w.fresh_group(c, kind='user')['id']}",
                json=patch({"op": "add", "path": "members", "value": members(ids(w, o)["user"])}),
            ),
        ],
        ("DELETE", f"{base}/Groups/{{id}}"): lambda w, c, o: [
            _p("DELETE", f"{base}/Groups/{w.fresh_group(o, kind='user')['id']}")
        ],
        ("GET", f"{base}/ResourceTypes/{{resourceType}}"): lambda w, c, o: [
            _p("GET", f"{base}/ResourceTypes/User")
        ],
        ("GET", f"{base}/Schemas/{{schema}}"): lambda w, c, o: [
            _p("GET", f"{base}/Schemas/{user_schema}")
        ],
    }


SAMPLES: dict[str, dict[tuple[str, str], Sample]] = {
    "console": _console_samples(),
    "native": _native_samples(),
    "eset": _eset_samples(),
    "oaa": _oaa_samples(),
    "appviewx": _appviewx_samples(),
    "scim": _scim_samples(),
}


def samples_for(world: World, endpoint: Endpoint, caller: str, owner: str) -> list[Probe] | None:
    """The surface's sample probes for ``endpoint``, with its query and headers added."""
    sample = SAMPLES.get(endpoint.surface.name, {}).get((endpoint.method, endpoint.path))
    if sample is None:
        return None
    profile = profile_of(endpoint)
    probes = sample(world, caller, owner)
    for probe in probes:
        probe.query = {**profile.query, **probe.query}
        probe.headers = {**profile.headers, **probe.headers}
    return probes
