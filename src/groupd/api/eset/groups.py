"""ESET Asset Management groups: create, move, rename, and the guarded delete with
ESET's response-id protocol for deletes that outlast the wait budget."""

from __future__ import annotations

import uuid

from starlette.responses import Response

from groupd.api.eset import common
from groupd.api.eset import schemas as s
from groupd.api.eset.surface import DOCUMENTED, ESET, error_response, internal_error
from groupd.api.http import ApiRequest, Endpoint, QueryParam, encode, json_response
from groupd.api.waiting import wait_for_operation
from groupd.errors import InvalidInput
from groupd.services import deletion, groups, operations
from groupd.services.common import Actor, parse_uuid_field
from groupd.store.db import UnitOfWork

ERRORS = (400, 401, 403, 404, 409)


def _group_answer(view: groups.GroupView) -> Response:
    return json_response(s.EsetGroupResponse(group=common.group(view)))


def create_group(req: ApiRequest) -> Response:
    body = req.decode(s.EsetCreateGroupRequest).group
    spec = groups.GroupSpec(
        name=body.display_name,
        parent_uuid=parse_uuid_field(body.parent_group_uuid, field="parentId"),
        kind="static",
        description=body.description,
        linked_entity=common.linked_entity(body.linked_entity_type),
        agent_id=(
            str(parse_uuid_field(body.owner_uuid, field="agentId"))
            if body.owner_uuid is not None
            else None
        ),
        uuid=parse_uuid_field(body.uuid, field="uuid") if body.uuid is not None else None,
    )
    view = groups.create_group(req.uow, actor=req.actor, spec=spec, now=req.now)
    return _group_answer(view)


def move_group(req: ApiRequest) -> Response:
    body = req.decode(s.EsetMoveGroupRequest)
    key = common.path_uuid(req, "groupUuid")
    new_parent = parse_uuid_field(body.new_parent_uuid, field="parentId")
    common.static_group(req.uow, actor=req.actor, group_uuid=key)
    view = groups.move_group(
        req.uow, actor=req.actor, group_id=key, new_parent_id=new_parent, now=req.now
    )
    return _group_answer(view)


def rename_group(req: ApiRequest) -> Response:
    body = req.decode(s.EsetRenameGroupRequest)
    key = common.path_uuid(req, "groupUuid")
    common.static_group(req.uow, actor=req.actor, group_uuid=key)
    view = groups.update_group(
        req.uow,
        actor=req.actor,
        group_id=key,
        changes=groups.GroupChanges(name=body.display_name),
        now=req.now,
    )
    return _group_answer(view)


# the delete and its response-id protocol ---------------------------------------------
def _pending(operation_uuid: uuid.UUID) -> Response:
    # The seed's 202 schema is an empty array; the id travels in the header.
    return Response(
        encode([]), 202, headers={"response-id": str(operation_uuid)}, media_type="application/json"
    )


def _result(view: operations.OperationView, req: ApiRequest) -> Response:
    if view.state == "succeeded":
        return json_response(s.EsetDeleteGroupResponse())
    return internal_error(req)  # a failed operation is a bug, never the client's doing


async def delete_group(req: ApiRequest) -> Response:
    release = req.query_bool("releaseConsumedUnits", False)
    group_uuid = common.path_uuid(req, "groupUuid")
    actor = req.actor
    response_id = req.headers.get("response-id")
    if response_id is not None:
        return await _collect(req, actor, group_uuid, release, response_id)

    def phase_one(uow: UnitOfWork) -> deletion.DeletePlan:
        common.static_group(uow, actor=actor, group_uuid=group_uuid)
        return deletion.request_delete(
            uow,
            actor=actor,
            group_id=group_uuid,
            release_units=release,
            now=req.ctx.clock(),
            retention_seconds=req.ctx.settings.retention_seconds,
        )

    plan = await req.transact(phase_one)
    assert plan.operation_uuid is not None
    operation_uuid = plan.operation_uuid
    req.ctx.worker.notify()
    view = await wait_for_operation(
        req.ctx,
        actor=actor,
        operation_uuid=operation_uuid,
        budget_seconds=req.ctx.settings.eset_wait_seconds,
    )
    await req.transact(
        lambda uow: operations.record_answer(
            uow, operation_uuid=operation_uuid, finished=view.done, now=req.ctx.clock()
        )
    )
    return _result(view, req) if view.done else _pending(operation_uuid)


async def _collect(
    req: ApiRequest, actor: Actor, group_uuid: uuid.UUID, release: bool, response_id: str
) -> Response:
    """A resend with ``response-id``: 202 while the delete runs, its result once (then
    404), 504 once the polling window is over, 404 once the result was left too long
    (``operations.collect``)."""
    settings = req.ctx.settings
    try:
        operation_uuid = uuid.UUID(response_id.strip())
    except ValueError:
        raise InvalidInput(
            f"response-id '{response_id}' is not a UUID", field="response-id"
        ) from None
    collected = await req.transact(
        lambda uow: operations.collect(
            uow,
            actor=actor,
            operation_uuid=operation_uuid,
            kind=operations.DELETE_KIND,
            target_uuid=group_uuid,
            params={"releaseConsumedUnits": release},
            now=req.ctx.clock(),
            poll_timeout_seconds=settings.eset_poll_timeout_seconds,
            uncollected_ttl_seconds=settings.eset_uncollected_ttl_seconds,
        )
    )
    if collected.outcome is operations.Collected.TIMED_OUT:
        return error_response(504, "Action took too long; timeout reached")
    if collected.outcome is operations.Collected.FINISHED:
        return _result(collected.view, req)
    return _pending(operation_uuid)


def endpoints() -> list[Endpoint]:
    tags = ["eset"]
    return [
        Endpoint(
            "POST",
            "/v1/groups",
            create_group,
            ESET,
            role="editor",
            write=True,
            summary="ESET: create a group",
            body=s.EsetCreateGroupRequest,
            response=s.EsetGroupResponse,
            tags=tags,
            document=DOCUMENTED,
            errors=ERRORS,
        ),
        Endpoint(
            "POST",
            "/v1/groups/{groupUuid}:move",
            move_group,
            ESET,
            role="editor",
            write=True,
            summary="ESET: move a group under a new parent",
            body=s.EsetMoveGroupRequest,
            response=s.EsetGroupResponse,
            tags=tags,
            document=DOCUMENTED,
            errors=ERRORS,
        ),
        Endpoint(
            "POST",
            "/v1/groups/{groupUuid}:rename",
            rename_group,
            ESET,
            role="editor",
            write=True,
            summary="ESET: rename a group",
            body=s.EsetRenameGroupRequest,
            response=s.EsetGroupResponse,
            tags=tags,
            document=DOCUMENTED,
            errors=ERRORS,
        ),
        Endpoint(
            "DELETE",
            "/v1/groups/{groupUuid}",
            delete_group,
            ESET,
            role="editor",
            write=True,
            summary="ESET: delete a group and its subtree (202 + response-id when slow)",
            response=s.EsetDeleteGroupResponse,
            is_async=True,
            tags=tags,
            document=DOCUMENTED,
            json_body=False,
            query=[
                QueryParam(
                    "releaseConsumedUnits", "boolean", "release the units of every deleted device"
                )
            ],
            headers=[
                QueryParam(
                    "response-id",
                    "string",
                    "the response-id of an earlier 202, to collect its result",
                    format="uuid",
                )
            ],
            errors=(400, 401, 403, 404, 504),
        ),
    ]
