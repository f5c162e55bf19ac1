"""``/scim/v2``'s handlers: discovery, Users and Groups. Parse, call a provisioning service,
render. Imported on the first SCIM request (``routes``, decision 0077)."""

from __future__ import annotations

from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    EnterpriseUser,
    ETag,
    Filter,
    Group,
    Patch,
    PatchOp,
    ResourceType,
    SCIMException,
    ServiceProviderConfig,
    Sort,
)
from starlette.responses import Response

from groupd.api.conditional import precondition
from groupd.api.http import ApiRequest, json_response
from groupd.api.scim import resources as r
from groupd.api.scim.surface import SCIM, SCIM_BASE, SCIM_JSON, library_error
from groupd.api.waiting import wait_for_operation
from groupd.errors import NotFound
from groupd.services.common import Precondition
from groupd.services.deletion import DeletePlan
from groupd.services.provisioning import groups as provisioned_groups
from groupd.services.provisioning import users as provisioned_users
from groupd.services.provisioning.filters import group_condition, user_condition
from groupd.store.db import UnitOfWork

BASE = SCIM_BASE
LIST_URN = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
Document = dict[str, Any]
RESOURCE_TYPES: dict[str, Any] = {"User": r.ScimUser, "Group": Group}


def _group_schema() -> Any:
    # RFC 7643 §8.7.1: a member is its value, $ref and type. A display name given with
    # one is not kept (memberships hold no text), so the schema does not offer it.
    schema = Group.to_schema()
    for attribute in schema.attributes or []:
        if attribute.name == "members":
            attribute.sub_attributes = [
                a for a in attribute.sub_attributes or [] if a.name != "display"
            ]
    return schema


SCHEMAS = {
    schema.id: schema
    for schema in (r.ScimUser.to_schema(), EnterpriseUser.to_schema(), _group_schema())
}


def _answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return json_response(body, status, headers=headers, media_type=SCIM_JSON)


def _resource(
    document: Document, model: Any, parameters: Any = None, status: int = 200
) -> Response:
    meta = document["meta"]
    headers = {"ETag": meta["version"]}
    if status == 201:
        headers["Location"] = meta["location"]
    return _answer(r.project(document, model, parameters), status, headers)


def _list(
    model: Any, documents: list[Document], total: int, start: int, parameters: Any = None
) -> Response:
    listing: Document = {
        "schemas": [LIST_URN],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(documents),
    }
    if documents:
        listing["Resources"] = [r.project(d, model, parameters) for d in documents]
    return _answer(listing)


# discovery --------------------------------------------------------------------------------
def service_provider_config(req: ApiRequest) -> Response:
    config = ServiceProviderConfig(
        documentation_uri=None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=provisioned_users.MAX_COUNT),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=False),
        etag=ETag(supported=True),
        authentication_schemes=[
            AuthenticationScheme(
                type=AuthenticationScheme.Type.oauthbearertoken,
                name="Bearer API token",
                description="An API token of an editor or admin account (groupd token create)",
                primary=True,
            )
        ],
    )
    return _answer(config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE))


def _resource_type(name: str) -> Document:
    kind = ResourceType.from_resource(RESOURCE_TYPES[name])
    document: Document = kind.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    document["meta"] = {"resourceType": "ResourceType", "location": f"{BASE}/ResourceTypes/{name}"}
    return document


def list_resource_types(req: ApiRequest) -> Response:
    documents = [_resource_type(name) for name in RESOURCE_TYPES]
    return _list_documents(documents)


def get_resource_type(req: ApiRequest) -> Response:
    name = req.path_params["resourceType"]
    if name not in RESOURCE_TYPES:
        raise NotFound(f"no resource type '{name}'")
    return _answer(_resource_type(name))


def _schema(urn: str) -> Document:
    document: Document = SCHEMAS[urn].model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE)
    document["meta"] = {"resourceType": "Schema", "location": f"{BASE}/Schemas/{urn}"}
    return document


def list_schemas(req: ApiRequest) -> Response:
    return _list_documents([_schema(urn) for urn in SCHEMAS if urn is not None])


def get_schema(req: ApiRequest) -> Response:
    urn = req.path_params["schema"]
    if urn not in SCHEMAS:
        raise NotFound(f"no schema '{urn}'")
    return _answer(_schema(urn))


def _list_documents(documents: list[Document]) -> Response:
    return _answer(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": len(documents),
            "startIndex": 1,
            "itemsPerPage": len(documents),
            "Resources": documents,
        }
    )


# users ------------------------------------------------------------------------------------
def list_users(req: ApiRequest) -> Response:
    query = r.search(req, r.ScimUser)
    page = provisioned_users.query_users(
        req.uow,
        actor=req.actor,
        condition=user_condition(query.filter.ast) if query.filter else None,
        start_index=query.start_index or 1,
        count=100 if query.count is None else query.count,
    )
    users = [r.user_document(req, view) for view in page.items]
    return _list(r.ScimUser, users, page.total, page.start_index, query)


def get_user(req: ApiRequest) -> Response:
    parameters = r.response_parameters(req, r.ScimUser)
    view = provisioned_users.get_user(req.uow, actor=req.actor, user_id=req.path_params["id"])
    return _resource(r.user_document(req, view), r.ScimUser, parameters)


