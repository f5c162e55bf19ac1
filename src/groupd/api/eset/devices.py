"""ESET Device Management, as far as groupd models it: device groups, the devices in
them, one device, and the batch import that builds a tree's devices in few calls."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.eset import common
from groupd.api.eset import schemas as s
from groupd.api.eset.surface import DOCUMENTED, ESET
from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.errors import InvalidInput, NotFound
from groupd.services import groups, licensing, objects
from groupd.services.common import parse_uuid_field

IMPORT_MAX = 1000
PAGING = [
    QueryParam(
        "pageSize", "integer", "page size: 0 or unset 50, above 1000 lowered to 1000", minimum=0
    ),
    QueryParam("pageToken", "string", "nextPageToken of the previous page"),
]


def _devices(req: ApiRequest, views: list[objects.ObjectView]) -> list[s.EsetDevice]:
    products = licensing.products_by_object(
        req.uow, actor=req.actor, object_ids=[view.id for view in views]
    )
    return [common.device(view, products.get(view.id, [])) for view in views]


def list_device_groups(req: ApiRequest) -> Response:
    size, token = common.page_size(req), common.page_token(req)
    page = groups.list_groups(req.uow, actor=req.actor, kind="static", limit=size, cursor=token)
    return json_response(
        s.EsetDeviceGroupPage(
            device_groups=[common.device_group(view) for view in page.items],
            next_page_token=page.next_cursor,
        )
    )


def list_group_devices(req: ApiRequest) -> Response:
    key = common.path_uuid(req, "groupUuid")
    recurse = req.query_bool("recurseSubgroups", False)
    size, token = common.page_size(req), common.page_token(req)
    common.static_group(req.uow, actor=req.actor, group_uuid=key)
    page = objects.list_objects(
        req.uow,
        actor=req.actor,
        group_id=str(key),
        recursive=recurse,
        kind="device",
        limit=size,
        cursor=token,
    )
    total = objects.count_objects(
        req.uow, actor=req.actor, group_id=key, recursive=recurse, kind="device"
    )
    return json_response(
        s.EsetDevicePage(
            devices=_devices(req, page.items), total_size=total, next_page_token=page.next_cursor
        )
    )


def _device(req: ApiRequest) -> objects.ObjectView:
    key = common.path_uuid(req, "deviceUuid")
    view = objects.get_object(req.uow, actor=req.actor, object_id=key)
    if view.kind != "device":
        # users are directory objects too, but ESET's device API knows only devices
        raise NotFound(f"no device '{key}'")
    return view


def _device_answer(req: ApiRequest, view: objects.ObjectView) -> Response:
    return json_response(s.EsetDeviceResponse(device=_devices(req, [view])[0]))


def get_device(req: ApiRequest) -> Response:
    return _device_answer(req, _device(req))


def list_devices(req: ApiRequest) -> Response:
    size, token = common.page_size(req), common.page_token(req)
    page = objects.list_objects(
        req.uow, actor=req.actor, group_id=None, kind="device", limit=size, cursor=token
    )
    total = objects.count_objects(req.uow, actor=req.actor, group_id=None, kind="device")
    return json_response(
        s.EsetDevicePage(
            devices=_devices(req, page.items), total_size=total, next_page_token=page.next_cursor
        )
    )


def batch_get(req: ApiRequest) -> Response:
    values = [value for value in req.query.get("devicesUuids", []) if value]
    if not values:
        raise InvalidInput("devicesUuids is required: one or more device uuids", field="ids")
    keys = [parse_uuid_field(value, field="ids") for value in values]
    views = objects.get_objects(req.uow, actor=req.actor, object_ids=keys, kind="device")
    return json_response(s.EsetDeviceList(devices=_devices(req, views)))


def move_device(req: ApiRequest) -> Response:
    view = _device(req)
    body = req.decode(s.EsetMoveDeviceRequest)
    new_group = parse_uuid_field(body.new_parent_uuid, field="groupId")
    common.static_group(req.uow, actor=req.actor, group_uuid=new_group)
    moved = objects.move_object(
        req.uow, actor=req.actor, object_id=view.uuid, group_id=new_group, now=req.now
    )
    return _device_answer(req, moved)


def rename_device(req: ApiRequest) -> Response:
    view = _device(req)
    body = req.decode(s.EsetRenameDeviceRequest)
    renamed = objects.update_object(
        req.uow, actor=req.actor, object_id=view.uuid, name=body.display_name, now=req.now
    )
    return _device_answer(req, renamed)


def _activation(item: str | s.EsetActiveProductIn) -> objects.ActivationSpec:
    if isinstance(item, str):
        return objects.ActivationSpec(product=item, units=1)
    return objects.ActivationSpec(product=item.product, units=item.units)


def batch_import(req: ApiRequest) -> Response:
    body = req.decode(s.EsetBatchImportRequest)
    specs = [
        objects.ObjectSpec(
            kind="device",
            name=item.display_name,
            home_group_uuid=parse_uuid_field(item.group_uuid, field="homeGroupId"),
            uuid=parse_uuid_field(item.uuid, field="uuid") if item.uuid is not None else None,
            activations=[_activation(product) for product in item.active_products],
        )
        for item in body.devices
    ]
    views = objects.import_objects(
        req.uow, actor=req.actor, specs=specs, now=req.now, max_batch=IMPORT_MAX
    )
    return json_response(s.EsetBatchImportResponse(devices=_devices(req, views)))


def endpoints() -> list[Endpoint]:
    tags = ["eset"]
    return [
        Endpoint(
            "GET",
            "/v1/device_groups",
            list_device_groups,
            ESET,
            summary="ESET: list device groups",
            response=s.EsetDeviceGroupPage,
            tags=tags,
            document=DOCUMENTED,
            query=PAGING,
        ),
        Endpoint(
            "GET",
            "/v1/device_groups/{groupUuid}/devices",
            list_group_devices,
            ESET,
            summary="ESET: list the devices of a device group",
            response=s.EsetDevicePage,
            tags=tags,
            document=DOCUMENTED,
            query=[
                QueryParam("recurseSubgroups", "boolean", "include the devices of every subgroup"),
                *PAGING,
            ],
        ),
        Endpoint(
            "GET",
            "/v1/devices",
            list_devices,
            ESET,
            summary="ESET: list the devices",
            response=s.EsetDevicePage,
            tags=tags,
            document=DOCUMENTED,
            query=PAGING,
        ),
        Endpoint(
            "GET",
            "/v1/devices:batchGet",
            batch_get,
            ESET,
            summary="ESET: get devices by uuid, all or none",
            response=s.EsetDeviceList,
            tags=tags,
            document=DOCUMENTED,
            query=[
                QueryParam(
                    "devicesUuids",
                    "array",
                    "a device uuid; repeat the parameter for each, "
                    f"at most {objects.BATCH_GET_MAX}",
                    required=True,
                    items={"type": "string", "format": "uuid"},
                    min_items=1,
                    max_items=objects.BATCH_GET_MAX,
                )
            ],
        ),
        Endpoint(
            "POST",
            "/v1/devices/{deviceUuid}:move",
            move_device,
            ESET,
            role="editor",
            write=True,
            summary="ESET: move a device into another group",
            body=s.EsetMoveDeviceRequest,
            response=s.EsetDeviceResponse,
            tags=tags,
            document=DOCUMENTED,
        ),
        Endpoint(
            "POST",
            "/v1/devices/{deviceUuid}:rename",
            rename_device,
            ESET,
            role="editor",
            write=True,
            summary="ESET: rename a device",
            body=s.EsetRenameDeviceRequest,
            response=s.EsetDeviceResponse,
            tags=tags,
            document=DOCUMENTED,
        ),
        Endpoint(
            "GET",
            "/v1/devices/{deviceUuid}",
            get_device,
            ESET,
            summary="ESET: get a device",
            response=s.EsetDeviceResponse,
            tags=tags,
            document=DOCUMENTED,
        ),
        Endpoint(
            "POST",
            "/v1/devices:batchImport",
            batch_import,
            ESET,
            role="editor",
            write=True,
            summary="ESET: import up to 1000 devices with their products",
            body=s.EsetBatchImportRequest,
            response=s.EsetBatchImportResponse,
            tags=tags,
            document=DOCUMENTED,
            errors=(400, 401, 403, 404, 409),
        ),
    ]
