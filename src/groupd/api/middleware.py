"""Pure-ASGI middleware: request ids, one JSON log line per request, metrics."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("groupd.access")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "groupd_http_requests_total",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "groupd_http_request_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        # The labelled series, looked up once each: ``labels()`` validates and locks on
        # every call, a measurable share of a fast request.
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def count(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.requests.labels(method, route, str(status)),
                self.latency.labels(method, route),
            )
        requests, latency = series
        requests.inc()
        latency.observe(seconds)


class RequestContextMiddleware:
    """Gives every request an id (``request-id`` on every answer, errors included),
    logs it as one JSON line, and counts it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            self.metrics.count(scope["method"], route, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                line = orjson.dumps(
                    {
                        "requestId": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "client": (scope.get("client") or ("", 0))[0],
                    }
                ).decode()
                # The record made directly: ``info()`` would also walk the stack for the
                # caller's file and line, which no access line shows (decision 0072).
                access_log.handle(
                    access_log.makeRecord(access_log.name, logging.INFO, "", 0, line, (), None)
                )


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", "unmatched")
