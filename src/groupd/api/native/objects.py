"""/api/v1/objects and memberships: devices and users, and users in user groups."""

from __future__ import annotations

from msgspec import UNSET
from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.common import PAGING, limit_and_cursor, optional_uuid
from groupd.api.native.surface import NATIVE
from groupd.services import memberships, objects
from groupd.services.common import parse_uuid_field


def _spec(body: s.ObjectCreate) -> objects.ObjectSpec:
    return objects.ObjectSpec(
        kind=body.kind,
        name=body.name,
        home_group_uuid=parse_uuid_field(body.home_group_id, field="homeGroupId"),
        login_name=body.login_name,
        status=body.status,
        attributes=dict(body.attributes),
        uuid=optional_uuid(body.id, field="id"),
        activations=[
            objects.ActivationSpec(
                units=a.units,
                licence_uuid=optional_uuid(a.license_id, field="activations.licenseId"),
                product=a.product,
            )
            for a in body.activations
        ],
    )


def create_object(req: ApiRequest) -> Response:
    view = objects.create_object(
        req.uow, actor=req.actor, spec=_spec(req.decode(s.ObjectCreate)), now=req.now
    )
    return json_response(
        render.obj(view), 201, headers={"Location": f"/api/v1/objects/{view.uuid}"}
    )


def batch_import(req: ApiRequest) -> Response:
    body = req.decode(s.ObjectBatch)
    views = objects.import_objects(
        req.uow, actor=req.actor, specs=[_spec(o) for o in body.objects], now=req.now
    )
    return json_response(s.ObjectBatchOut(items=[render.obj(v) for v in views]), 201)


def get_object(req: ApiRequest) -> Response:
    return json_response(
        render.obj(objects.get_object(req.uow, actor=req.actor, object_id=req.path_params["id"]))
    )


def update_object(req: ApiRequest) -> Response:
    body = req.decode(s.ObjectUpdate)
    view = objects.update_object(
        req.uow,
        actor=req.actor,
        object_id=req.path_params["id"],
        name=body.name if body.name is not UNSET else objects.UNSET,
        status=body.status if body.status is not UNSET else objects.UNSET,
        attributes=dict(body.attributes) if body.attributes is not UNSET else objects.UNSET,
        now=req.now,
    )
    return json_response(render.obj(view))


def move_object(req: ApiRequest) -> Response:
    body = req.decode(s.ObjectMove)
    view = objects.move_object(
        req.uow,
        actor=req.actor,
        object_id=req.path_params["id"],
        group_id=parse_uuid_field(body.group_id, field="groupId"),
        now=req.now,
    )
    return json_response(render.obj(view))


def list_group_objects(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = objects.list_objects(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        recursive=req.query_bool("recursive", False),
        kind=req.query_str("kind"),
        limit=limit,
        cursor=cursor,
    )
    return json_response(
        s.ObjectPage(items=[render.obj(v) for v in page.items], next_cursor=page.next_cursor)
    )


def put_member(req: ApiRequest) -> Response:
    added = memberships.add_member(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        object_id=req.path_params["objectId"],
        now=req.now,
    )
    return Response(status_code=201 if added else 204)


def delete_member(req: ApiRequest) -> Response:
    memberships.remove_member(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        object_id=req.path_params["objectId"],
        now=req.now,
    )
    return Response(status_code=204)


def list_members(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = memberships.list_members(
        req.uow, actor=req.actor, group_id=req.path_params["id"], limit=limit, cursor=cursor
    )
    return json_response(
        s.ObjectPage(items=[render.obj(v) for v in page.items], next_cursor=page.next_cursor)
    )


def list_object_memberships(req: ApiRequest) -> Response:
    items = memberships.list_memberships(req.uow, actor=req.actor, object_id=req.path_params["id"])
    return json_response(
        s.MembershipList(
            items=[
                s.MembershipOut(
                    group_id=str(m.group_uuid),
                    group_name=m.group_name,
                    object_id=str(m.object_uuid),
                )
                for m in items
            ]
        )
    )


def endpoints() -> list[Endpoint]:
    tags = ["objects"]
    member_tags = ["memberships"]
    return [
        Endpoint(
            "POST",
            "/api/v1/objects",
            create_object,
            NATIVE,
            role="editor",
            write=True,
            summary="Create a device or user",
            body=s.ObjectCreate,
            response=s.ObjectOut,
            status=201,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "POST",
            "/api/v1/objects:batchImport",
            batch_import,
            NATIVE,
            role="editor",
            write=True,
            summary="Import up to 10,000 objects with their activations",
            body=s.ObjectBatch,
            response=s.ObjectBatchOut,
            status=201,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/objects/{id}",
            get_object,
            NATIVE,
            summary="Get an object",
            response=s.ObjectOut,
            tags=tags,
        ),
        Endpoint(
            "PATCH",
            "/api/v1/objects/{id}",
            update_object,
            NATIVE,
            role="editor",
            write=True,
            summary="Rename, set status or attributes",
            body=s.ObjectUpdate,
            response=s.ObjectOut,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "POST",
            "/api/v1/objects/{id}/move",
            move_object,
            NATIVE,
            role="editor",
            write=True,
            summary="Re-home an object",
            body=s.ObjectMove,
            response=s.ObjectOut,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/objects/{id}/memberships",
            list_object_memberships,
            NATIVE,
            summary="User groups a user belongs to",
            response=s.MembershipList,
            tags=member_tags,
        ),
        Endpoint(
            "GET",
            "/api/v1/groups/{id}/objects",
            list_group_objects,
            NATIVE,
            summary="Objects homed in a group (or its subtree)",
            response=s.ObjectPage,
            tags=tags,
            query=[
                QueryParam("recursive", "boolean", "include the whole subtree"),
                QueryParam("kind", enum=["device", "user"]),
                *PAGING,
            ],
        ),
        Endpoint(
            "PUT",
            "/api/v1/groups/{id}/members/{objectId}",
            put_member,
            NATIVE,
            role="editor",
            write=True,
            summary="Add a user to a user group",
            status=201,
            tags=member_tags,
            json_body=False,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "DELETE",
            "/api/v1/groups/{id}/members/{objectId}",
            delete_member,
            NATIVE,
            role="editor",
            write=True,
            summary="Remove a user from a user group",
            status=204,
            tags=member_tags,
            json_body=False,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/groups/{id}/members",
            list_members,
            NATIVE,
            summary="Members of a user group",
            response=s.ObjectPage,
            tags=member_tags,
            query=PAGING,
            errors=(400, 401, 403, 404, 409),
        ),
    ]
