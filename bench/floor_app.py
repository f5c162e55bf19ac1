"""The floor for groupd's API path: bare Starlette + orjson, the same SQL, the same driver.

It serves the four requests that ``bench/api_throughput.py`` drives, on groupd's own
schema and data, with the same credential check as groupd (the SHA-256 of the bearer
token looked up in ``credentials`` joined to ``accounts``; kind, revocation, expiry and
the account's active flag checked), the same row reads and writes (a create also writes
its audit event; an added member too), and the same JSON shapes. What it leaves out is
everything of ours: the endpoint layer, the unit of work, SQLAlchemy, msgspec structs,
middleware (request ids, metrics, logs), maintenance and rate-limit gates.

Handlers are plain functions run in Starlette's thread pool, as groupd's are, each on a
connection taken from a small pool of raw driver connections (sqlite3 or
psycopg 3). Run it as ``uvicorn --factory bench.floor_app:create_app`` with
``FLOOR_DATABASE_URL`` set to groupd's database URL.
"""

from __future__ import annotations

import base64
import hashlib
import os
import queue
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

TOKEN_KINDS = ("access", "api")
GROUP_COLUMNS = (
    'g.id, g.uuid, p.uuid, g.kind, g.name, g.description, g.value_type, g."values", g.agent_id,'
    " g.linked_entity_type, g.linked_entity_ref, g.protected, g.version, g.created_at,"
    " g.updated_at"
)


class Unauthorized(Exception):
    pass


class Missing(Exception):
    pass


class Taken(Exception):
    pass


