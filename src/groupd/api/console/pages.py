"""The console's reading pages and small edits: tree, search, group, operations, audit,
licences. Each handler parses, calls the services, renders a template."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from groupd.api.console.surface import form_of, redirect, render
from groupd.api.http import ApiRequest, json_response
from groupd.errors import InvalidInput
from groupd.services import (
    audit,
    group_views,
    groups,
    licensing,
    memberships,
    objects,
    operations,
)
from groupd.services.common import Precondition, parse_uuid_field
from groupd.services.progress import KINDS

PAGE = 50
OPERATIONS = 100  # the newest, as the native list shows them
RECENT_EVENTS = 10


def _cursor(req: ApiRequest, name: str) -> str | None:
    return req.query_str(name) or None


def tree(req: ApiRequest) -> Response:
    actor = req.actor
    root = group_views.get_root(req.uow, actor=actor)
    children = groups.list_groups(req.uow, actor=actor, parent_id=str(root.uuid), limit=PAGE)
    user_groups = groups.list_groups(
        req.uow, actor=actor, kind="user", limit=PAGE, cursor=_cursor(req, "users")
    )
    policy_groups = groups.list_groups(
        req.uow, actor=actor, kind="policy", limit=PAGE, cursor=_cursor(req, "policies")
    )
    return render(
        req,
        "tree.html",
        root=root,
        children=children,
        user_groups=user_groups,
        policy_groups=policy_groups,
    )


def tree_children(req: ApiRequest) -> Response:
    """One page of a group's children, as a fragment the tree inserts on expand."""
    group = groups.get_group(req.uow, actor=req.actor, group_id=req.path_params["id"])
    page = groups.list_groups(
        req.uow,
        actor=req.actor,
        parent_id=str(group.uuid),
        limit=PAGE,
        cursor=_cursor(req, "cursor"),
    )
    return render(req, "tree_children.html", parent_id=group.uuid, page=page)


def search(req: ApiRequest) -> Response:
    query = (req.query_str("q") or "").strip()
    page = None
    if query:
        page = groups.list_groups(
            req.uow, actor=req.actor, name_contains=query, limit=PAGE, cursor=_cursor(req, "cursor")
        )
    return render(req, "search.html", query=query, page=page)


def view_group(req: ApiRequest) -> Response:
    actor = req.actor
    group = groups.get_group(req.uow, actor=actor, group_id=req.path_params["id"])
    recursive = req.query_bool("recursive", False)
    children = objects_page = members = None
    # Licence use is an aggregate over the whole subtree: it comes in its own request
    # (``group_usage``), so it never holds up the page (docs/decisions/0042).
    usage: list[licensing.LicenceUse] | None = None
    if group.kind == "user":
        members = memberships.list_members(
            req.uow,
            actor=actor,
            group_id=str(group.uuid),
            limit=PAGE,
            cursor=_cursor(req, "members"),
        )
    if group.kind == "static":
        children = groups.list_groups(
            req.uow,
            actor=actor,
            parent_id=str(group.uuid),
            limit=PAGE,
            cursor=_cursor(req, "children"),
        )
        objects_page = objects.list_objects(
            req.uow,
            actor=actor,
            group_id=str(group.uuid),
            recursive=recursive,
            limit=PAGE,
            cursor=_cursor(req, "objects"),
        )
        if req.query_bool("usage", False):
            usage = licensing.subtree_licence_use(req.uow, actor=actor, group_id=group.uuid)
    events = audit.list_events(
        req.uow, actor=actor, target=str(group.uuid), limit=RECENT_EVENTS, newest_first=True
    )
    return render(
        req,
        "group.html",
        group=group,
        crumbs=group_views.list_ancestors(req.uow, actor=actor, group=group),
        children=children,
        objects=objects_page,
        members=members,
        recursive=recursive,
        usage=usage,
        events=events.items,
        saved=req.query_bool("saved", False),
    )


def group_usage(req: ApiRequest) -> Response:
    """The licence units a group's subtree consumes: a fragment the group page loads."""
    group = groups.get_group(req.uow, actor=req.actor, group_id=req.path_params["id"])
    usage = licensing.subtree_licence_use(req.uow, actor=req.actor, group_id=group.uuid)
    return render(req, "_usage.html", group=group, usage=usage)


