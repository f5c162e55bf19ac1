"""The thin layer between Starlette and the services.

An ``Endpoint`` declares a route: its surface (which API it belongs to, and so how it
authenticates and renders errors), the least role it needs, its body and answer types
(for decoding and for the OpenAPI document), and a handler. Plain handlers run in one
worker-thread hop together with authentication and their unit of work, which commits
when the handler returns. Async handlers (a delete that waits for its operation) get an
authenticated request and run their own units of work. Reads declared ``inline`` (short
and indexed) run in the event loop instead, under a short deadline, and on a worker thread
when that is not enough (decision 0070).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import parse_qsl

import msgspec
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from groupd.errors import (
    AuthenticationFailed,
    GroupdError,
    InvalidInput,
    PayloadTooLarge,
    Unavailable,
    UnsupportedMediaType,
)
from groupd.services import accounts
from groupd.services.common import Actor
from groupd.store.db import UnitOfWork, request_deadline, retry_transient

if TYPE_CHECKING:
    from groupd.api.context import AppContext

log = logging.getLogger("groupd.api")
T = TypeVar("T")
_encoder = msgspec.json.Encoder()
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def encode(payload: Any) -> bytes:
    return _encoder.encode(payload)


class EncodedResponse(Response):
    """A response whose body is encoded already, its header list written directly:
    Starlette's ``init_headers`` re-encodes and searches the given headers on every
    answer (decision 0075). The same messages go out."""

    def __init__(
        self, body: bytes, status: int, media_type: str, headers: dict[str, str] | None
    ) -> None:
        self.status_code = status
        self.media_type = media_type
        self.background = None
        self.body = body
        raw: list[tuple[bytes, bytes]] = []
        if headers:
            raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            if any(name in (b"content-length", b"content-type") for name, _ in raw):
                self.init_headers(headers)  # the caller chose them: Starlette's way
                return
        if not (status < 200 or status in (204, 304)):
            raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", media_type.encode("latin-1")))
        self.raw_headers = raw


def json_response(
    payload: Any,
    status: int = 200,
    *,
    headers: dict[str, str] | None = None,
    media_type: str = "application/json",
) -> Response:
    if media_type.startswith("text/"):  # a charset to add: Starlette's way
        return Response(encode(payload), status, headers, media_type)
    return EncodedResponse(encode(payload), status, media_type, headers)


class Surface(Protocol):
    """One API face: how it finds the caller, and how it says what went wrong."""

    name: str

    def authenticate(self, req: ApiRequest) -> accounts.AccountView: ...

    def render_error(self, error: GroupdError, req: ApiRequest) -> Response: ...

    def render_internal_error(self, req: ApiRequest) -> Response: ...


@dataclass
class QueryParam:
    name: str
    type: str = "string"  # OpenAPI scalar type
    description: str = ""
    required: bool = False
    enum: list[str] | None = None
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None  # an ECMA regex the value must match (OpenAPI ``pattern``)
    min_length: int | None = None
    max_length: int | None = None
    format: str | None = None  # OpenAPI ``format``: uuid, date-time
    items: dict[str, Any] | None = None  # for an ``array`` (a repeated parameter)
    min_items: int | None = None
    max_items: int | None = None


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[[ApiRequest], Any]
    surface: Surface
    role: str | None = "viewer"  # None: no credentials needed
    write: bool = False
    summary: str = ""
    body: Any = None
    response: Any = None
    status: int = 200
    query: list[QueryParam] = field(default_factory=list)
    is_async: bool = False
    tags: list[str] = field(default_factory=list)
    headers: list[QueryParam] = field(default_factory=list)
    document: bool = True
    json_body: bool = True
    errors: tuple[int, ...] = (400, 401, 403, 404)
    raw_query: bool = False
    form: dict[str, Any] | None = None  # the JSON Schema of a form-encoded body
    # A read whose statements are short and indexed: on SQLite it runs in the event loop,
    # stopped after ``inline_read_budget_seconds`` and then run on a worker thread.
    inline: bool = False


class RequestHeaders(Headers):
    """Starlette's request headers, read in one pass: a lookup is a dict's, not a scan
    of the list with the name lowered again (a request asks for several)."""

    def __init__(self, scope: Scope) -> None:
        super().__init__(scope=scope)
        first: dict[bytes, str] = {}
        for name, value in self._list:
            if name not in first:
                first[name] = value.decode("latin-1")
        self._first = first

    def __getitem__(self, key: str) -> str:
        value = self._first.get(key.lower().encode("latin-1"))
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: Any) -> bool:
        return isinstance(key, str) and key.lower().encode("latin-1") in self._first

    def get(self, key: str, default: Any = None) -> Any:
        value = self._first.get(key.lower().encode("latin-1"))
        return default if value is None else value


class ApiRequest:
    """What a handler sees: the HTTP request, the caller, and its unit of work."""

    def __init__(
        self, scope: Scope, receive: Receive, endpoint: Endpoint, ctx: AppContext, body: bytes
    ) -> None:
        self.scope = scope
        self._receive = receive
        self._request: Request | None = None
        self.endpoint = endpoint
        self.ctx = ctx
        self.body = body
        self.headers: Headers = RequestHeaders(scope)
        self.path_params: dict[str, str] = scope.get("path_params") or {}
        state = scope.get("state")
        self.request_id: str = state.get("request_id", "") if state else ""
        client = scope.get("client")
        self.client_ip = client[0] if client else "unknown"
        self.account: accounts.AccountView | None = None
        self.actor_source: str | None = None
        self._actor: tuple[tuple[accounts.AccountView, str | None], Actor] | None = None
        self._uow: UnitOfWork | None = None
        self._query: dict[str, list[str]] | None = None
        self.rate_counted = False  # the rate limiter counted this request already
        self.now: datetime = ctx.clock()

    @property
    def request(self) -> Request:
        """Starlette's request object, made when a handler asks for it (its URL, its
        cookies): the hot reads never do."""
        if self._request is None:
            self._request = Request(self.scope, self._receive)
        return self._request

    # the caller -----------------------------------------------------------------------
    @property
    def actor(self) -> Actor:
        if self.account is None:
            raise AuthenticationFailed("credentials are required")
        key = (self.account, self.actor_source)
        if self._actor is None or self._actor[0] != key:
            actor = accounts.account_actor(
                self.account, request_id=self.request_id, source=self.actor_source
            )
            self._actor = (key, actor)
        return self._actor[1]

    @property
    def uow(self) -> UnitOfWork:
        assert self._uow is not None, "a unit of work exists only inside a handler's hop"
        return self._uow

    # query parameters ----------------------------------------------------------------
    @property
    def query(self) -> dict[str, list[str]]:
        if self._query is None:
            raw = self.scope.get("query_string", b"").decode("latin-1")
            if self.endpoint.raw_query:
                raw = raw.replace(";", "&")
            try:
                pairs = parse_qsl(
                    raw,
                    keep_blank_values=True,
                    strict_parsing=False,
                    errors="strict",
                    max_num_fields=200,
                )
            except (ValueError, UnicodeDecodeError):
                raise InvalidInput("the query string is malformed") from None
            parsed: dict[str, list[str]] = {}
            for key, value in pairs:
                refuse_nul(value, where=f"query parameter '{key}'")
                parsed.setdefault(key.strip(), []).append(value.strip())
            self._query = parsed
        return self._query

    def query_str(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        if not values:
            return default
        if len(values) > 1:
            raise InvalidInput(f"query parameter '{name}' is given more than once", field=name)
        return values[0]

    def query_bool(self, name: str, default: bool) -> bool:
        value = self.query_str(name)
        if value is None or value == "":
            return default
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise InvalidInput(f"query parameter '{name}' must be true or false", field=name)

    def query_int(
        self,
        name: str,
        default: int,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        clamp: bool = False,
    ) -> int:
        value = self.query_str(name)
        if value is None or value == "":
            return default
        try:
            number = int(value)
        except ValueError:
            raise InvalidInput(f"query parameter '{name}' must be an integer", field=name) from None
        if minimum is not None and number < minimum:
            raise InvalidInput(f"query parameter '{name}' must be at least {minimum}", field=name)
        if maximum is not None and number > maximum:
            if clamp:
                return maximum
            raise InvalidInput(f"query parameter '{name}' must be at most {maximum}", field=name)
        return number

    def query_float(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.query_str(name)
        if value is None or value == "":
            return default
        try:
            number = float(value)
        except ValueError:
            raise InvalidInput(f"query parameter '{name}' must be a number", field=name) from None
        if not minimum <= number <= maximum:
            raise InvalidInput(
                f"query parameter '{name}' must be between {minimum:g} and {maximum:g}",
                field=name,
            )
        return number

    # bodies --------------------------------------------------------------------------
    def decode(self, kind: type[T]) -> T:
        """The JSON body decoded into ``kind``; 415 for another media type, 400 if bad."""
        content_type = self.headers.get("content-type", "")
        media = content_type.split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(
                f"the body must be application/json, not '{media or 'none'}'"
            )
        if not self.body.strip():
            raise InvalidInput("a JSON body is required")
        check_json_depth(self.body, self.ctx.settings.max_json_depth)
        if b"\\u0000" in self.body:
            # Valid JSON, but no database stores NUL in text (PostgreSQL refuses it).
            raise InvalidInput("the body contains a NUL character (\\u0000)")
        decoder = _decoders.get(kind)
        if decoder is None:
            decoder = _decoders[kind] = msgspec.json.Decoder(kind)
        try:
            return decoder.decode(self.body)  # type: ignore[no-any-return]
        except msgspec.ValidationError as error:
            if str(error).startswith("Expected `int`, got `float`"):
                return _with_integral_numbers(self.body, kind)
            raise InvalidInput(f"invalid body: {error}", field=_field_of(error)) from None
        except msgspec.DecodeError as error:
            raise InvalidInput(f"the body is not valid JSON: {error}") from None
        except UnicodeDecodeError:
            # msgspec checks UTF-8 only when it builds a string, and lets this through.
            raise InvalidInput("the body is not valid JSON: a string in it is not UTF-8") from None

    def form(self) -> dict[str, str]:
        """A form-encoded body (``application/x-www-form-urlencoded``), or 415."""
        media = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType(
                f"the body must be application/x-www-form-urlencoded, not '{media or 'none'}'"
            )
        try:
            pairs = parse_qsl(self.body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
        except (ValueError, UnicodeDecodeError):
            raise InvalidInput("the form body is malformed") from None
        form: dict[str, str] = {}
        for key, value in pairs:
            refuse_nul(value, where=f"form field '{key}'")
            if key in form:
                raise InvalidInput(f"form field '{key}' is given more than once", field=key)
            form[key] = value
        return form

    # units of work for async handlers ------------------------------------------------
    async def transact(self, work: Callable[[UnitOfWork], T], *, write: bool = True) -> T:
        """Run ``work`` in a fresh unit of work on a worker thread; commit if it returns."""

        # Each unit of work of an async handler gets the whole budget: the handler's waiting
        # between them is bounded by its own parameters (a delete's ``wait``).
        budget = self.ctx.settings.request_time_budget_seconds

        def run_once() -> T:
            with (
                request_deadline(time.monotonic() + budget, budget),
                self.ctx.db.unit_of_work(write=write) as uow,
            ):
                result = work(uow)
                uow.commit()
                return result

        return await run_in_threadpool(retry_transient, run_once)


# msgspec names the place of a validation error as a JSON path at the end of its message
# (``... - at `$.group.parentGroupUuid```), and an unknown or missing field by name.
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_NAMED = re.compile(r"(?:unknown field|missing required field) `([^`]+)`")


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _with_integral_numbers(body: bytes, kind: type[T]) -> T:
    """The body decoded again with ``3.0`` read as ``3``: JSON has one number type, and
    JSON Schema's ``integer`` includes 3.0 (decision record 0022). Only a body that
    failed on exactly this pays for the second pass."""
    try:
        return msgspec.convert(_integral(msgspec.json.decode(body)), kind, strict=True)
    except msgspec.ValidationError as error:
        raise InvalidInput(f"invalid body: {error}", field=_field_of(error)) from None


def _field_of(error: msgspec.ValidationError) -> str | None:
    """The body field a validation error is about, as a dotted path (``group.foo``)."""
    message = str(error)
    at = _AT.search(message)
    named = _NAMED.search(message)
    parts = [part for part in (at.group(1) if at else "", named.group(1) if named else "") if part]
    return ".".join(parts) or None


def refuse_nul(value: str, *, where: str) -> None:
    if "\x00" in value:
        raise InvalidInput(f"{where} contains a NUL character")


def check_json_depth(body: bytes, limit: int) -> None:
    """Refuse JSON nested deeper than ``limit`` before any parser recurses into it."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return
    depth = 0
    in_string = False
    escaped = False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                raise InvalidInput(f"the JSON body is nested deeper than {limit} levels")
        elif byte in (0x5D, 0x7D):
            depth -= 1


