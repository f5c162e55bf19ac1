"""Translation between SCIM documents (``scim2-models``) and the provisioning services.

Reading a request: a model validated under ``POLICY`` (the providers' quirks that the
library tolerates when told: Entra's remove with the member in the value, its add to a
filtered path that matches nothing, attributes no schema declares). Writing an answer:
a model dumped in the response context, with ``attributes``/``excludedAttributes``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from scim2_models import (
    Context,
    EnterpriseUser,
    Group,
    PatchOp,
    PatchOperation,
    ResponseParameters,
    SCIMException,
    ScimPolicy,
    SearchRequest,
    User,
)
from scim2_models.path import CompareOperator, Comparison, FilterNode, LogicalExpr, LogicalOperator

from groupd.api.conditional import entity_tag
from groupd.api.http import ApiRequest
from groupd.api.scim.surface import library_error
from groupd.errors import InvalidInput, NotFound
from groupd.services.provisioning import groups as provisioned_groups
from groupd.services.provisioning.groups import MemberChange, ProvisionedGroup
from groupd.services.provisioning.users import ProvisionedUser, UserSpec

ScimUser = User[EnterpriseUser]
USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
POLICY = ScimPolicy(
    unknown=ScimPolicy.Unknown.ignore,
    remove_value_as_filter=ScimPolicy.RemoveValue.apply,
    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create,
)
# Kept in columns, or never kept (a password: groupd's users do not sign in).
# ``active`` stays in the profile only as a mark that the provider set it.
NOT_IN_PROFILE = ("id", "meta", "userName", "externalId", "groups", "password")


def validate(model: Any, body: Any, context: Context) -> Any:
    try:
        return model.model_validate(body, scim_ctx=context, scim_policy=POLICY)
    except (ValidationError, SCIMException) as error:
        raise library_error(error) from None


# users -----------------------------------------------------------------------------------
def user_spec(user: Any) -> UserSpec:
    """What a provider's User says, for the services."""
    profile = user.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, scim_policy=POLICY)
    for key in NOT_IN_PROFILE:
        profile.pop(key, None)
    if not user.user_name:
        raise InvalidInput("userName is required", scim_type="invalidValue")
    return UserSpec(
        user_name=user.user_name,
        active=True if user.active is None else bool(user.active),
        external_id=user.external_id,
        display_name=user.display_name,
        emails=[str(email.value) for email in user.emails or [] if email.value],
        profile=profile,
    )


def location(req: ApiRequest, collection: str, key: uuid.UUID) -> str:
    return f"{str(req.request.base_url).rstrip('/')}/scim/v2/{collection}/{key}"


def _meta(req: ApiRequest, kind: str, collection: str, view: Any) -> dict[str, str]:
    return {
        "resourceType": kind,
        "created": _when(view.created_at),
        "lastModified": _when(view.updated_at),
        "location": location(req, collection, view.uuid),
        # The ETag, as the native API's (RFC 9110 strong tags, decisions 0020 and 0057).
        "version": entity_tag(view.version),
    }


