"""The console's server side, over HTTP: cookies, CSRF, forged requests, roles, lock-out,
ETags, tenancy. The browser flows are in test_console_browser.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings
from console_support import csrf_of, seed_branch, sign_in
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.store.db import Database
from helpers import wait_operation

pytestmark = pytest.mark.usefixtures("check_invariants")


@contextmanager
def browser_like(context: AppContext, username: str | None = None) -> Iterator[TestClient]:
    """A client that keeps cookies, signed in as ``username`` when given."""
    with TestClient(create_app(context=context)) as client:
        if username is not None:
            answer = sign_in(client, username)
            assert answer.status_code == 303, answer.text
        yield client


def counts(db: Database) -> dict[str, int]:
    with db.engine.connect() as connection:
        return {
            table: int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
            for table in ("groups", "objects", "memberships", "activations", "operations")
        } | {
            "live": int(
                connection.execute(
                    text("SELECT count(*) FROM groups WHERE state = 'live'")
                ).scalar_one()
            ),
            "used": int(
                connection.execute(
                    text("SELECT coalesce(sum(used_units), 0) FROM licences")
                ).scalar_one()
            ),
        }


def test_the_session_cookie_is_httponly_strict_and_pages_run_no_inline_script(
    context: AppContext, acme: TenantFixture
) -> None:
    with browser_like(context) as client:
        answer = sign_in(client, acme.admin.username)
        cookie = answer.headers["set-cookie"]
        assert "groupd_console=gds_" in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
        assert "Secure" not in cookie  # plain http, no trusted proxy
        assert "gds_" not in answer.headers["location"]
        for path in ("/console/", f"/console/groups/{acme.root_id}", "/console/audit"):
            page = client.get(path)
            assert page.status_code == 200
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "unsafe-inline" not in policy
            assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) == []
            assert " style=" not in page.text and "<style" not in page.text
            assert "http://" not in page.text and "https://" not in page.text  # no CDN
        script = client.get("/console/static/console.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]


@pytest.mark.parametrize(("trusted", "secure"), [("testclient", True), ("10.0.0.1", False)])
def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(
    database_url: str, db: Database, acme: TenantFixture, trusted: str, secure: bool
) -> None:
    settings = make_settings(database_url, trusted_proxy_ips=trusted)
    with browser_like(AppContext.create(settings, db=db)) as client:
        form = client.get("/console/sign-in", headers={"X-Forwarded-Proto": "https"})
        # A Secure cookie does not come back over this test's plain http: hand it back.
        client.cookies.set("groupd_console_login", csrf_of(form.text), path="/console")
        answer = client.post(
            "/console/sign-in",
            data={
                "csrf": csrf_of(form.text),
                "username": acme.admin.username,
                "password": "correct horse battery",
            },
            headers={"X-Forwarded-Proto": "https"},
            follow_redirects=False,
        )
        assert answer.status_code == 303
        assert ("Secure" in answer.headers["set-cookie"]) is secure


def test_forged_deletes_are_refused_and_change_nothing(
    context: AppContext, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    path = f"/console/groups/{branch.id}/delete"
    with browser_like(context, acme.editor.username) as client:
        csrf = csrf_of(client.get(path).text)
        before = counts(db)
        base = {"version": "1", "release_units": "on"}
        refused = {
            "no name": (base | {"csrf": csrf}, 400),
            "wrong name": (base | {"csrf": csrf, "confirm_name": "branch"}, 400),
            "no token": (base | {"confirm_name": "Branch"}, 403),
            "foreign token": (base | {"csrf": "0" * 64, "confirm_name": "Branch"}, 403),
        }
        for case, (form, status) in refused.items():
            answer = client.post(path, data=form, follow_redirects=False)
            assert answer.status_code == status, case
            assert "nothing was deleted" in answer.text or status == 403, case
            assert counts(db) == before, case
        # The token only works with its own session's cookie. (Not entered: entering would
        # run the app's lifespan again, and its end would stop the worker ``client`` uses.)
        stranger = TestClient(client.app)
        answer = stranger.post(
            path, data=base | {"csrf": csrf, "confirm_name": "Branch"}, follow_redirects=False
        )
        assert answer.status_code == 401
        assert counts(db) == before
        accepted = client.post(
            path, data=base | {"csrf": csrf, "confirm_name": "Branch"}, follow_redirects=False
        )
        assert accepted.status_code == 303
        operation = accepted.headers["location"].rsplit("/", 1)[1]
        wait_operation(client, acme.editor.headers, operation)
        assert client.get(f"/console/groups/{branch.id}").status_code == 404


def test_a_viewer_is_refused_every_write_by_the_server(
    context: AppContext, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    with browser_like(context, acme.viewer.username) as client:
        csrf = csrf_of(client.get(f"/console/groups/{branch.id}").text)
        before = counts(db)
        for path, form in (
            (f"/console/groups/{branch.id}/delete", {"confirm_name": "Branch", "version": "1"}),
            (f"/console/groups/{branch.id}", {"name": "Renamed", "version": "1"}),
        ):
            answer = client.post(path, data=form | {"csrf": csrf}, follow_redirects=False)
            assert answer.status_code == 403, path
        assert counts(db) == before


def test_the_lock_out_is_shared_with_the_api(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    settings = make_settings(database_url, login_max_failures=3, basic_auth_cache_seconds=0)
    context = AppContext.create(settings, db=db)
    with browser_like(context) as client:
        for _ in range(2):
            assert sign_in(client, acme.editor.username, "wrong password").status_code == 401
        # The third failure comes through the API, and locks the console too.
        assert client.get("/api/v1/groups", auth=(acme.editor.username, "nope")).status_code == 401
        locked = sign_in(client, acme.editor.username)
        assert locked.status_code == 429 and "too many failed logins" in locked.text
        assert client.get("/api/v1/groups", headers=acme.editor.basic).status_code == 401


def test_edits_are_protected_by_the_groups_etag(
    context: AppContext, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    path = f"/console/groups/{branch.id}"
    with browser_like(context, acme.editor.username) as client:
        csrf = csrf_of(client.get(path).text)
        saved = client.post(
            path,
            data={"csrf": csrf, "version": "1", "name": "Branch", "description": "first"},
            follow_redirects=False,
        )
        assert saved.status_code == 303
        stale = client.post(path, data={"csrf": csrf, "version": "1", "description": "second"})
        assert stale.status_code == 412 and "is at version 2" in stale.text
        group = client.get(f"/api/v1/groups/{branch.id}", headers=acme.editor.headers).json()
        assert group["description"] == "first"
        events = client.get(
            "/api/v1/audit",
            headers=acme.admin.headers,
            params={"target": branch.id, "action": "group.update"},
        ).json()
        assert [e["source"] for e in events["items"]] == ["console"]


def test_another_tenants_ids_are_not_found(
    context: AppContext, db: Database, acme: TenantFixture, globex: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    with browser_like(context, globex.admin.username) as client:
        for path in (
            f"/console/groups/{branch.id}",
            f"/console/groups/{branch.id}/delete",
            f"/console/groups/{branch.id}/delete/impact",
            f"/console/groups/{branch.id}/children",
            f"/console/licences/{branch.licence_id}",
        ):
            assert client.get(path).status_code == 404, path
        csrf = csrf_of(client.get("/console/").text)
        answer = client.post(
            f"/console/groups/{branch.id}/delete",
            data={"csrf": csrf, "confirm_name": "Branch", "version": "1"},
        )
        assert answer.status_code == 404


def test_signing_out_ends_the_session_and_next_stays_in_the_console(
    context: AppContext, acme: TenantFixture
) -> None:
    with browser_like(context, acme.viewer.username) as client:
        cookie = client.cookies.get("groupd_console")
        csrf = csrf_of(client.get("/console/").text)
        out = client.post("/console/sign-out", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 200 and "You are signed out." in out.text
        client.cookies.set("groupd_console", cookie, path="/console")
        again = client.get("/console/", follow_redirects=False)
        assert again.status_code == 401 and "Sign in to groupd" in again.text
    with browser_like(context) as client:
        form = client.get("/console/sign-in", params={"next": "//evil.example/"})
        answer = client.post(
            "/console/sign-in",
            data={
                "csrf": csrf_of(form.text),
                "username": acme.viewer.username,
                "password": "correct horse battery",
                "next": "//evil.example/",
            },
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/console/"


def test_orphaned_activations_are_listed_and_released(
    context: AppContext, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme, devices=2, users=0)
    with browser_like(context, acme.editor.username) as client:
        gone = client.delete(f"/api/v1/groups/{branch.id}", headers=acme.editor.headers)
        assert gone.status_code == 200
        page = client.get(f"/console/licences/{branch.licence_id}")
        releases = re.findall(r'action="([^"]+/release)"', page.text)
        assert len(releases) == 2
        answer = client.post(releases[0], data={"csrf": csrf_of(page.text)}, follow_redirects=False)
        assert answer.status_code == 200 and "Released</strong> 1 unit of pc-" in answer.text
        assert len(re.findall(r'action="([^"]+/release)"', answer.text)) == 1
        licence = client.get(
            f"/api/v1/licenses/{branch.licence_id}", headers=acme.editor.headers
        ).json()
        assert licence["usedUnits"] == 1


def bin_rows(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM bin_entries")).scalar_one())


def test_the_bins_controls_follow_the_role_and_forged_purges_change_nothing(
    database_url: str, db: Database, acme: TenantFixture
) -> None:
    context = AppContext.create(make_settings(database_url, retention_seconds=3600), db=db)
    branch = seed_branch(db, acme)
    entry = f"/console/bin/{branch.id}"
    with browser_like(context, acme.editor.username) as client:
        gone = client.delete(f"/api/v1/groups/{branch.id}", headers=acme.editor.headers)
        assert gone.status_code == 200 and "purgeAt" in gone.json()["result"]["body"]
        listing = client.get("/console/bin")
        assert listing.status_code == 200 and f'href="{entry}">Branch</a>' in listing.text
        page = client.get(entry)
        assert ">Restore</button>" in page.text and "Purge now" not in page.text
        csrf = csrf_of(page.text)
        before = counts(db) | {"bin": bin_rows(db)}
        # An editor's forged purge (with a good token), and purges without one.
        for case, form, status in (
            ("editor purge", {"csrf": csrf}, 403),
            ("editor purge, no token", {}, 403),
        ):
            answer = client.post(f"{entry}/purge", data=form, follow_redirects=False)
            assert answer.status_code == status, case
            assert counts(db) | {"bin": bin_rows(db)} == before, case
        answer = client.post(f"{entry}/restore", data={}, follow_redirects=False)
        assert answer.status_code == 403 and "security token" in answer.text
        assert counts(db) | {"bin": bin_rows(db)} == before
    with browser_like(context, acme.viewer.username) as client:
        page = client.get(entry)
        assert page.status_code == 200 and "Branch" in page.text
        assert "<button" not in page.text.split("</header>", 1)[1]  # no Restore, no Purge
        assert 'action="/console/bin/' not in page.text
    with browser_like(context, acme.admin.username) as client:
        page = client.get(entry)
        assert ">Restore</button>" in page.text and ">Purge now</button>" in page.text
        for form in ({}, {"csrf": "0" * 64}):
            answer = client.post(f"{entry}/purge", data=form, follow_redirects=False)
            assert answer.status_code == 403
            assert counts(db) | {"bin": bin_rows(db)} == before
        accepted = client.post(
            f"{entry}/purge", data={"csrf": csrf_of(page.text)}, follow_redirects=False
        )
        assert accepted.status_code == 303
        operation = accepted.headers["location"].rsplit("/", 1)[1]
        assert wait_operation(client, acme.admin.headers, operation)["state"] == "succeeded"
        assert bin_rows(db) == 0 and counts(db)["groups"] == before["groups"] - 3
        assert client.get(entry).status_code == 404
