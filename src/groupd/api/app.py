"""The ASGI application: every surface's endpoints on one server."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Scope

from groupd.api import console, docs
from groupd.api.context import AppContext
from groupd.api.http import Endpoint, build_route, json_response
from groupd.api.middleware import FastRoutes, Metrics, RequestContext
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
    endpoints.extend(console.endpoints())
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


class GroupdApp(Starlette):
    """Starlette with groupd's one request layer outermost: it gives every request its id,
    access line and metrics, and serves the hot reads straight from the route table
    (``FastRoutes``, decision 0075); everything else goes through Starlette's layers."""

    def __init__(self, *, metrics: Metrics, **options: Any) -> None:
        self.metrics = metrics
        super().__init__(**options)

    def build_middleware_stack(self) -> ASGIApp:
        # Built on the first request, so routes added after ``create_app`` count too.
        stack = super().build_middleware_stack()
        fast = FastRoutes(self.router.routes) if self.max_body_size is None else None
        return RequestContext(stack, self.metrics, fast)


def create_app(
    settings: Settings | None = None,
    *,
    context: AppContext | None = None,
    start_worker: bool | None = None,
) -> GroupdApp:
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

    routes: list[BaseRoute] = [build_route(endpoint, ctx) for endpoint in endpoints]
    routes += console.routes(ctx)
    routes += [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint, methods=["GET"]),
        *docs.routes(),
    ]

    def allowed_methods(scope: Scope) -> set[str]:
        """Every method some route serves at this path (RFC 9110 §15.5.6)."""
        allowed: set[str] = set()
        for route in routes:
            matched, _ = route.matches(scope)
            if matched is Match.NONE:
                continue
            if isinstance(route, Route) and route.methods:
                allowed |= route.methods
            elif isinstance(route, Mount):  # the docs page's static files
                allowed |= {"GET", "HEAD"}
        return allowed

    # Paths no route serves, or methods a path does not serve, answer in the form of the
    # surface whose prefix the path has (ESET's google.rpc.Status under /v1/); the
    # native problem+json everywhere else.
    prefixed: dict[str, Callable[..., Response]] = {
        prefix: surface.render_http_error  # type: ignore[attr-defined]
        for surface in {id(e.surface): e.surface for e in endpoints}.values()
        for prefix in getattr(surface, "http_prefixes", ())
    }

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        request_id = request.scope.get("state", {}).get("request_id", "")
        headers = dict(exc.headers or {})
        detail = str(exc.detail)
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(sorted(allowed_methods(request.scope)))
        if request.url.path.startswith(SCIM_BASE + "/"):
            return scim_http_error(request.url.path, exc.status_code, detail, headers)
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed here; allowed: {headers['Allow']}"
        elif exc.status_code == 404:
            detail = f"no resource at {request.url.path}"
        for prefix, render in prefixed.items():
            if request.url.path.startswith(prefix):
                return render(exc.status_code, detail, headers=headers)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
        body = problem(exc.status_code, title, code, detail, request_id)
        return json_response(body, exc.status_code, media_type=PROBLEM, headers=headers)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        run_worker = settings.worker_enabled if start_worker is None else start_worker
        if run_worker:
            ctx.worker.start()
        run_webhooks = settings.webhook_delivery_enabled if start_worker is None else start_worker
        if run_webhooks:
            ctx.delivery.start()
        # What start-up built (modules, mappers, the route table, the OpenAPI document)
        # lives as long as the process: keep it out of the garbage collector's full
        # collections, which otherwise walk it all (tens of milliseconds each).
        gc.collect()
        gc.freeze()
        try:
            yield {}
        finally:
            if run_webhooks:
                ctx.delivery.stop()
            if run_worker:
                ctx.worker.stop()

    app = GroupdApp(
        metrics=metrics,
        routes=routes,
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.endpoints = endpoints
    return app
