"""/oaa-policy/group/v1: Oracle Advanced Authentication's policy groups.

A translator: read OAA's request, call the policy services, write OAA's answer.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam
from groupd.api.oaa.surface import OAA
from groupd.api.oaa.wire import (
    COLLECTION,
    GROUP_TYPE_VALUES,
    ITEM,
    Format,
    OaaAllGroupResponse,
    OaaGroup,
    OaaGroupCreate,
    OaaGroupResponse,
    OaaGroupUpdate,
    WireValues,
    answer_format,
    decode_body,
    render,
)
from groupd.api.waiting import wait_for_operation
from groupd.errors import InvalidInput
from groupd.services import policy
from groupd.services.common import parse_uuid_field
from groupd.services.groups import GroupView
from groupd.store.db import UnitOfWork
from groupd.values import clean_description, clean_name

log = logging.getLogger("groupd.api.oaa")

# OAA's group types and the core's value types, one to one.
VALUE_TYPES = GROUP_TYPE_VALUES
GROUP_TYPES = {value_type: name for name, value_type in VALUE_TYPES.items()}
GROUP_TYPE = f"({'|'.join(VALUE_TYPES)})"
_VALUE_TYPES_FOLDED = {name.casefold(): value_type for name, value_type in VALUE_TYPES.items()}


def value_type_of(grouptype: str, *, field: str = "grouptype") -> str:
    """The core value type of an OAA group type (matched ignoring case and edge spaces)."""
    value_type = _VALUE_TYPES_FOLDED.get(grouptype.strip().casefold())
    if value_type is None:
        raise InvalidInput(
            f"{field} '{grouptype}' is not one of {', '.join(VALUE_TYPES)}", field=field
        )
    return value_type


def agent_id_of(value: str, *, field: str = "agentid") -> str:
    """An agent id is a UUID; it is kept in its canonical lower-case form."""
    return str(parse_uuid_field(value.strip(), field=field))


def texts(values: WireValues) -> list[str]:
    return [value if isinstance(value, str) else str(value) for value in values or []]


def wire_group(view: GroupView, *, with_values: bool = True) -> OaaGroup:
    assert view.value_type is not None  # policy groups always have one
    group = OaaGroup(
        groupid=policy.make_group_id(view),
        grouptype=GROUP_TYPES[view.value_type],
        groupname=view.name,
        description=view.description,
    )
    if view.agent_id is not None:
        group.agentid = view.agent_id
    if with_values:
        group.values = list(view.values or [])
    return group


def group_answer(
    view: GroupView,
    message: str,
    status: int,
    answer: Format,
    *,
    with_values: bool = True,
    headers: dict[str, str] | None = None,
) -> Response:
    group = wire_group(view, with_values=with_values)
    body = OaaGroupResponse(status=str(status), message=message, groupid=group.groupid, group=group)
    return render(body, answer, status, headers=headers)


def create_group(req: ApiRequest) -> Response:
    # Every handler settles the answer's format first: an unanswerable request does nothing.
    answer = answer_format(req.headers)
    body = decode_body(req, OaaGroupCreate, list_fields=frozenset({"values"}))
    view = policy.create_policy_group(
        req.uow,
        actor=req.actor,
        name=clean_name(body.groupname, field="groupname"),
        value_type=value_type_of(body.grouptype),
        values=texts(body.values),
        agent_id=agent_id_of(body.agentid),
        description=clean_description(body.description),
        now=req.now,
        values_field="values",
    )
    location = f"{COLLECTION}/{policy.make_group_id(view)}"
    return group_answer(view, "Group is created", 201, answer, headers={"Location": location})


def list_groups(req: ApiRequest) -> Response:
    answer = answer_format(req.headers)
    agent = req.query_str("agentid")
    if not agent:
        raise InvalidInput("query parameter 'agentid' is required", field="agentid")
    # Comma-separated, and (leniently) the parameter may also be repeated.
    wanted = [
        value_type_of(part, field="grouptype")
        for given in req.query.get("grouptype", [])
        for part in given.split(",")
        if part.strip()
    ]
    views = policy.list_agent_groups(
        req.uow, actor=req.actor, agent_id=agent_id_of(agent), value_types=wanted or None
    )
    body = OaaAllGroupResponse(
        status="200", message="Groups information", groups=[wire_group(v) for v in views]
    )
    return render(body, answer, 200)


def get_group(req: ApiRequest) -> Response:
    answer = answer_format(req.headers)
    view = policy.resolve_group_id(req.uow, actor=req.actor, group_id=req.path_params["groupid"])
    return group_answer(view, "Group information", 200, answer)


def update_group(req: ApiRequest) -> Response:
    answer = answer_format(req.headers)
    body = decode_body(req, OaaGroupUpdate, list_fields=frozenset({"addvalues", "removevalues"}))
    view = policy.resolve_group_id(req.uow, actor=req.actor, group_id=req.path_params["groupid"])
    name = body.groupname
    view = policy.update_policy_group(
        req.uow,
        actor=req.actor,
        group=view,
        name=None if name is None else clean_name(name, field="groupname"),
        description=body.description,
        add_values=texts(body.addvalues),
        remove_values=texts(body.removevalues),
        now=req.now,
        add_field="addvalues",
    )
    return group_answer(view, "Group is updated", 200, answer)


async def delete_group(req: ApiRequest) -> Response:
    answer = answer_format(req.headers)
    actor = req.actor
    group_id = req.path_params["groupid"]

    def phase_one(uow: UnitOfWork) -> policy.PolicyDelete:
        return policy.request_policy_delete(
            uow,
            actor=actor,
            group_id=group_id,
            now=req.ctx.clock(),
            retention_seconds=req.ctx.settings.retention_seconds,
        )

    accepted = await req.transact(phase_one)
    req.ctx.worker.notify()
    # From phase 1's commit the group is gone from every read and the worker will finish
    # the job whatever happens to this request, so OAA (which has no "accepted, still
    # running" answer) hears "deleted" even when the wait budget runs out first.
    operation = await wait_for_operation(
        req.ctx,
        actor=actor,
        operation_uuid=accepted.operation_uuid,
        budget_seconds=req.ctx.settings.delete_wait_seconds,
    )
    if operation.state == "failed":
        raise RuntimeError(f"delete operation {operation.uuid} failed")
    if not operation.done:
        log.info("OAA delete %s still running after the wait budget", operation.uuid)
    return group_answer(accepted.group, "Group deleted", 200, answer, with_values=False)


def endpoints() -> list[Endpoint]:
    # Documented with OAA's error body (OaaSurface.openapi_error_content).
    common: dict[str, Any] = {
        "tags": ["oaa"],
        "document": True,
        "errors": (401, 403, 404, 405, 406, 409, 415),
    }
    return [
        Endpoint(
            "POST",
            COLLECTION,
            create_group,
            OAA,
            role="editor",
            write=True,
            summary="OAA: create a policy group",
            body=OaaGroupCreate,
            response=OaaGroupResponse,
            status=201,
            **common,
        ),
        Endpoint(
            "GET",
            COLLECTION,
            list_groups,
            OAA,
            summary="OAA: an agent's policy groups",
            response=OaaAllGroupResponse,
            query=[
                QueryParam("agentid", description="the agent's UUID", required=True, format="uuid"),
                QueryParam(
                    "grouptype",
                    description="comma-separated group types",
                    pattern=f"^{GROUP_TYPE}(,{GROUP_TYPE})*$",
                ),
            ],
            **common,
        ),
        Endpoint(
            "GET",
            ITEM,
            get_group,
            OAA,
            summary="OAA: a policy group",
            response=OaaGroupResponse,
            **common,
        ),
        Endpoint(
            "PUT",
            ITEM,
            update_group,
            OAA,
            role="editor",
            write=True,
            summary="OAA: rename a policy group, add and remove values",
            body=OaaGroupUpdate,
            response=OaaGroupResponse,
            **common,
        ),
        Endpoint(
            "DELETE",
            ITEM,
            delete_group,
            OAA,
            role="editor",
            write=True,
            is_async=True,
            summary="OAA: delete a policy group",
            response=OaaGroupResponse,
            json_body=False,
            **common,
        ),
    ]
