"""The delete, as a person meets it: the page (the group, the units choice, the typed
name) at once, the impact (the dry run) in a request of its own, then the operation's
progress view (docs/decisions/0043)."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.console.pages import _version
from groupd.api.console.surface import form_of, redirect, render
from groupd.api.http import ApiRequest
from groupd.errors import InvalidInput
from groupd.services import deletion, group_views, groups
from groupd.services.common import Precondition
from groupd.store.db import UnitOfWork


def _dry_run(req: ApiRequest, group: groups.GroupView, release: bool) -> deletion.Impact:
    plan = deletion.request_delete(
        req.uow,
        actor=req.actor,
        group_id=group.uuid,
        release_units=release,
        dry_run=True,
        now=req.now,
    )
    return plan.impact


def impact_page(req: ApiRequest) -> Response:
    """The delete's page, without the count: console.js asks for it (``impact_fragment``)
    and enables "Delete subtree" once it is shown. ``?impact=true`` (the link a page
    without the script offers) counts it here and renders it inline."""
    release = req.query_bool("release", False)
    actor = req.actor
    group = groups.get_group(req.uow, actor=actor, group_id=req.path_params["id"])
    impact = _dry_run(req, group, release) if req.query_bool("impact", False) else None
    return render(
        req,
        "delete.html",
        group=group,
        crumbs=group_views.list_ancestors(req.uow, actor=actor, group=group),
        impact=impact,
        release=release,
    )


def impact_fragment(req: ApiRequest) -> Response:
    """What the delete takes (the dry run, as the API's ``dryRun=true``): a fragment the
    delete's page loads into its live region."""
    release = req.query_bool("release", False)
    group = groups.get_group(req.uow, actor=req.actor, group_id=req.path_params["id"])
    return render(
        req, "_impact.html", group=group, impact=_dry_run(req, group, release), release=release
    )


async def delete_subtree(req: ApiRequest) -> Response:
    """Phase 1 of the delete, once the typed name matches; then the progress view."""
    form = form_of(req)
    actor = req.actor
    group_id = req.path_params["id"]

    def phase_one(uow: UnitOfWork) -> deletion.DeletePlan:
        group = groups.get_group(uow, actor=actor, group_id=group_id)
        version = _version(form)
        if form.get("confirm_name", "") != group.name:
            raise InvalidInput(
                "the typed name does not match the group's name; nothing was deleted",
                field="confirm_name",
            )
        return deletion.request_delete(
            uow,
            actor=actor,
            group_id=group.uuid,
            release_units=form.get("release_units") == "on",
            precondition=Precondition(match=frozenset({version})),
            now=req.ctx.clock(),
            retention_seconds=req.ctx.settings.retention_seconds,
        )

    plan = await req.transact(phase_one)
    req.ctx.worker.notify()
    return redirect(f"/console/operations/{plan.operation_uuid}")
