"""The ASGI application: every surface's endpoints on one server."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from groupd.api.context import AppContext
from groupd.api.http import Endpoint, build_route, json_response
from groupd.api.middleware import Metrics, RequestContextMiddleware
from groupd.api.native import accounts as native_accounts
from groupd.api.native import audit as native_audit
from groupd.api.native import bin as native_bin
from groupd.api.native import groups as native_groups
from groupd.api.native import licenses as native_licenses
from groupd.api.native import objects as native_objects
from groupd.api.native import operations as native_operations
from groupd.api.native import webhooks as native_webhooks
from groupd.api.native.surface import PROBLEM, problem
from groupd.api.openapi import build_openapi
from groupd.api.scim.surface import SCIM_BASE, scim_http_error
from groupd.settings import Settings, get_settings

log = logging.getLogger("groupd.api")

DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>groupd API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def all_endpoints() -> list[Endpoint]:
    """Every endpoint of every surface, in one list (the route table and the OpenAPI)."""
    endpoints: list[Endpoint] = []
    # Starlette tries routes in order: the busiest (groups, objects) go first.
    for module in (
        native_groups,
        native_objects,
        native_accounts,
        native_licenses,
        native_operations,
        native_bin,
        native_audit,
        native_webhooks,
    ):
        endpoints.extend(module.endpoints())
    endpoints.extend(_dialect_endpoints())
    return endpoints


def _dialect_endpoints() -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    import importlib

    for name in ("groupd.api.eset", "groupd.api.oaa", "groupd.api.appviewx", "groupd.api.scim"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        endpoints.extend(module.endpoints())
    return endpoints


def create_app(
    settings: Settings | None = None,
    *,
    context: AppContext | None = None,
    start_worker: bool | None = None,
) -> Starlette:
    settings = settings or (context.settings if context else get_settings())
    ctx = context or AppContext.create(settings)
    metrics = Metrics()
    endpoints = all_endpoints()
    openapi = build_openapi(endpoints)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        from starlette.concurrency import run_in_threadpool

        def ping() -> None:
            with ctx.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))

        try:
            await run_in_threadpool(ping)
        except Exception as error:  # any failure to reach the database means not ready
            log.warning("readiness check failed: %s", error)
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "reachable"})

    async def metrics_endpoint(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi_endpoint(_: Request) -> Response:
        return json_response(openapi)

    async def docs(_: Request) -> Response:
        return HTMLResponse(DOCS_PAGE)

    routes: list[BaseRoute] = [build_route(endpoint, ctx) for endpoint in endpoints]
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    try:
        import swagger_ui_bundle

        routes.append(
            Mount("/docs/static", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path))
        )
    except ImportError:  # the docs page then shows the raw document link only
        pass

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith(SCIM_BASE + "/"):
            return scim_http_error(
                request.url.path, exc.status_code, str(exc.detail), dict(exc.headers or {})
            )
        request_id = request.scope.get("state", {}).get("request_id", "")
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = problem(
            exc.status_code,
            str(exc.detail),
            code,
            f"{request.method} {request.url.path}: {exc.detail}",
            request_id,
        )
        return json_response(
            body, exc.status_code, media_type=PROBLEM, headers=dict(exc.headers or {})
        )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        run_worker = settings.worker_enabled if start_worker is None else start_worker
        if run_worker:
            ctx.worker.start()
        run_webhooks = settings.webhook_delivery_enabled if start_worker is None else start_worker
        if run_webhooks:
            ctx.webhooks.start()
        # What start-up built (modules, mappers, the route table, the OpenAPI document)
        # lives as long as the process: keep it out of the garbage collector's full
        # collections, which otherwise walk it all (tens of milliseconds each).
        gc.collect()
        gc.freeze()
        try:
            yield {}
        finally:
            if run_webhooks:
                ctx.webhooks.stop()
            if run_worker:
                ctx.worker.stop()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContextMiddleware, metrics=metrics)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.endpoints = endpoints
    return app
