"""/api/v1/deleted-groups: the recycle bin, its restores and purges."""

from __future__ import annotations

import math

from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.common import PAGING, limit_and_cursor, optional_uuid
from groupd.api.native.surface import NATIVE
from groupd.api.waiting import wait_for_operation
from groupd.services import recycle_bin, restore
from groupd.store.db import UnitOfWork


def list_deleted(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = recycle_bin.list_entries(req.uow, actor=req.actor, limit=limit, cursor=cursor)
    return json_response(
        s.DeletedGroupPage(
            items=[render.deleted_group(v) for v in page.items], next_cursor=page.next_cursor
        )
    )


def get_deleted(req: ApiRequest) -> Response:
    view = recycle_bin.get_entry(req.uow, actor=req.actor, group_id=req.path_params["id"])
    return json_response(render.deleted_group(view))


def _wait_seconds(req: ApiRequest) -> float:
    settings = req.ctx.settings
    # Longer than the server allows is capped, not refused, as on the delete: the bound
    # is a setting a client cannot read from the document.
    return min(
        req.query_float("wait", settings.delete_wait_seconds, minimum=0, maximum=math.inf),
        settings.delete_max_wait_seconds,
    )


async def _answer(req: ApiRequest, accepted: recycle_bin.Accepted, wait: float) -> Response:
    req.ctx.worker.notify()
    view = await wait_for_operation(
        req.ctx, actor=req.actor, operation_uuid=accepted.operation_uuid, budget_seconds=wait
    )
    refused = recycle_bin.refusal_of(view)
    if refused is not None:
        raise refused
    answer = render.operation(view)
    if view.done:
        return json_response(answer, 200)
    return json_response(
        answer,
        202,
        headers={"Location": f"/api/v1/operations/{view.uuid}", "response-id": str(view.uuid)},
    )


async def restore_deleted(req: ApiRequest) -> Response:
    wait = _wait_seconds(req)
    body = req.decode(s.RestoreBody) if req.body.strip() else s.RestoreBody()
    parent = optional_uuid(body.parent_id, field="parentId")
    actor, group_id = req.actor, req.path_params["id"]

    def accept(uow: UnitOfWork) -> recycle_bin.Accepted:
        return restore.accept_restore(
            uow,
            actor=actor,
            group_id=group_id,
            parent_uuid=parent,
            name=body.name,
            now=req.ctx.clock(),
        )

    return await _answer(req, await req.transact(accept), wait)


async def purge_deleted(req: ApiRequest) -> Response:
    wait = _wait_seconds(req)
    actor, group_id = req.actor, req.path_params["id"]

    def accept(uow: UnitOfWork) -> recycle_bin.Accepted:
        return recycle_bin.purge_now(uow, actor=actor, group_id=group_id, now=req.ctx.clock())

    return await _answer(req, await req.transact(accept), wait)


WAIT = QueryParam(
    "wait",
    "number",
    "seconds to wait for the end before 202; capped at the server's GROUPD_DELETE_MAX_WAIT_SECONDS",
    minimum=0,
)


def endpoints() -> list[Endpoint]:
    tags = ["recycle bin"]
    return [
        Endpoint(
            "GET",
            "/api/v1/deleted-groups",
            list_deleted,
            NATIVE,
            summary="List the recycle bin, newest first",
            response=s.DeletedGroupPage,
            tags=tags,
            query=list(PAGING),
        ),
        Endpoint(
            "GET",
            "/api/v1/deleted-groups/{id}",
            get_deleted,
            NATIVE,
            summary="A deleted subtree, by its root's id",
            response=s.DeletedGroupOut,
            tags=tags,
        ),
        Endpoint(
            "POST",
            "/api/v1/deleted-groups/{id}/restore",
            restore_deleted,
            NATIVE,
            role="editor",
            write=True,
            summary="Restore a deleted subtree (all or nothing; every conflict named)",
            body=s.RestoreBody,
            response=s.OperationOut,
            is_async=True,
            tags=tags,
            query=[WAIT],
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "DELETE",
            "/api/v1/deleted-groups/{id}",
            purge_deleted,
            NATIVE,
            role="admin",
            write=True,
            summary="Purge a deleted subtree now",
            response=s.OperationOut,
            is_async=True,
            tags=tags,
            query=[WAIT],
            errors=(400, 401, 403, 404, 409),
            json_body=False,
        ),
    ]