def create_user(req: ApiRequest) -> Response:
    user = r.validate(r.ScimUser, req.decode(Document), Context.RESOURCE_CREATION_REQUEST)
    view = provisioned_users.create_user(
        req.uow, actor=req.actor, spec=r.user_spec(user), now=req.now
    )
    return _resource(r.user_document(req, view), r.ScimUser, status=201)


def replace_user(req: ApiRequest) -> Response:
    user = r.validate(r.ScimUser, req.decode(Document), Context.RESOURCE_REPLACEMENT_REQUEST)
    view = provisioned_users.replace_user(
        req.uow,
        actor=req.actor,
        user_id=req.path_params["id"],
        spec=r.user_spec(user),
        precondition=precondition(req),
        now=req.now,
    )
    return _resource(r.user_document(req, view), r.ScimUser)


def patch_user(req: ApiRequest) -> Response:
    patch = r.validate(PatchOp[r.ScimUser], req.decode(Document), Context.RESOURCE_PATCH_REQUEST)
    wanted = precondition(req)
    current = provisioned_users.get_user(req.uow, actor=req.actor, user_id=req.path_params["id"])
    if wanted is not None:
        wanted.check(current.version, what="the user")
    user = r.user_model(req, current)
    try:
        patch.patch(user, r.POLICY)
    except SCIMException as error:
        raise library_error(error) from None
    view = provisioned_users.replace_user(
        req.uow,
        actor=req.actor,
        user_id=current.uuid,
        spec=r.user_spec(user),
        # The patch applied to this version: a change in between is a conflict, not lost.
        precondition=Precondition(match=frozenset({current.version})),
        now=req.now,
    )
    return _resource(r.user_document(req, view), r.ScimUser)


def delete_user(req: ApiRequest) -> Response:
    provisioned_users.delete_user(
        req.uow,
        actor=req.actor,
        user_id=req.path_params["id"],
        precondition=precondition(req),
        now=req.ctx.clock(),
    )
    return Response(status_code=204)


# groups -----------------------------------------------------------------------------------
def list_groups(req: ApiRequest) -> Response:
    query = r.search(req, Group)
    page = provisioned_groups.query_groups(
        req.uow,
        actor=req.actor,
        condition=group_condition(query.filter.ast) if query.filter else None,
        start_index=query.start_index or 1,
        count=100 if query.count is None else query.count,
        with_members=r.wants_members(query),
    )
    groups = [r.group_document(req, view) for view in page.items]
    return _list(Group, groups, page.total, page.start_index, query)


def get_group(req: ApiRequest) -> Response:
    parameters = r.response_parameters(req, Group)
    view = provisioned_groups.get_group(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        with_members=r.wants_members(parameters),
    )
    return _resource(r.group_document(req, view), Group, parameters)


def create_group(req: ApiRequest) -> Response:
    group = r.validate(Group, req.decode(Document), Context.RESOURCE_CREATION_REQUEST)
    view = provisioned_groups.create_group(
        req.uow,
        actor=req.actor,
        display_name=group.display_name or "",
        external_id=group.external_id,
        members=r.member_ids(group.members),
        now=req.now,
    )
    return _resource(r.group_document(req, view), Group, status=201)


def replace_group(req: ApiRequest) -> Response:
    group = r.validate(Group, req.decode(Document), Context.RESOURCE_REPLACEMENT_REQUEST)
    view = provisioned_groups.update_group(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        display_name=group.display_name or "",
        external_id=group.external_id,
        members=provisioned_groups.MemberChange(replace=r.member_ids(group.members)),
        precondition=precondition(req),
        now=req.now,
    )
    return _group_answer(req, view.uuid)


def patch_group(req: ApiRequest) -> Response:
    patch = r.group_patch(req.decode(Document))
    view = provisioned_groups.update_group(
        req.uow,
        actor=req.actor,
        group_id=req.path_params["id"],
        display_name=patch.display_name,
        external_id=patch.external_id,
        members=patch.members.change(),
        precondition=precondition(req),
        now=req.now,
    )
    return _group_answer(req, view.uuid)


def _group_answer(req: ApiRequest, key: Any) -> Response:
    parameters = r.response_parameters(req, Group)
    view = provisioned_groups.get_group(
        req.uow, actor=req.actor, group_id=key, with_members=r.wants_members(parameters)
    )
    return _resource(r.group_document(req, view), Group, parameters)


async def delete_group(req: ApiRequest) -> Response:
    actor, ctx, group_id, wanted = req.actor, req.ctx, req.path_params["id"], precondition(req)

    def phase_one(uow: UnitOfWork) -> DeletePlan:
        return provisioned_groups.delete_group(
            uow,
            actor=actor,
            group_id=group_id,
            precondition=wanted,
            now=ctx.clock(),
            retention_seconds=ctx.settings.retention_seconds,
        )

    return await _deleted(req, await req.transact(phase_one))


async def _deleted(req: ApiRequest, plan: DeletePlan) -> Response:
    """204 once the delete's operation has run (to the recycle bin, or removed), or once
    the wait's budget is spent: the resource is gone from every read since phase one,
    and what is left runs durably (SCIM has no 202)."""
    assert plan.operation_uuid is not None
    req.ctx.worker.notify()
    view = await wait_for_operation(
        req.ctx,
        actor=req.actor,
        operation_uuid=plan.operation_uuid,
        budget_seconds=req.ctx.settings.delete_wait_seconds,
    )
    if view.state == "failed":
        return SCIM.render_internal_error(req)
    return Response(status_code=204)
