"""Deleting groups, and the operations that carry long deletes."""

from __future__ import annotations

import math

from starlette.responses import Response

from groupd.api import conditional, wire
from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.common import CONDITIONS
from groupd.api.native.surface import NATIVE
from groupd.api.waiting import wait_for_operation
from groupd.services import deletion, operations
from groupd.store.db import UnitOfWork


async def delete_group(req: ApiRequest) -> Response:
    settings = req.ctx.settings
    release = req.query_bool("releaseConsumedUnits", False)
    dry_run = req.query_bool("dryRun", False)
    permanent = req.query_bool("permanent", False)
    # Longer than the server allows is capped, not refused: a bound a client cannot
    # know from the document (it is a setting) must not turn a request into a 400.
    wait = min(
        req.query_float("wait", settings.delete_wait_seconds, minimum=0, maximum=math.inf),
        settings.delete_max_wait_seconds,
    )
    condition = conditional.precondition(req)
    actor = req.actor
    group_id = req.path_params["id"]

    def phase_one(uow: UnitOfWork) -> deletion.DeletePlan:
        return deletion.request_delete(
            uow,
            actor=actor,
            group_id=group_id,
            release_units=release,
            dry_run=dry_run,
            precondition=condition,
            now=req.ctx.clock(),
            permanent=permanent,
            retention_seconds=settings.retention_seconds,
        )

    plan = await req.transact(phase_one, write=not dry_run)
    if plan.dry_run:
        return json_response(
            s.DeletePreview(
                dry_run=True,
                group=s.TargetOut(id=str(plan.group_uuid), name=plan.group_name),
                impact=wire.impact(plan.impact),
            )
        )
    assert plan.operation_uuid is not None
    req.ctx.worker.notify()
    view = await wait_for_operation(
        req.ctx, actor=actor, operation_uuid=plan.operation_uuid, budget_seconds=wait
    )
    body = render.operation(view)
    if view.done:
        return json_response(body, 200)
    return json_response(
        body,
        202,
        headers={
            "Location": f"/api/v1/operations/{view.uuid}",
            "response-id": str(view.uuid),
        },
    )


def get_operation(req: ApiRequest) -> Response:
    view = operations.get_operation(
        req.uow, actor=req.actor, operation_id=req.path_params["id"], now=req.now
    )
    return json_response(render.operation(view))


def list_operations(req: ApiRequest) -> Response:
    views = operations.list_operations(
        req.uow,
        actor=req.actor,
        state=req.query_str("state"),
        limit=req.query_int("limit", 100),
        now=req.now,
    )
    return json_response(s.OperationList(items=[render.operation(view) for view in views]))


def resume_operation(req: ApiRequest) -> Response:
    view = operations.resume(
        req.uow, actor=req.actor, operation_id=req.path_params["id"], now=req.now
    )
    req.ctx.worker.notify()
    return json_response(render.operation(view))


def endpoints() -> list[Endpoint]:
    return [
        Endpoint(
            "DELETE",
            "/api/v1/groups/{id}",
            delete_group,
            NATIVE,
            role="editor",
            write=True,
            summary="Delete a group and its subtree (guarded, previewable, durable)",
            response=(s.OperationOut, s.DeletePreview),
            status=200,
            is_async=True,
            tags=["groups"],
            query=[
                QueryParam(
                    "releaseConsumedUnits",
                    "boolean",
                    "return the units of every deleted object's activations",
                ),
                QueryParam("dryRun", "boolean", "only report the impact and blockers"),
                QueryParam(
                    "permanent", "boolean", "admin: remove at once instead of to the recycle bin"
                ),
                QueryParam(
                    "wait",
                    "number",
                    "seconds to wait for the end before 202; capped at the server's "
                    "GROUPD_DELETE_MAX_WAIT_SECONDS",
                    minimum=0,
                ),
            ],
            headers=CONDITIONS,
            errors=(400, 401, 403, 404, 409, 412),
            json_body=False,
        ),
        Endpoint(
            "GET",
            "/api/v1/operations/{id}",
            get_operation,
            NATIVE,
            summary="State, progress and result of an operation",
            response=s.OperationOut,
            tags=["operations"],
        ),
        Endpoint(
            "GET",
            "/api/v1/operations",
            list_operations,
            NATIVE,
            summary="The tenant's operations, newest first",
            response=s.OperationList,
            tags=["operations"],
            query=[
                QueryParam(
                    "state",
                    "string",
                    "only operations in this state",
                    enum=["accepted", "running", "succeeded", "failed"],
                ),
                QueryParam(
                    "limit", "integer", "at most this many (1 to 1000)", minimum=1, maximum=1000
                ),
            ],
        ),
        Endpoint(
            "POST",
            "/api/v1/operations/{id}/resume",
            resume_operation,
            NATIVE,
            role="admin",
            write=True,
            summary="Accept a failed operation again, from where it stopped",
            response=s.OperationOut,
            tags=["operations"],
            errors=(400, 401, 403, 404, 409),
            json_body=False,
        ),
    ]
