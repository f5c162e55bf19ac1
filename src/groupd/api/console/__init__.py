"""``/console/``: the console for people, served by the same process as the APIs.

Server-rendered pages (Jinja2) over the same services as every other face, one script of
groupd's own (``static/console.js``) for what needs the browser, no CDN, no build step.
The routes are ``Endpoint`` declarations on the console's own surface (``surface.py``),
listed by ``all_endpoints`` with every other surface's: each request runs the same
maintenance check, rate limit, authentication and unit of work as an API request, and
the generic walkers (auth, tenancy, hostile input) cover them.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from groupd.api.console import delete, pages, recycle, session
from groupd.api.console.surface import CONSOLE
from groupd.api.context import AppContext
from groupd.api.http import Endpoint

STATIC = Path(__file__).with_name("static")


def endpoints() -> list[Endpoint]:
    def page(path: str, handler: object, role: str | None = "viewer") -> Endpoint:
        return Endpoint("GET", path, handler, CONSOLE, role=role, document=False)  # type: ignore[arg-type]

    def action(path: str, handler: object, role: str | None = "editor", **kw: object) -> Endpoint:
        return Endpoint(
            "POST",
            path,
            handler,  # type: ignore[arg-type]
            CONSOLE,
            role=role,
            write=True,
            document=False,
            json_body=False,
            **kw,  # type: ignore[arg-type]
        )

    return [
        page("/console/sign-in", session.sign_in_page, role=None),
        action("/console/sign-in", session.sign_in, role=None),
        action("/console/sign-out", session.sign_out, role="viewer"),
        page("/console/", pages.tree),
        page("/console/search", pages.search),
        page("/console/groups/{id}", pages.view_group),
        action("/console/groups/{id}", pages.edit_group),
        page("/console/groups/{id}/children", pages.tree_children),
        page("/console/groups/{id}/usage", pages.group_usage),
        page("/console/groups/{id}/delete", delete.impact_page, role="editor"),
        page("/console/groups/{id}/delete/impact", delete.impact_fragment, role="editor"),
        action("/console/groups/{id}/delete", delete.delete_subtree, is_async=True),
        page("/console/operations", pages.operations_page),
        page("/console/operations/{id}", pages.operation_page),
        page("/console/operations/{id}/progress", pages.operation_progress),
        page("/console/bin", recycle.bin_page),
        page("/console/bin/{id}", recycle.entry_page),
        action("/console/bin/{id}/restore", recycle.restore_entry, is_async=True),
        action("/console/bin/{id}/purge", recycle.purge_entry, role="admin", is_async=True),
        page("/console/audit", pages.audit_page),
        page("/console/licences", pages.licences_page),
        page("/console/licences/{id}", pages.view_licence),
        action("/console/licences/{id}/activations/{activation}/release", pages.release_activation),
    ]


def routes(ctx: AppContext) -> list[BaseRoute]:
    """What the console serves beside its endpoints (which ``all_endpoints`` lists with
    every surface's): its static files and the bare ``/console``."""
    built: list[BaseRoute] = [Route("/console", _to_console, methods=["GET"])]
    built.append(Mount("/console/static", StaticFiles(directory=STATIC), name="console-static"))
    return built


async def _to_console(_: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)