class Driver:
    """What differs between SQLite and PostgreSQL: placeholders, uuids, times, locks."""

    def __init__(self, url: str, size: int = 10) -> None:
        self.sqlite = url.startswith("sqlite")
        self.url = url
        self.p = "?" if self.sqlite else "%s"
        self.pool: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(size):
            self.pool.put(self._connect())

    def _connect(self) -> Any:
        if self.sqlite:
            connection = sqlite3.connect(
                self.url.removeprefix("sqlite:///"),
                timeout=30,
                isolation_level=None,
                check_same_thread=False,
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute("PRAGMA busy_timeout=30000")
            return connection
        import psycopg

        return psycopg.connect(
            self.url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
        )

    @contextmanager
    def connection(self) -> Iterator[Any]:
        connection = self.pool.get()
        try:
            yield connection
        finally:
            self.pool.put(connection)

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.connection() as connection:
            if self.sqlite:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.execute("ROLLBACK")
                    raise
                connection.execute("COMMIT")
            else:
                with connection.transaction():
                    yield connection

    def key(self, value: str) -> Any:
        """A uuid as the column stores it (SQLite: its 16 bytes; PostgreSQL: uuid)."""
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise Missing(value) from None
        return parsed.bytes if self.sqlite else parsed

    def out_uuid(self, value: Any) -> str | None:
        if value is None:
            return None
        return str(uuid.UUID(bytes=value)) if self.sqlite else str(value)

    def now(self) -> Any:
        """Now as the column stores it (SQLite: microseconds since 1970; PostgreSQL:
        timestamptz)."""
        moment = datetime.now(UTC)
        return (moment - EPOCH) // MICROSECOND if self.sqlite else moment

    def stamp(self, value: Any) -> str:
        moment = EPOCH + int(value) * MICROSECOND if self.sqlite else value
        return str(moment.isoformat().replace("+00:00", "Z"))

    def json_in(self, value: Any) -> Any:
        return orjson.loads(value) if self.sqlite and isinstance(value, str) else value


def create_app() -> Starlette:
    db = Driver(os.environ["FLOOR_DATABASE_URL"], int(os.environ.get("FLOOR_POOL_SIZE", "10")))
    p = db.p
    auth_sql = (
        "SELECT c.kind, c.revoked_at, c.expires_at, a.id, a.tenant_id, a.username, a.role,"
        " a.active FROM credentials c JOIN accounts a ON a.id = c.account_id"
        f" WHERE c.token_hash = {p}"
    )
    get_sql = (
        f"SELECT {GROUP_COLUMNS} FROM groups g LEFT JOIN groups p ON p.id = g.parent_id"
        f" WHERE g.uuid = {p} AND g.tenant_id = {p} AND g.state = 'live'"
    )
    parent_sql = f"SELECT id FROM groups WHERE uuid = {p} AND tenant_id = {p} AND state = 'live'"
    list_sql = (
        f"SELECT {GROUP_COLUMNS} FROM groups g LEFT JOIN groups p ON p.id = g.parent_id"
        f" WHERE g.tenant_id = {p} AND g.state = 'live' AND g.id > {p}"
        f" AND g.parent_id = {p} ORDER BY g.id LIMIT {p}"
    )
    lock = "" if db.sqlite else " FOR SHARE"
    create_parent_sql = (
        f"SELECT id, path, kind, depth FROM groups WHERE uuid = {p}"
        f" AND tenant_id = {p} AND state = 'live'{lock}"
    )
    next_id_sql = (
        "SELECT coalesce(max(id), 0) + 1 FROM groups"
        if db.sqlite
        else "SELECT nextval(pg_get_serial_sequence('groups', 'id'))"
    )
    insert_sql = (
        "INSERT INTO groups (id, uuid, tenant_id, parent_id, path, depth, kind, name,"
        " description, protected, state, version, created_at, updated_at) VALUES"
        f" ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, '', false, 'live', 1, {p}, {p})"
    )
    audit_sql = (
        "INSERT INTO audit_events (tenant_id, actor, action, target_type, target_uuid,"
        " target_name, request_id, source, outcome, counts, detail, at) VALUES"
        f" ({p}, {p}, {p}, 'group', {p}, {p}, {p}, NULL, 'succeeded', '{{}}', {p}, {p})"
    )
    member_group_sql = (
        f"SELECT id, kind, name FROM groups WHERE uuid = {p} AND tenant_id = {p}"
        f" AND state = 'live'{'' if db.sqlite else ' FOR UPDATE'}"
    )
    member_object_sql = (
        "SELECT o.id, o.kind FROM objects o JOIN groups h ON h.id = o.home_group_id"
        f" WHERE o.uuid = {p} AND o.tenant_id = {p} AND h.state = 'live'"
    )
    membership_sql = (
        "INSERT INTO memberships (group_id, object_id, tenant_id, created_at) VALUES"
        f" ({p}, {p}, {p}, {p}) ON CONFLICT DO NOTHING"
    )

    def authenticate(connection: Any, request: Request) -> tuple[int, str]:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized()
        digest = hashlib.sha256(secret.strip().encode()).hexdigest()
        row = connection.execute(auth_sql, (digest,)).fetchone()
        if row is None:
            raise Unauthorized()
        kind, revoked_at, expires_at, _account, tenant_id, username, _role, active = row
        expired = expires_at <= db.now()
        if kind not in TOKEN_KINDS or revoked_at is not None or expired or not active:
            raise Unauthorized()
        return int(tenant_id), str(username)

    def render(row: Any) -> dict[str, Any]:
        linked = {"type": row[9], "ref": row[10]} if row[9] else None
        return {
            "id": db.out_uuid(row[1]),
            "parentId": db.out_uuid(row[2]),
            "name": row[4],
            "description": row[5],
            "kind": row[3],
            "valueType": row[6],
            "values": db.json_in(row[7]),
            "linkedEntity": linked,
            "protected": bool(row[11]),
            "agentId": row[8],
            "createdAt": db.stamp(row[13]),
            "updatedAt": db.stamp(row[14]),
        }

    def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return Response(orjson.dumps(payload), status, headers, media_type="application/json")

    def guarded(handler: Any) -> Any:
        """Read the body on the event loop, run the handler in the thread pool (as groupd
        does), and map the two refusals."""

        def run(request: Request, body: bytes) -> Response:
            try:
                return handler(request, body)  # type: ignore[no-any-return]
            except Unauthorized:
                return answer({"code": "unauthorized"}, 401)
            except Missing:
                return answer({"code": "not_found"}, 404)
            except Taken:
                return answer({"code": "name_taken"}, 409)

        async def endpoint(request: Request) -> Response:
            body = await request.body() if request.method in ("POST", "PUT") else b""
            return await run_in_threadpool(run, request, body)

        return endpoint

    @guarded
    def get_group(request: Request, _body: bytes) -> Response:
        with db.connection() as connection:
            tenant_id, _ = authenticate(connection, request)
            row = connection.execute(
                get_sql, (db.key(request.path_params["id"]), tenant_id)
            ).fetchone()
        if row is None:
            raise Missing()
        return answer(render(row), headers={"ETag": f'"{row[12]}"'})

    @guarded
    def list_groups(request: Request, _body: bytes) -> Response:
        limit = int(request.query_params.get("limit", "50"))
        with db.connection() as connection:
            tenant_id, _ = authenticate(connection, request)
            parent = connection.execute(
                parent_sql, (db.key(request.query_params["parentId"]), tenant_id)
            ).fetchone()
            if parent is None:
                raise Missing()
            rows = connection.execute(list_sql, (tenant_id, 0, parent[0], limit + 1)).fetchall()
        items = [render(row) for row in rows[:limit]]
        cursor = (
            base64.urlsafe_b64encode(f"k{rows[limit - 1][0]}".encode()).decode().rstrip("=")
            if len(rows) > limit
            else None
        )
        return answer({"items": items, "nextCursor": cursor})

    @guarded
    def create_group(request: Request, raw: bytes) -> Response:
        body = orjson.loads(raw)
        name, parent_uuid = body["name"], body["parentId"]
        now = db.now()
        new_uuid = uuid.uuid4()
        with db.transaction() as connection:
            tenant_id, username = authenticate(connection, request)
            parent = connection.execute(
                create_parent_sql, (db.key(parent_uuid), tenant_id)
            ).fetchone()
            if parent is None:
                raise Missing()
            parent_id, parent_path, kind, depth = parent
            group_id = int(connection.execute(next_id_sql).fetchone()[0])
            stored_uuid = new_uuid.bytes if db.sqlite else new_uuid
            try:
                connection.execute(
                    insert_sql,
                    (
                        group_id,
                        stored_uuid,
                        tenant_id,
                        parent_id,
                        f"{parent_path}{group_id}/",
                        depth + 1,
                        kind,
                        name,
                        now,
                        now,
                    ),
                )
            except Exception as error:  # the driver's unique violation: name taken
                if "unique" in str(error).lower():
                    raise Taken() from None
                raise
            connection.execute(
                audit_sql,
                (
                    tenant_id,
                    username,
                    "group.create",
                    stored_uuid,
                    name,
                    str(uuid.uuid4()),
                    None,
                    now,
                ),
            )
        stamp = db.stamp(now)
        payload = {
            "id": str(new_uuid),
            "parentId": parent_uuid,
            "name": name,
            "description": "",
            "kind": kind,
            "valueType": None,
            "values": None,
            "linkedEntity": None,
            "protected": False,
            "agentId": None,
            "createdAt": stamp,
            "updatedAt": stamp,
        }
        return answer(payload, 201, {"ETag": '"1"', "Location": f"/api/v1/groups/{new_uuid}"})

    @guarded
    def put_member(request: Request, _body: bytes) -> Response:
        now = db.now()
        group_key = db.key(request.path_params["id"])
        with db.transaction() as connection:
            tenant_id, username = authenticate(connection, request)
            group = connection.execute(member_group_sql, (group_key, tenant_id)).fetchone()
            if group is None or group[1] != "user":
                raise Missing()
            member = connection.execute(
                member_object_sql, (db.key(request.path_params["objectId"]), tenant_id)
            ).fetchone()
            if member is None or member[1] != "user":
                raise Missing()
            added = (
                connection.execute(membership_sql, (group[0], member[0], tenant_id, now)).rowcount
                == 1
            )
            if added:
                connection.execute(
                    audit_sql,
                    (
                        tenant_id,
                        username,
                        "membership.add",
                        group_key,
                        None,
                        str(uuid.uuid4()),
                        f"member {request.path_params['objectId']}",
                        now,
                    ),
                )
        return Response(status_code=201 if added else 204)

    def healthz(_: Request) -> Response:
        return answer({"status": "ok"})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/v1/groups/{id}", get_group, methods=["GET"]),
            Route("/api/v1/groups", list_groups, methods=["GET"]),
            Route("/api/v1/groups", create_group, methods=["POST"]),
            Route("/api/v1/groups/{id}/members/{objectId}", put_member, methods=["PUT"]),
        ]
    )
