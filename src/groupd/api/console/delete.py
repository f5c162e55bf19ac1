"""The delete, as a person meets it: the impact (the dry run), the units choice, the
typed name, then the operation's progress view."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.console.pages import _version
from groupd.api.console.surface import form_of, redirect, render
from groupd.api.http import ApiRequest
from groupd.errors import InvalidInput
from groupd.services import deletion, group_views, groups
from groupd.services.common import Precondition
from groupd.store.db import UnitOfWork


def impact_page(req: ApiRequest) -> Response:
    release = req.query_bool("release", False)
    actor = req.actor
    group = groups.get_group(req.uow, actor=actor, group_id=req.path_params["id"])
    plan = deletion.request_delete(
        req.uow,
        actor=actor,
        group_id=group.uuid,
        release_units=release,
        dry_run=True,
        now=req.now,
    )
    return render(
        req,
        "delete.html",
        group=group,
        crumbs=group_views.list_ancestors(req.uow, actor=actor, group=group),
        impact=plan.impact,
        release=release,
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
