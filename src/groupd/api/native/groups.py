"""/api/v1/groups: create, batch create, get, list, update, move."""

from __future__ import annotations

from msgspec import UNSET
from starlette.responses import Response

from groupd.api import conditional
from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.common import CONDITIONS, PAGING, limit_and_cursor, optional_uuid
from groupd.api.native.surface import NATIVE
from groupd.services import groups
from groupd.services.common import parse_uuid_field


def _spec(body: s.GroupCreate, *, group_uuid: str | None = None) -> groups.GroupSpec:
    return groups.GroupSpec(
        name=body.name,
        parent_uuid=optional_uuid(body.parent_id, field="parentId"),
        kind=body.kind,
        description=body.description,
        value_type=body.value_type,
        values=body.values,
        agent_id=body.agent_id,
        linked_entity=(
            groups.LinkedEntity(body.linked_entity.type, body.linked_entity.ref)
            if body.linked_entity
            else None
        ),
        uuid=parse_uuid_field(group_uuid, field="id") if group_uuid else None,
    )


def _group_response(view: groups.GroupView, status: int = 200) -> Response:
    headers = {"ETag": conditional.entity_tag(view.version)}
    if status == 201:
        headers["Location"] = f"/api/v1/groups/{view.uuid}"
    return json_response(render.group(view), status, headers=headers)


def create_group(req: ApiRequest) -> Response:
    body = req.decode(s.GroupCreate)
    view = groups.create_group(req.uow, actor=req.actor, spec=_spec(body), now=req.now)
    return _group_response(view, 201)


def batch_create(req: ApiRequest) -> Response:
    body = req.decode(s.GroupBatch)
    specs = [_spec(item, group_uuid=item.id) for item in body.groups]
    views = groups.batch_create_groups(req.uow, actor=req.actor, specs=specs, now=req.now)
    return json_response(s.GroupBatchOut(items=[render.group(v) for v in views]), 201)


def get_group(req: ApiRequest) -> Response:
    # The hot read: the row's uuids and times come out as text (decision 0075).
    view = groups.get_group_text(req.uow, actor=req.actor, group_id=req.path_params["id"])
    unchanged = conditional.not_modified(req, version=view.version, what=f"group '{view.uuid}'")
    if unchanged is not None:
        return unchanged
    headers = {"ETag": conditional.entity_tag(view.version)}
    return json_response(render.group_text(view), headers=headers)


def list_groups(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = groups.list_groups(
        req.uow,
        actor=req.actor,
        parent_id=req.query_str("parentId"),
        kind=req.query_str("kind"),
        name=req.query_str("name"),
        limit=limit,
        cursor=cursor,
        as_text=True,
    )
    items = [
        render.group_text(v) if isinstance(v, groups.GroupText) else render.group(v)
        for v in page.items
    ]
    return json_response(s.GroupPage(items=items, next_cursor=page.next_cursor))


def update_group(req: ApiRequest) -> Response:
    body = req.decode(s.GroupUpdate)
    changes = groups.GroupChanges()
    if body.name is not UNSET:
        changes.name = body.name
    if body.description is not UNSET:
        changes.description = body.description
    if body.values is not UNSET:
        changes.values = body.values
    if body.linked_entity is not UNSET:
        linked = body.linked_entity
        changes.linked_entity = groups.LinkedEntity(linked.type, linked.ref) if linked else None
    view = groups.update_group(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        changes=changes,
        precondition=conditional.precondition(req),
        now=req.now,
    )
    return _group_response(view)


def move_group(req: ApiRequest) -> Response:
    body = req.decode(s.GroupMove)
    view = groups.move_group(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        new_parent_id=parse_uuid_field(body.parent_id, field="parentId"),
        precondition=conditional.precondition(req),
        now=req.now,
    )
    return _group_response(view)


def endpoints() -> list[Endpoint]:
    tags = ["groups"]
    return [
        Endpoint(
            "POST",
            "/api/v1/groups",
            create_group,
            NATIVE,
            role="editor",
            write=True,
            summary="Create a group",
            body=s.GroupCreate,
            response=s.GroupOut,
            status=201,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "POST",
            "/api/v1/groups:batchCreate",
            batch_create,
            NATIVE,
            role="editor",
            write=True,
            summary="Create up to 10,000 groups",
            body=s.GroupBatch,
            response=s.GroupBatchOut,
            status=201,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/groups",
            list_groups,
            NATIVE,
            summary="List groups",
            response=s.GroupPage,
            tags=tags,
            inline=True,
            query=[
                QueryParam("parentId", description="children of this group", format="uuid"),
                QueryParam("kind", enum=["static", "user", "policy"]),
                QueryParam("name", description="exact name"),
                *PAGING,
            ],
        ),
        Endpoint(
            "GET",
            "/api/v1/groups/{id}",
            get_group,
            NATIVE,
            summary="Get a group",
            response=s.GroupOut,
            tags=tags,
            headers=CONDITIONS,
            errors=(400, 401, 403, 404, 412),
            inline=True,
        ),
        Endpoint(
            "PATCH",
            "/api/v1/groups/{id}",
            update_group,
            NATIVE,
            role="editor",
            write=True,
            summary="Update a group",
            body=s.GroupUpdate,
            response=s.GroupOut,
            tags=tags,
            headers=CONDITIONS,
            errors=(400, 401, 403, 404, 409, 412),
        ),
        Endpoint(
            "POST",
            "/api/v1/groups/{id}/move",
            move_group,
            NATIVE,
            role="editor",
            write=True,
            summary="Move a subtree under a new parent",
            body=s.GroupMove,
            response=s.GroupOut,
            tags=tags,
            headers=CONDITIONS,
            errors=(400, 401, 403, 404, 409, 412),
        ),
    ]
