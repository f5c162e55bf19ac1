"""The one ASGI layer around the app: request ids, one JSON log line per request, metrics,
and the route table's hot reads dispatched without Starlette's layers (decision 0075)."""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Sample
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("groupd.access")
# The methods counted under their own name; any other is ``other``, so a client cannot
# mint new series with made-up methods (unmatched paths are one label, ``unmatched``).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60)
# A route's handler for the fast dispatch: the scope and ``receive`` in, the answer out.
FastHandler = Callable[[Scope, Receive], Awaitable[Response]]


class _Series:
    """One (method, route, status) series: its count, latency buckets and sum."""

    __slots__ = ("buckets", "created", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: +Inf
        self.total = 0.0
        self.created = time.time()


class Metrics:
    """``groupd_http_requests_total`` (method, route, status) and the histogram
    ``groupd_http_request_seconds`` (method, route), as prometheus-client's Counter and
    Histogram expose them, counted in plain numbers under one lock and turned into samples
    when scraped: the library's per-observation locks and bucket search were a measurable
    share of a fast request (decision 0075)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._series: dict[tuple[str, str, int], _Series] = {}
        self._lock = threading.Lock()
        self.registry.register(self)

    def count(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        index = bisect.bisect_left(LATENCY_BUCKETS, seconds)  # le: a bucket holds its bound
        with self._lock:
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series()
            series.buckets[index] += 1
            series.total += seconds

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("groupd_http_requests", "HTTP requests")
        yield HistogramMetricFamily("groupd_http_request_seconds", "HTTP request latency")

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = [
                (key, list(series.buckets), series.total, series.created)
                for key, series in self._series.items()
            ]
        requests = CounterMetricFamily(
            "groupd_http_requests", "HTTP requests", labels=["method", "route", "status"]
        )
        latency = HistogramMetricFamily(
            "groupd_http_request_seconds", "HTTP request latency", labels=["method", "route"]
        )
        # The histogram is per (method, route): the statuses' series add up.
        merged: dict[tuple[str, str], tuple[list[int], float, float]] = {}
        for (method, route, status), buckets, total, created in snapshot:
            requests.add_metric([method, route, str(status)], sum(buckets), created=created)
            held = merged.get((method, route))
            if held is None:
                merged[(method, route)] = (buckets, total, created)
            else:
                merged[(method, route)] = (
                    [a + b for a, b in zip(held[0], buckets, strict=True)],
                    held[1] + total,
                    min(held[2], created),
                )
        for (method, route), (buckets, total, created) in merged.items():
            cumulative, running = [], 0
            for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                running += count
                cumulative.append((_bound(bound), running))
            latency.add_metric([method, route], cumulative, total)
            labels = {"method": method, "route": route}
            latency.samples.append(Sample(latency.name + "_created", labels, created))
        yield requests
        yield latency


def _bound(value: float) -> str:
    """A bucket's ``le`` as prometheus-client writes it (``0.001``, ``1.0``, ``+Inf``)."""
    return "+Inf" if value == float("inf") else repr(float(value))


def request_id() -> str:
    """A random (version 4) UUID as text, without making a ``uuid.UUID`` to format it."""
    h = os.urandom(16).hex()
    variant = "89ab"[int(h[16], 16) & 3]
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"


class FastRoutes:
    """The leading routes of the table, up to the last one that offers a fast handler:
    a request one of those serves (the first whose path and method match, as Starlette's
    router picks) goes straight to its handler, skipping Starlette's error and exception
    layers, its router and its per-route request wrapper; any other request takes them.
    The handlers answer every error themselves."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        leading: list[Route] = []
        for route in routes:
            if type(route) is not Route:  # a mount, a host: only plain routes are read here
                break
            leading.append(route)
        last = max(
            (i for i, route in enumerate(leading) if _fast_handler(route) is not None),
            default=-1,
        )
        self.table: list[tuple[re.Pattern[str], Collection[str], Route, FastHandler | None]] = [
            (route.path_regex, route.methods or frozenset(), route, _fast_handler(route))
            for route in leading[: last + 1]
        ]
        self.methods = frozenset(
            method for _, methods, _, fast in self.table if fast is not None for method in methods
        )

    def match(self, scope: Scope) -> tuple[Route, FastHandler] | None:
        if scope["method"] not in self.methods or scope.get("root_path"):
            return None
        path = scope["path"]
        method = scope["method"]
        for regex, methods, route, fast in self.table:
            found = regex.match(path)
            if found is None or method not in methods:
                continue  # Starlette, too, keeps looking for a full match
            if fast is None:
                return None
            params = found.groupdict()
            if params:
                convertors = route.param_convertors
                scope["path_params"] = {k: convertors[k].convert(v) for k, v in params.items()}
            else:
                scope["path_params"] = {}
            scope["route"] = route
            scope["endpoint"] = route.endpoint
            return route, fast
        return None


def _fast_handler(route: Route) -> FastHandler | None:
    return getattr(route.endpoint, "fast_handler", None)


class RequestContext:
    """Gives every request an id (``request-id`` on every answer, errors included),
    logs it as one JSON line, and counts it; serves the hot reads (``FastRoutes``)
    itself and hands every other request to ``app``."""

    def __init__(self, app: ASGIApp, metrics: Metrics, fast: FastRoutes | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.fast = fast

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id()
        state = scope.get("state")
        if state is None:
            state = scope["state"] = {}
        state["request_id"] = rid
        started = time.perf_counter()
        status = 500
        try:
            found = self.fast.match(scope) if self.fast is not None else None
            if found is not None:
                response = await found[1](scope, receive)
                status = response.status_code
                response.raw_headers.append((b"request-id", rid.encode()))
                await response(scope, receive, send)
            else:

                async def send_with_id(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        headers = list(message.get("headers", []))
                        headers.append((b"request-id", rid.encode()))
                        message["headers"] = headers
                    await send(message)

                await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_of(scope)
            method = scope["method"]
            counted = method if method in KNOWN_METHODS else "other"
            self.metrics.count(counted, route, status, elapsed)
            if access_log.isEnabledFor(logging.INFO):
                client = scope.get("client")
                line = orjson.dumps(
                    {
                        "requestId": rid,
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                        "client": client[0] if client else "",
                    }
                ).decode()
                # The record made directly: ``info()`` would also walk the stack for the
                # caller's file and line, which no access line shows (decision 0072).
                access_log.handle(
                    access_log.makeRecord(access_log.name, logging.INFO, "", 0, line, (), None)
                )


_ROUTE_NAMES: dict[str, str] = {}


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    if route is None:
        return "unmatched"
    path = str(getattr(route, "path", "unmatched"))
    name = _ROUTE_NAMES.get(path)
    if name is None:
        # the declared path, as the OpenAPI document names it (``{id}``, not ``{id:segment}``)
        name = _ROUTE_NAMES[path] = path.replace(":segment}", "}")
    return name