def parse_basic(header_value: str) -> tuple[str, str]:
    """``username, password`` from the value after ``Basic``."""
    try:
        decoded = base64.b64decode(header_value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise AuthenticationFailed("the Basic credentials are not valid base64") from None
    username, sep, password = decoded.partition(":")
    if not sep or not username:
        raise AuthenticationFailed("the Basic credentials are malformed")
    return username, password


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared: bytes | None = None
    chunked = False
    for name, value in scope["headers"]:  # one pass, for the two headers that announce one
        if name == b"content-length":
            declared = value
        elif name == b"transfer-encoding":
            chunked = True
    if declared is None and not chunked:
        return b""  # no body announced (a GET, say): nothing to read
    if declared is not None:
        try:
            if int(declared) > limit:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        except ValueError:
            raise InvalidInput("Content-Length is not a number") from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in Request(scope, receive).stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class SegmentConvertor(Convertor[str]):
    """A path parameter stops at ``/`` and at ``:``, so ``/v1/devices/{uuid}`` does not
    swallow ``/v1/devices/<uuid>:move``, the custom methods the vendors' APIs use."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", SegmentConvertor())
_PARAM = re.compile(r"{(\w+)}")
# Path parameters that name a resource by UUID: ``{id}``, ``{objectId}``, ``{groupUuid}``.
# Case matters: OAA's ``{groupid}`` is a name or a number, SCIM's ``{schema}`` a URN.
UUID_PARAM = re.compile(r"^id$|Id$|Uuid$")


def route_path(path: str) -> str:
    """A declared path as Starlette routes it: a UUID parameter is one segment without a
    colon, so that it never swallows a custom method; others (a SCIM schema URN) may
    hold colons."""
    return _PARAM.sub(
        lambda m: f"{{{m.group(1)}:segment}}" if UUID_PARAM.search(m.group(1)) else m.group(0),
        path,
    )


def build_route(endpoint: Endpoint, ctx: AppContext) -> Route:
    """A Starlette route that runs ``endpoint`` with its surface's rules."""
    surface = endpoint.surface
    settings = ctx.settings
    budget = settings.request_time_budget_seconds

    inline_budget = settings.inline_read_budget_seconds
    runs_inline = (
        endpoint.inline
        and not endpoint.write
        and not endpoint.is_async
        and ctx.db.reads_in_loop
        and inline_budget > 0
        # A shared (Redis) counter is a network round trip: not in the event loop.
        and ctx.rate_limiter.counts_in_process
    )
    # A surface that can tell from the request alone that authenticating it costs one
    # indexed read (no password to hash) offers ``authenticates_cheaply``.
    cheap: Callable[[ApiRequest], bool] | None = getattr(surface, "authenticates_cheaply", None)
    runs_inline = runs_inline and cheap is not None

    def prepare(req: ApiRequest, uow: UnitOfWork) -> None:
        ctx.maintenance.check(uow)
        if not req.rate_counted:
            ctx.rate_limiter.check(surface.name, req)
            req.rate_counted = True
        if endpoint.role is not None:
            req._uow = uow
            req.account = surface.authenticate(req)
            req.actor.require(endpoint.role)

    # The time budget runs from the request's arrival, so time spent queueing for a worker
    # thread counts too; the deadline is set inside the thread that does the work.
    def run_sync(req: ApiRequest, deadline: float) -> Response:
        return retry_transient(lambda: run_sync_once(req, deadline))

    def run_sync_once(req: ApiRequest, deadline: float) -> Response:
        with (
            request_deadline(deadline, budget),
            ctx.db.unit_of_work(write=endpoint.write) as uow,
        ):
            prepare(req, uow)
            req._uow = uow
            response = endpoint.handler(req)
            uow.commit()
            return response  # type: ignore[no-any-return]

    def run_inline(req: ApiRequest, deadline: float) -> Response | None:
        """The read in the event loop, its statements stopped once they have taken
        ``inline_budget`` of the loop's processor time or waited that long for a lock:
        None when they were, so that it runs again on a worker thread."""
        try:
            with (
                request_deadline(deadline, budget, cpu_seconds=inline_budget),
                ctx.db.unit_of_work(write=False, in_loop=True) as uow,
            ):
                prepare(req, uow)
                req._uow = uow
                response = endpoint.handler(req)
                uow.commit()
                return response  # type: ignore[no-any-return]
        except Unavailable as error:
            if error.code != "time_budget_exceeded" or time.monotonic() >= deadline:
                raise
            return None
        finally:
            req._uow = None

    def authenticate_only(req: ApiRequest, deadline: float) -> None:
        with request_deadline(deadline, budget), ctx.db.unit_of_work(write=True) as uow:
            prepare(req, uow)
            uow.commit()
        req._uow = None

    async def respond(scope: Scope, receive: Receive) -> Response:
        req: ApiRequest | None = None
        deadline = time.monotonic() + budget
        try:
            body = await read_body(scope, receive, settings.max_body_bytes)
            req = ApiRequest(scope, receive, endpoint, ctx, body)
            if endpoint.is_async:
                await run_in_threadpool(authenticate_only, req, deadline)
                handler: Callable[[ApiRequest], Awaitable[Response]] = endpoint.handler
                return await handler(req)
            if runs_inline and cheap is not None and cheap(req):
                response = run_inline(req, deadline)
                if response is not None:
                    return response
            return await run_in_threadpool(run_sync, req, deadline)
        except GroupdError as error:
            if req is None:
                req = ApiRequest(scope, receive, endpoint, ctx, b"")
            return surface.render_error(error, req)
        except Exception:
            log.exception("unhandled error in %s %s", endpoint.method, endpoint.path)
            if req is None:
                req = ApiRequest(scope, receive, endpoint, ctx, b"")
            return surface.render_internal_error(req)

    async def asgi_endpoint(request: Request) -> Response:
        return await respond(request.scope, request.receive)

    if endpoint.inline:
        # A hot read: the app's request layer calls it directly (api/middleware.py).
        asgi_endpoint.fast_handler = respond  # type: ignore[attr-defined]
    return Route(route_path(endpoint.path), asgi_endpoint, methods=[endpoint.method], name=None)
