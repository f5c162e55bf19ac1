"""The async floor of groupd's read path: bare Starlette, no thread hop, orjson out.

The limit of groupd's stack for a read (issue 24): an ``async def`` handler under the same
uvicorn, the SHA-256 of the bearer token looked up by its unique index (joined to its
account by primary key, so the same flags as groupd's are checked: kind, revocation,
expiry, the account's active flag), the row(s) read by an indexed lookup, and the same
JSON written by orjson. On SQLite the statements run with the standard ``sqlite3`` module
on one connection, in the event loop; on PostgreSQL on psycopg 3's async connections (a
small pool), since a blocking round trip in the event loop would idle the core.

It serves the two reads ``bench/api_throughput.py`` compares with it: a group by id and a
page of 50 children. Everything else (writes, the thread-pool floor's execution model)
is ``bench/floor_app.py``. Run it as ``uvicorn --factory bench.async_floor_app:create_app``
with ``FLOOR_DATABASE_URL`` set to groupd's database URL.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.floor_app import GROUP_COLUMNS, TOKEN_KINDS, Driver, Missing, Unauthorized

Rows = Callable[[str, tuple[Any, ...]], Awaitable[list[Any]]]


class SqliteRunner:
    """One ``sqlite3`` connection, used only from the event loop."""

    def __init__(self, driver: Driver) -> None:
        self.connection = sqlite3.connect(
            driver.url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False
        )
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            self.connection.execute(f"PRAGMA {pragma}")

    async def rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        return self.connection.execute(sql, params).fetchall()

    async def close(self) -> None:
        self.connection.close()


class PostgresRunner:
    """A few psycopg 3 async connections in autocommit, taken in turn."""

    def __init__(self, driver: Driver, size: int) -> None:
        self.url = driver.url.replace("postgresql+psycopg://", "postgresql://")
        self.size = size
        self.pool: asyncio.LifoQueue[Any] = asyncio.LifoQueue()

    async def open(self) -> None:
        import psycopg

        for _ in range(self.size):
            self.pool.put_nowait(await psycopg.AsyncConnection.connect(self.url, autocommit=True))

    async def rows(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        connection = await self.pool.get()
        try:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            self.pool.put_nowait(connection)

    async def close(self) -> None:
        while not self.pool.empty():
            await self.pool.get_nowait().close()


def create_app() -> Starlette:
    # The thread-pool floor's helpers for uuids, times and JSON; no connections of its own.
    db = Driver(os.environ["FLOOR_DATABASE_URL"], size=0)
    size = int(os.environ.get("FLOOR_POOL_SIZE", "10"))
    runner: SqliteRunner | PostgresRunner = (
        SqliteRunner(db) if db.sqlite else PostgresRunner(db, size)
    )
    p = db.p
    auth_sql = (
        "SELECT c.kind, c.revoked_at, c.expires_at, a.tenant_id, a.active FROM credentials c"
        f" JOIN accounts a ON a.id = c.account_id WHERE c.token_hash = {p}"
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

    async def authenticate(request: Request) -> int:
        scheme, _, secret = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise Unauthorized()
        digest = hashlib.sha256(secret.strip().encode()).hexdigest()
        rows = await runner.rows(auth_sql, (digest,))
        if not rows:
            raise Unauthorized()
        kind, revoked_at, expires_at, tenant_id, active = rows[0]
        if kind not in TOKEN_KINDS or revoked_at is not None or expires_at <= db.now():
            raise Unauthorized()
        if not active:
            raise Unauthorized()
        return int(tenant_id)

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

    async def get_group(request: Request) -> Response:
        try:
            tenant_id = await authenticate(request)
            rows = await runner.rows(get_sql, (db.key(request.path_params["id"]), tenant_id))
            if not rows:
                raise Missing()
        except Unauthorized:
            return answer({"code": "unauthorized"}, 401)
        except Missing:
            return answer({"code": "not_found"}, 404)
        return answer(render(rows[0]), headers={"ETag": f'"{rows[0][12]}"'})

    async def list_groups(request: Request) -> Response:
        limit = int(request.query_params.get("limit", "50"))
        try:
            tenant_id = await authenticate(request)
            parent = await runner.rows(
                parent_sql, (db.key(request.query_params["parentId"]), tenant_id)
            )
            if not parent:
                raise Missing()
            rows = await runner.rows(list_sql, (tenant_id, 0, parent[0][0], limit + 1))
        except Unauthorized:
            return answer({"code": "unauthorized"}, 401)
        except Missing:
            return answer({"code": "not_found"}, 404)
        items = [render(row) for row in rows[:limit]]
        cursor = (
            base64.urlsafe_b64encode(f"k{rows[limit - 1][0]}".encode()).decode().rstrip("=")
            if len(rows) > limit
            else None
        )
        return answer({"items": items, "nextCursor": cursor})

    async def healthz(_: Request) -> Response:
        return answer({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if isinstance(runner, PostgresRunner):
            await runner.open()
        try:
            yield
        finally:
            await runner.close()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/api/v1/groups/{id}", get_group, methods=["GET"]),
            Route("/api/v1/groups", list_groups, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
