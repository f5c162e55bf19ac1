"""/api/v1/licenses: unit pools and their activations."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import render
from groupd.api.native import schemas as s
from groupd.api.native.common import PAGING, limit_and_cursor
from groupd.api.native.surface import NATIVE
from groupd.services import licensing


def create_license(req: ApiRequest) -> Response:
    body = req.decode(s.LicenseCreate)
    view = licensing.create_licence(
        req.uow,
        actor=req.actor,
        product=body.product,
        unit_kind=body.unit_kind,
        total_units=body.total_units,
        now=req.now,
    )
    return json_response(
        render.licence(view), 201, headers={"Location": f"/api/v1/licenses/{view.uuid}"}
    )


def get_license(req: ApiRequest) -> Response:
    return json_response(
        render.licence(
            licensing.get_licence(req.uow, actor=req.actor, licence_id=req.path_params["id"])
        )
    )


def list_licenses(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = licensing.list_licences(req.uow, actor=req.actor, limit=limit, cursor=cursor)
    return json_response(
        s.LicensePage(items=[render.licence(v) for v in page.items], next_cursor=page.next_cursor)
    )


def activate(req: ApiRequest) -> Response:
    body = req.decode(s.ActivationCreate)
    view = licensing.activate(
        req.uow,
        actor=req.actor,
        licence_id=req.path_params["id"],
        object_id=body.object_id,
        units=body.units,
        now=req.now,
    )
    return json_response(
        render.activation(view),
        201,
        headers={"Location": f"/api/v1/licenses/{view.licence_uuid}/activations/{view.uuid}"},
    )


def list_activations(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    orphaned_raw = req.query_str("orphaned")
    orphaned = None if orphaned_raw in (None, "") else req.query_bool("orphaned", False)
    page = licensing.list_activations(
        req.uow,
        actor=req.actor,
        licence_id=req.path_params["id"],
        orphaned=orphaned,
        limit=limit,
        cursor=cursor,
    )
    return json_response(
        s.ActivationPage(
            items=[render.activation(v) for v in page.items], next_cursor=page.next_cursor
        )
    )


def get_activation(req: ApiRequest) -> Response:
    return json_response(
        render.activation(
            licensing.get_activation(
                req.uow,
                actor=req.actor,
                licence_id=req.path_params["id"],
                activation_id=req.path_params["activationId"],
            )
        )
    )


def release(req: ApiRequest) -> Response:
    licensing.release_activation(
        req.uow,
        actor=req.actor,
        licence_id=req.path_params["id"],
        activation_id=req.path_params["activationId"],
        now=req.now,
    )
    return Response(status_code=204)


def endpoints() -> list[Endpoint]:
    tags = ["licenses"]
    return [
        Endpoint(
            "POST",
            "/api/v1/licenses",
            create_license,
            NATIVE,
            role="editor",
            write=True,
            summary="Create a licence (unit pool)",
            body=s.LicenseCreate,
            response=s.LicenseOut,
            status=201,
            tags=tags,
            errors=(400, 401, 403, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/licenses",
            list_licenses,
            NATIVE,
            summary="List licences",
            response=s.LicensePage,
            tags=tags,
            query=PAGING,
        ),
        Endpoint(
            "GET",
            "/api/v1/licenses/{id}",
            get_license,
            NATIVE,
            summary="Get a licence with used and total units",
            response=s.LicenseOut,
            tags=tags,
        ),
        Endpoint(
            "POST",
            "/api/v1/licenses/{id}/activations",
            activate,
            NATIVE,
            role="editor",
            write=True,
            summary="Activate an object on a licence",
            body=s.ActivationCreate,
            response=s.ActivationOut,
            status=201,
            tags=tags,
            errors=(400, 401, 403, 404, 409),
        ),
        Endpoint(
            "GET",
            "/api/v1/licenses/{id}/activations",
            list_activations,
            NATIVE,
            summary="List activations (orphaned=true: those of deleted objects)",
            response=s.ActivationPage,
            tags=tags,
            query=[QueryParam("orphaned", "boolean"), *PAGING],
        ),
        Endpoint(
            "GET",
            "/api/v1/licenses/{id}/activations/{activationId}",
            get_activation,
            NATIVE,
            summary="Get an activation",
            response=s.ActivationOut,
            tags=tags,
        ),
        Endpoint(
            "DELETE",
            "/api/v1/licenses/{id}/activations/{activationId}",
            release,
            NATIVE,
            role="editor",
            write=True,
            summary="Release an activation's units",
            status=204,
            tags=tags,
            json_body=False,
        ),
    ]
