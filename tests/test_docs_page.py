"""``/docs`` as a person sees it: a served groupd, opened in headless Chromium, with no
internet. Asserts on the rendered page, not on the HTML source."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import ServerProcess, server_env


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    folder = tmp_path_factory.mktemp("docs")
    env = server_env(f"sqlite:///{folder / 'groupd.db'}")
    with ServerProcess(env, folder / "server.log") as server:
        server.start()
        yield server


def test_docs_page_renders_the_openapi_31_document(served: ServerProcess, page: Any) -> None:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    # Every request the page makes stays on this server: nothing from a CDN.
    elsewhere: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(served.base_url) else elsewhere.append(r.url),
    )
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )
    page.goto(f"{served.base_url}/docs")
    page.get_by_text("Create a group", exact=True).first.wait_for(state="visible")
    assert page.get_by_text("Unable to render this definition").count() == 0
    title = page.locator(".information-container .title")
    assert "groupd" in title.inner_text()
    assert "OAS 3.1" in title.inner_text()
    for summary in (
        "Get a group",
        "Delete a group and its subtree (guarded, previewable, durable)",
        "ESET: list the devices",
        "ESET: get devices by uuid, all or none",
    ):
        assert page.get_by_text(summary, exact=True).first.is_visible(), summary
    # open one operation: its parameters are rendered from the document
    page.get_by_text("Get a group", exact=True).first.click()
    page.get_by_text("If-None-Match", exact=True).first.wait_for(state="visible")
    assert elsewhere == []
    assert problems == [], problems


def test_docs_page_keeps_a_strict_content_security_policy(served: ServerProcess) -> None:
    for path in ("/docs", "/docs/init.js"):
        policy = httpx.get(served.base_url + path).headers["content-security-policy"]
        assert "script-src 'self'" in policy and "unsafe-inline" not in policy
        assert "default-src 'none'" in policy
    assert "<script>" not in httpx.get(served.base_url + "/docs").text  # no inline script
    assert httpx.get(served.base_url + "/docs/static/swagger-ui-bundle.js").status_code == 200


def test_docs_assets_come_from_the_installed_wheel() -> None:
    from groupd.api.docs import swagger_ui_static

    static = swagger_ui_static()
    assert static is not None and (static / "swagger-ui.css").is_file()
    assert not list(Path(__file__).resolve().parents[1].glob("src/**/swagger-ui-bundle.js"))