def _when(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def user_document(req: ApiRequest, view: ProvisionedUser) -> dict[str, Any]:
    """A user as SCIM JSON. The stored profile is the library's own rendering of what the
    provider sent (``user_spec``), so it is written out as it is, not validated again."""
    # A provider that never set ``active`` (or removed it) reads none while the user is
    # active; a user made elsewhere (no profile), or made inactive, reads its status.
    shown = not view.profile or "active" in view.profile or not view.active
    document = {
        "schemas": [USER_URN],
        **view.profile,
        "id": str(view.uuid),
        "externalId": view.external_id,
        "meta": _meta(req, "User", "Users", view),
        "userName": view.user_name,
        "displayName": view.display_name,
        "active": view.active if shown else None,
    }
    return {key: value for key, value in document.items() if value is not None}


def user_model(req: ApiRequest, view: ProvisionedUser) -> Any:
    """A user as a ``scim2-models`` User, to apply a PATCH to."""
    return ScimUser.model_validate(user_document(req, view), scim_policy=POLICY)


# groups ----------------------------------------------------------------------------------
def group_document(req: ApiRequest, view: ProvisionedGroup) -> dict[str, Any]:
    """A group as SCIM JSON; its members only when read (``view.members``)."""
    document: dict[str, Any] = {
        "schemas": [GROUP_URN],
        "id": str(view.uuid),
        "externalId": view.external_id,
        "meta": _meta(req, "Group", "Groups", view),
        "displayName": view.display_name,
    }
    if view.external_id is None:
        del document["externalId"]
    if view.members:
        users = location(req, "Users", uuid.UUID(int=0)).removesuffix(str(uuid.UUID(int=0)))
        document["members"] = [
            {"value": str(m.uuid), "$ref": f"{users}{m.uuid}", "type": "User"} for m in view.members
        ]
    return document


def project(document: dict[str, Any], model: Any, parameters: Any) -> dict[str, Any]:
    """``document`` with ``attributes``/``excludedAttributes`` applied by the library."""
    if parameters is None or not (parameters.attributes or parameters.excluded_attributes):
        return document
    dumped: dict[str, Any] = model.model_validate(document, scim_policy=POLICY).model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
        scim_policy=POLICY,
        response_parameters=parameters,
    )
    return dumped


def member_ids(values: Any) -> list[uuid.UUID]:
    """The user ids of a ``members`` value: a list of ``{"value": id}`` (or one)."""
    if values is None:
        return []
    entries = values if isinstance(values, list) else [values]
    found: list[uuid.UUID] = []
    for entry in entries:
        raw = entry.get("value") if isinstance(entry, dict) else getattr(entry, "value", None)
        try:
            found.append(uuid.UUID(str(raw)))
        except ValueError:
            raise NotFound(f"members: '{raw}' names no user of this directory") from None
    return found


def _filtered_members(node: FilterNode | None) -> list[uuid.UUID]:
    """``members[value eq "a" or value eq "b"]``: the ids it names."""
    if (
        isinstance(node, Comparison)
        and node.op is CompareOperator.eq
        and node.attr_path.attr.lower() == "value"
        and node.attr_path.sub_attr is None
    ):
        return member_ids([{"value": node.value}])
    if isinstance(node, LogicalExpr) and node.op is LogicalOperator.or_:
        return [key for term in node.terms for key in _filtered_members(term)]
    raise InvalidInput(
        f"members can be selected by value eq only, not '{node}'", scim_type="invalidFilter"
    )


class _Members:
    """Operations on ``members`` folded into one set-based change, in their order."""

    def __init__(self) -> None:
        self.replace: set[uuid.UUID] | None = None
        self.add: set[uuid.UUID] = set()
        self.remove: set[uuid.UUID] = set()

    def adding(self, ids: Iterable[uuid.UUID]) -> None:
        ids = set(ids)
        self.add |= ids
        self.remove -= ids

    def removing(self, ids: Iterable[uuid.UUID]) -> None:
        ids = set(ids)
        self.remove |= ids
        self.add -= ids
        if self.replace is not None:
            self.replace -= ids

    def replacing(self, ids: Iterable[uuid.UUID]) -> None:
        self.replace, self.add, self.remove = set(ids), set(), set()

    def change(self) -> MemberChange:
        if self.replace is not None:
            return MemberChange(replace=sorted((self.replace | self.add) - self.remove))
        return MemberChange(remove=sorted(self.remove) or None, add=sorted(self.add) or None)


