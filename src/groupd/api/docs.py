"""``/docs``: the OpenAPI document rendered by Swagger UI, served from the
``swagger-ui-py`` wheel (Swagger UI 5, which reads OpenAPI 3.1): nothing from a CDN.

The page runs no inline script: its start-up is ``/docs/init.js``, so the page keeps a
strict Content-Security-Policy (scripts, styles and fetches from this server only).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>groupd API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png"></head>
<body><div id="ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body></html>"""
INIT = 'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui", deepLinking: true});\n'


def swagger_ui_static() -> Path | None:
    """Where the installed swagger-ui-py keeps Swagger UI's files; None if not installed."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        return None
    static = Path(next(iter(spec.submodule_search_locations))) / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


async def page(_: Request) -> Response:
    return HTMLResponse(PAGE, headers=HEADERS)


async def init_script(_: Request) -> Response:
    return Response(INIT, media_type="text/javascript", headers=HEADERS)


def routes() -> list[BaseRoute]:
    """The page, its start-up script and Swagger UI's files."""
    static = swagger_ui_static()
    if static is None:  # a broken install: say so rather than show an empty page
        raise RuntimeError("swagger-ui-py is not installed; /docs needs it")
    return [
        Route("/docs", page, methods=["GET"]),
        Route("/docs/init.js", init_script, methods=["GET"]),
        Mount("/docs/static", StaticFiles(directory=static)),
    ]