def edit_group(req: ApiRequest) -> Response:
    """Name, description and values, on the version the form was opened at (its ETag)."""
    group = groups.get_group(req.uow, actor=req.actor, group_id=req.path_params["id"])
    form = form_of(req)
    changes = groups.GroupChanges()
    if "name" in form:
        changes.name = form["name"]
    if "description" in form:
        changes.description = form["description"]
    if "values" in form:
        changes.values = [line.strip() for line in form["values"].splitlines() if line.strip()]
    view = groups.update_group(
        req.uow,
        actor=req.actor,
        group_id=group.uuid,
        changes=changes,
        precondition=Precondition(match=frozenset({_version(form)})),
        now=req.now,
    )
    return redirect(f"/console/groups/{view.uuid}?saved=1")


def _version(form: dict[str, str]) -> int:
    """The version the form was rendered at: the group's ETag, required on every edit."""
    raw = form.get("version", "").strip().strip('"')
    if not raw.isdigit():
        raise InvalidInput("the form lacks the group's version (its ETag)", field="version")
    return int(raw)


def operations_page(req: ApiRequest) -> Response:
    shown = operations.list_operations(req.uow, actor=req.actor, limit=OPERATIONS, now=req.now)
    return render(req, "operations.html", operations=shown, limit=OPERATIONS)


def operation_page(req: ApiRequest) -> Response:
    view = operations.get_operation(
        req.uow, actor=req.actor, operation_id=req.path_params["id"], now=req.now
    )
    return render(req, "operation.html", op=view, kinds=progress_rows(view))


def progress_rows(view: operations.OperationView) -> list[dict[str, Any]]:
    rows = []
    for kind in KINDS:
        tally = view.progress.tally(kind)
        rows.append({"kind": kind, "done": tally.done, "total": tally.total})
    return rows


def operation_progress(req: ApiRequest) -> Response:
    """The progress view's data, polled by console.js until the operation ends."""
    view = operations.get_operation(
        req.uow, actor=req.actor, operation_id=req.path_params["id"], now=req.now
    )
    return json_response(
        {
            "state": view.state,
            "done": view.done,
            "kinds": progress_rows(view),
            "resultStatus": view.result_status,
        },
        headers={"Cache-Control": "no-store"},
    )


def _day(req: ApiRequest, name: str) -> datetime | None:
    value = req.query_str(name)
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"'{name}' must be a date such as 2026-01-31", field=name) from None


def audit_page(req: ApiRequest) -> Response:
    action = req.query_str("action") or None
    target = req.query_str("target") or None
    if target is not None:
        parse_uuid_field(target, field="target")
    page = audit.list_events(
        req.uow,
        actor=req.actor,
        action=action,
        target=target,
        since=_day(req, "since"),
        until=_day(req, "until"),
        limit=PAGE,
        cursor=_cursor(req, "cursor"),
        newest_first=True,
    )
    filters = {k: req.query_str(k) or "" for k in ("action", "target", "since", "until")}
    return render(req, "audit.html", page=page, filters=filters)


def licences_page(req: ApiRequest) -> Response:
    page = licensing.list_licences(req.uow, actor=req.actor, limit=PAGE, cursor=_cursor(req, "c"))
    return render(req, "licences.html", page=page)


def view_licence(req: ApiRequest) -> Response:
    return licence_page(req)


def licence_page(req: ApiRequest, *, released: licensing.ActivationView | None = None) -> Response:
    licence_id = req.path_params["id"]
    licence = licensing.get_licence(req.uow, actor=req.actor, licence_id=licence_id)
    orphans = licensing.list_activations(
        req.uow,
        actor=req.actor,
        licence_id=licence_id,
        orphaned=True,
        limit=PAGE,
        cursor=_cursor(req, "cursor"),
    )
    return render(req, "licence.html", licence=licence, orphans=orphans, released=released)


def release_activation(req: ApiRequest) -> Response:
    """Release one orphaned activation; the licence's page again, with the new figures."""
    licence_id = req.path_params["id"]
    activation = licensing.get_activation(
        req.uow, actor=req.actor, licence_id=licence_id, activation_id=req.path_params["activation"]
    )
    licensing.release_activation(
        req.uow,
        actor=req.actor,
        licence_id=licence_id,
        activation_id=str(activation.uuid),
        now=req.now,
    )
    return licence_page(req, released=activation)
