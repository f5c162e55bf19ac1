"""/api/v1/audit: the tenant's audit trail."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.common import PAGING, limit_and_cursor
from groupd.api.native.surface import NATIVE
from groupd.errors import InvalidInput
from groupd.services import audit


def _time(req: ApiRequest, name: str) -> datetime | None:
    raw = req.query_str(name)
    if not raw:
        return None
    try:
        # RFC 3339 allows a lower-case "t" and "z"
        value = datetime.fromisoformat(raw.upper().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 time", field=name) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def list_events(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = audit.list_events(
        req.uow,
        actor=req.actor,
        target=req.query_str("target"),
        action=req.query_str("action"),
        since=_time(req, "since"),
        until=_time(req, "until"),
        limit=limit,
        cursor=cursor,
    )
    return json_response(
        s.AuditPage(items=[render.audit_event(v) for v in page.items], next_cursor=page.next_cursor)
    )


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "GET",
            "/api/v1/audit",
            list_events,
            NATIVE,
            summary="The audit trail",
            response=s.AuditPage,
            tags=["audit"],
            query=[
                QueryParam("target", description="id of the target", format="uuid"),
                QueryParam("action", description="e.g. group.delete.accepted"),
                QueryParam("since", description="RFC 3339 time, inclusive", format="date-time"),
                QueryParam("until", description="RFC 3339 time, exclusive", format="date-time"),
                *PAGING,
            ],
        ),
    ]
