"""The recycle bin, as people use it: the entries, one entry's details, "Restore" (a
new parent and a new name when the bin names conflicts), and "Purge now" for admins.
Restores and purges run as operations: the answer is their progress view."""

from __future__ import annotations

from starlette.responses import Response

from groupd.api.console.surface import form_of, redirect, render
from groupd.api.http import ApiRequest
from groupd.services import recycle_bin, restore
from groupd.services.common import parse_uuid_field
from groupd.store.db import UnitOfWork

PAGE = 50


def bin_page(req: ApiRequest) -> Response:
    cursor = req.query_str("cursor") or None
    page = recycle_bin.list_entries(req.uow, actor=req.actor, limit=PAGE, cursor=cursor)
    return render(req, "bin.html", page=page)


def entry_page(req: ApiRequest) -> Response:
    entry = recycle_bin.get_entry(req.uow, actor=req.actor, group_id=req.path_params["id"])
    return render(req, "bin_entry.html", entry=entry)


async def restore_entry(req: ApiRequest) -> Response:
    """Accept a restore, then its progress view; a refusal (every conflict named at
    once) comes back as the restore form with the new parent and name to give."""
    form = form_of(req)
    parent = form.get("parent_id", "").strip()
    name = form.get("name", "").strip()
    parent_uuid = parse_uuid_field(parent, field="parent_id") if parent else None
    actor, group_id = req.actor, req.path_params["id"]

    def accept(uow: UnitOfWork) -> recycle_bin.Accepted:
        return restore.accept_restore(
            uow,
            actor=actor,
            group_id=group_id,
            parent_uuid=parent_uuid,
            name=name or None,
            now=req.ctx.clock(),
        )

    accepted = await req.transact(accept)
    req.ctx.worker.notify()
    return redirect(f"/console/operations/{accepted.operation_uuid}")


async def purge_entry(req: ApiRequest) -> Response:
    """An admin's "Purge now": the purge operation's progress view."""
    actor, group_id = req.actor, req.path_params["id"]

    def accept(uow: UnitOfWork) -> recycle_bin.Accepted:
        return recycle_bin.purge_now(uow, actor=actor, group_id=group_id, now=req.ctx.clock())

    accepted = await req.transact(accept)
    req.ctx.worker.notify()
    return redirect(f"/console/operations/{accepted.operation_uuid}")