class GroupPatch:
    """A PATCH of a Group as the services take it: a name, an externalId, members."""

    def __init__(self) -> None:
        self.display_name: str | None = None
        self.external_id: Any = provisioned_groups.UNSET
        self.members = _Members()

    def _set(self, attribute: str, op: str, value: Any) -> None:
        name = attribute.lower()
        if name == "displayname":
            if op == "remove" or not isinstance(value, str):
                raise InvalidInput("displayName is required", scim_type="mutability")
            self.display_name = value
        elif name == "externalid":
            if value is not None and not isinstance(value, str):
                raise InvalidInput("externalId is a string", scim_type="invalidValue")
            self.external_id = None if op == "remove" else value
        elif name == "members":
            if op == "remove":
                if value is None:
                    self.members.replacing([])
                else:
                    # Entra: the members to remove are in the value.
                    self.members.removing(member_ids(value))
            elif op == "add":
                self.members.adding(member_ids(value))
            else:
                self.members.replacing(member_ids(value))
        # Anything else (Okta's "id" beside a new displayName, "schemas", "meta") is read-only
        # or unknown: no change.

    def apply(self, operation: PatchOperation[Group]) -> None:
        op = operation.op.value
        path = operation.path
        if path is None or not str(path):
            if not isinstance(operation.value, dict):
                raise InvalidInput(
                    "an operation without a path carries an object", scim_type="invalidValue"
                )
            for key, value in operation.value.items():
                self._set(key.rsplit(":", 1)[-1], op, value)
            return
        attribute = path.attr
        value_filter = path.value_filter
        if value_filter is not None:
            if attribute.lower() != "members" or op != "remove":
                raise InvalidInput(
                    f"'{path}' selects values this server changes with a remove of members only",
                    scim_type="invalidPath",
                )
            self.members.removing(_filtered_members(value_filter))
            return
        self._set(attribute, op, operation.value)


def group_patch(body: Any) -> GroupPatch:
    patch = validate(PatchOp[Group], body, Context.RESOURCE_PATCH_REQUEST)
    result = GroupPatch()
    for operation in patch.operations or []:
        result.apply(operation)
    return result


# query parameters -------------------------------------------------------------------------
def search(req: ApiRequest, model: Any) -> Any:
    """``filter``, ``startIndex``, ``count``, ``attributes``, ``excludedAttributes``: in
    the query, or in the body of a POST to ``.search`` (RFC 7644 §3.4.3)."""
    if req.endpoint.method == "POST":
        body = _one_projection(req.decode(dict[str, Any]))
        return validate(SearchRequest[model], body, Context.SEARCH_REQUEST)
    names = ("filter", "startIndex", "count", "attributes", "excludedAttributes")
    given = {name: req.query_str(name) for name in names}
    return validate(
        SearchRequest[model],
        _one_projection({k: v for k, v in given.items() if v}),
        Context.SEARCH_REQUEST,
    )


def response_parameters(req: ApiRequest, model: Any) -> Any:
    names = ("attributes", "excludedAttributes")
    given = {name: req.query_str(name) for name in names}
    return validate(
        ResponseParameters[model],
        _one_projection({k: v for k, v in given.items() if v}),
        Context.RESOURCE_QUERY_REQUEST,
    )


def _one_projection(given: dict[str, Any]) -> dict[str, Any]:
    """Both ``attributes`` and ``excludedAttributes``: the attributes named by the first
    less those the second names (``id`` alone when none is left), which ``scim2-models``
    takes; RFC 7644 §3.4.2.5 does not forbid asking for both."""
    wanted, unwanted = given.get("attributes"), given.get("excludedAttributes")
    if not wanted or not unwanted:
        return given

    def names(value: Any) -> list[str]:
        items = value.split(",") if isinstance(value, str) else value
        return [str(item).strip() for item in items if str(item).strip()] if items else []

    left_out = {name.lower() for name in names(unwanted)}
    kept = [name for name in names(wanted) if name.lower() not in left_out] or ["id"]
    rest = {k: v for k, v in given.items() if k != "excludedAttributes"}
    return {**rest, "attributes": kept if isinstance(wanted, list) else ",".join(kept)}


def wants_members(parameters: Any) -> bool:
    excluded = [str(a).lower() for a in parameters.excluded_attributes or []]
    attributes = [str(a).lower() for a in parameters.attributes or []]
    if any(a.rsplit(":", 1)[-1].startswith("members") for a in excluded):
        return False
    return not attributes or any(a.rsplit(":", 1)[-1].startswith("members") for a in attributes)
