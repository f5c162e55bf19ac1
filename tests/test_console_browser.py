"""The console in a real headless Chromium: the flows a person goes through.

Data is seeded below HTTP (services in this process); the app is served by uvicorn in a
thread, so the worker runs the deletes and a test can hold the clock. One browser for the
session (``browser`` fixture), a fresh context per test.
"""

from __future__ import annotations

from typing import Any

import pytest

from conftest import TenantFixture, make_settings
from console_support import api, seed_branch, served, sign_in_page
from groupd.clock import ManualClock, system_clock
from groupd.services import groups
from groupd.services.common import Actor
from groupd.store.db import Database, transaction
from invariants import assert_invariants

pytestmark = pytest.mark.usefixtures("check_invariants")


def impact_on_page(page: Any) -> dict[str, int]:
    cells = page.locator("[data-impact]")
    return {
        cells.nth(i).get_attribute("data-impact"): int(cells.nth(i).inner_text().replace(",", ""))
        for i in range(cells.count())
    }


def impact_from_api(answer: dict[str, Any]) -> dict[str, int]:
    impact = answer["impact"]
    flat = {f"groups.{k}": v for k, v in impact["groups"].items() if k != "total"}
    flat.update(impact["objects"])
    flat["memberships"] = impact["memberships"]
    flat["activations"] = impact["activations"]
    for item in impact["units"]["byLicence"]:
        flat[f"units.{item['product']}"] = item["units"]
    return flat


def test_sign_in_then_expand_the_tree_by_keyboard_and_page_a_wide_parent(
    page: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    actor = Actor(tenant_id=acme.id, account_id=None, username="seed", role="admin")
    with transaction(db) as uow:
        groups.batch_create_groups(
            uow,
            actor=actor,
            specs=[
                groups.GroupSpec(
                    name=f"leaf {i:03d}", parent_uuid=groups.parse_uuid(branch.child_ids[0])
                )
                for i in range(60)
            ],
            now=system_clock(),
        )
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.editor.username)
        assert page.get_by_role("heading", name="Groups", level=1).is_visible()
        assert page.get_by_role("link", name="Branch team").is_visible()
        # Keyboard only: focus the toggle, Enter expands, the children arrive.
        page.get_by_role("button", name="Expand Branch", exact=True).focus()
        page.keyboard.press("Enter")
        page.get_by_role("link", name="Branch 1", exact=True).wait_for()
        assert (
            page.get_by_role("button", name="Collapse Branch", exact=True).get_attribute(
                "aria-expanded"
            )
            == "true"
        )
        # A parent with more children than a page opens on its first page, then pages on.
        page.get_by_role("button", name="Expand Branch 1", exact=True).click()
        page.get_by_role("link", name="leaf 049").wait_for()
        assert page.get_by_role("link", name="leaf 050").count() == 0
        page.get_by_role("button", name="Show more children").click()
        page.get_by_role("link", name="leaf 059").wait_for()
        # Search by name across the tenant finds static and user groups alike.
        page.get_by_label("Search groups by name").fill("Branch t")
        page.keyboard.press("Enter")
        page.get_by_role("link", name="Branch team").wait_for()
        # The group page: heading, breadcrumbs, objects with the recursive switch.
        page.get_by_role("link", name="Branch team").click()
        page.get_by_role("heading", name="Branch team", level=1).wait_for()
        page.goto(f"{app.base_url}/console/groups/{branch.child_ids[0]}")
        crumbs = page.get_by_role("navigation", name="Breadcrumbs")
        assert crumbs.get_by_role("link").all_inner_texts() == ["All", "Branch", "Branch 1"]
        page.goto(f"{app.base_url}/console/groups/{branch.id}")
        assert page.get_by_role("cell", name="pc-0").count() == 0
        # Licence use in the subtree arrives by its own request once the page is shown.
        usage = page.get_by_role("region", name="Licence use in this subtree")
        usage.get_by_role("row", name="Seats Branch seat 8 8").wait_for()
        page.get_by_role("switch", name="Include objects of subgroups").check()
        page.get_by_role("cell", name="pc-0", exact=True).wait_for()


def test_the_impact_equals_the_apis_dry_run_and_a_wrong_name_keeps_delete_disabled(
    page: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.editor.username)
        page.goto(f"{app.base_url}/console/groups/{branch.id}")
        page.get_by_role("button", name="Delete", exact=True).click()
        page.get_by_role("heading", name="What the delete takes").wait_for()
        region = page.locator("#impact-region")
        region.get_by_text("kept consumed (listed as orphaned").wait_for()
        with api(app, acme.editor.headers) as client:
            kept = client.delete(f"/api/v1/groups/{branch.id}", params={"dryRun": "true"})
            released = client.delete(
                f"/api/v1/groups/{branch.id}",
                params={"dryRun": "true", "releaseConsumedUnits": "true"},
            )
        assert impact_on_page(page) == impact_from_api(kept.json())
        # The choice counts again in place; a reload keeps it.
        page.get_by_label("Release consumed units").check()
        region.get_by_text("released (they can be used again)").wait_for()
        assert page.url.endswith("/delete?release=true")
        assert impact_on_page(page) == impact_from_api(released.json())
        assert page.get_by_label("Release consumed units").is_checked()

        button = page.get_by_role("button", name="Delete subtree")
        assert button.is_disabled()
        page.get_by_label("Type the group name to confirm").fill("branch")
        assert button.is_disabled()
        page.get_by_label("Type the group name to confirm").fill("Branch ")
        assert button.is_disabled()
        page.get_by_label("Type the group name to confirm").fill("Branch")
        assert button.is_enabled()
        page.get_by_label("Type the group name to confirm").fill("Branc")
        assert button.is_disabled()
        with api(app, acme.editor.headers) as client:
            assert client.get(f"/api/v1/groups/{branch.id}").status_code == 200


def test_the_delete_page_comes_before_its_count_and_delete_waits_for_the_count(
    page: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    held: list[Any] = []
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.editor.username)
        # Hold the count's request: the page is whole without it.
        page.route("**/delete/impact*", lambda route: held.append(route))
        page.goto(f"{app.base_url}/console/groups/{branch.id}/delete")
        page.get_by_role("heading", name="Delete “Branch” and everything under it").wait_for()
        region = page.locator("#impact-region")
        assert region.get_attribute("aria-live") == "polite"
        region.get_by_text("Counting what this delete takes…").wait_for()
        assert region.get_attribute("aria-busy") == "true"
        assert page.get_by_label("Release consumed units").is_visible()
        page.get_by_label("Type the group name to confirm").fill("Branch")
        button = page.get_by_role("button", name="Delete subtree")
        assert button.is_disabled()
        assert page.locator("#delete-hint").inner_text() == "Enabled once the count is shown."
        page.wait_for_timeout(200)
        assert held and button.is_disabled()
        held[0].continue_()
        region.get_by_text("Counted now over the whole subtree").wait_for()
        assert region.get_attribute("aria-busy") is None
        assert button.is_enabled()
        # Asking again (units released) disables it until that count is shown.
        page.get_by_label("Release consumed units").check()
        region.get_by_text("Counting what this delete takes…").wait_for()
        assert button.is_disabled()
        for _ in range(100):
            if len(held) == 2:
                break
            page.wait_for_timeout(20)
        held[1].continue_()
        region.get_by_text("released (they can be used again)").wait_for()
        assert button.is_enabled()
        with api(app, acme.editor.headers) as client:
            assert client.get(f"/api/v1/groups/{branch.id}").status_code == 200


def test_blockers_are_links_and_keep_delete_disabled(
    page: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    actor = Actor(tenant_id=acme.id, account_id=None, username="seed", role="admin")
    with transaction(db) as uow:
        groups.update_group(
            uow,
            actor=actor,
            group_id=groups.parse_uuid(branch.child_ids[1]),
            changes=groups.GroupChanges(linked_entity=groups.LinkedEntity("CUSTOMER", "acme-0001")),
            now=system_clock(),
        )
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.editor.username)
        page.goto(f"{app.base_url}/console/groups/{branch.id}/delete")
        region = page.locator("#impact-region")
        region.get_by_role("heading", name="The delete would be refused").wait_for()
        link = region.get_by_role("link", name="Branch 2")
        assert link.get_attribute("href") == f"/console/groups/{branch.child_ids[1]}"
        page.get_by_label("Type the group name to confirm").fill("Branch")
        assert page.get_by_role("button", name="Delete subtree").is_disabled()
        assert "would be refused" in page.locator("#delete-hint").inner_text()
        link.click()
        page.get_by_role("heading", name="Branch 2", level=1).wait_for()


def test_without_javascript_the_delete_counts_on_request_and_still_deletes(
    browser: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        with served(settings, db) as app:
            sign_in_page(page, app.base_url, acme.editor.username)
            page.goto(f"{app.base_url}/console/groups/{branch.id}/delete")
            assert page.locator("[data-impact]").count() == 0
            assert page.get_by_role("button", name="Delete subtree").is_disabled()
            page.get_by_role("link", name="Count what this delete takes").click()
            page.get_by_text("Counted now over the whole subtree").wait_for()
            with api(app, acme.editor.headers) as client:
                kept = client.delete(f"/api/v1/groups/{branch.id}", params={"dryRun": "true"})
            assert impact_on_page(page) == impact_from_api(kept.json())
            # Shown, so it can be sent; the server checks the typed name.
            page.get_by_label("Type the group name to confirm").fill("Branc")
            page.get_by_role("button", name="Delete subtree").click()
            page.get_by_text("the typed name does not match").wait_for()
            page.go_back()
            page.get_by_label("Type the group name to confirm").fill("Branch")
            page.get_by_role("button", name="Delete subtree").click()
            page.wait_for_url("**/console/operations/*")
            # Without the script the progress view does not follow the operation: a
            # reload shows where it is.
            for _ in range(200):
                if page.locator("#op-ended").count():
                    break
                page.wait_for_timeout(50)
                page.reload()
            assert page.locator("#op-state").text_content() == "succeeded"
            with api(app, acme.editor.headers) as client:
                assert client.get(f"/api/v1/groups/{branch.id}").status_code == 404
    finally:
        context.close()
    assert_invariants(db)


def test_the_right_name_deletes_and_the_progress_view_reaches_the_end(
    page: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme, devices=30)
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.editor.username)
        page.goto(f"{app.base_url}/console/groups/{branch.id}/delete?release=true")
        page.get_by_label("Type the group name to confirm").fill("Branch")
        page.get_by_text("Counted now over the whole subtree").wait_for()
        page.get_by_role("button", name="Delete subtree").click()
        page.wait_for_url("**/console/operations/*")
        status = page.get_by_role("status")
        status.get_by_text("succeeded").wait_for()
        page.locator("#op-ended").wait_for()
        rows = {
            kind: page.locator(f'tr[data-kind="{kind}"] .done').inner_text()
            for kind in ("groups", "devices", "users", "memberships", "activations")
        }
        assert rows == {
            "groups": "3",
            "devices": "30",
            "users": "2",
            "memberships": "1",
            "activations": "32",
        }
        with api(app, acme.editor.headers) as client:
            assert client.get(f"/api/v1/groups/{branch.id}").status_code == 404
            licence = client.get(f"/api/v1/licenses/{branch.licence_id}").json()
            assert licence["usedUnits"] == 0
        page.get_by_role("link", name="All operations").click()
        assert page.get_by_role("link", name="Branch").count() == 1
    assert_invariants(db)


def test_a_viewer_sees_no_write_control(
    page: Any, settings: Any, db: Database, acme: TenantFixture
) -> None:
    branch = seed_branch(db, acme)
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.viewer.username)
        page.goto(f"{app.base_url}/console/groups/{branch.id}")
        page.get_by_role("heading", name="Branch", level=1).wait_for()
        assert page.get_by_role("button", name="Delete").count() == 0
        assert page.get_by_role("button", name="Save changes").count() == 0
        assert page.get_by_role("textbox", name="Name").count() == 0
        for path in ("delete", "delete/impact"):
            response = page.goto(f"{app.base_url}/console/groups/{branch.id}/{path}")
            assert response is not None and response.status == 403, path
        page.goto(f"{app.base_url}/console/licences/{branch.licence_id}")
        assert page.get_by_role("button", name="Release").count() == 0
        # Only "Sign out" and "Search" remain as buttons on a viewer's page.
        names = sorted(b.inner_text() for b in page.get_by_role("button").all())
        assert names == ["Search", "Sign out"]


def test_a_session_ends_when_idle_and_in_any_case_after_its_absolute_time(
    page: Any, database_url: str, db: Database, acme: TenantFixture
) -> None:
    clock = ManualClock()
    settings = make_settings(
        database_url, console_idle_timeout_seconds=600, console_absolute_timeout_seconds=1800
    )
    with served(settings, db, clock) as app:
        sign_in_page(page, app.base_url, acme.viewer.username)
        clock.advance(601)
        answer = page.goto(f"{app.base_url}/console/operations")
        # The sign-in form in the page's place (401), which comes back to it.
        assert answer is not None and answer.status == 401
        assert page.get_by_role("heading", name="Sign in to groupd").is_visible()
        # Signing in again returns to the page that was asked for.
        page.get_by_label("Username").fill(acme.viewer.username)
        page.get_by_label("Password").fill("correct horse battery")
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("heading", name="Operations", level=1).wait_for()
        # In steady use the idle deadline slides, but the absolute one holds.
        for _ in range(3):
            clock.advance(500)
            answer = page.goto(f"{app.base_url}/console/audit")
            assert answer is not None and answer.status == 200
        clock.advance(400)  # 1,900 s after signing in, 400 s after the last request
        answer = page.goto(f"{app.base_url}/console/audit")
        assert answer is not None and answer.status == 401
        assert page.get_by_role("heading", name="Sign in to groupd").is_visible()


def test_restore_from_the_bin_with_a_name_conflict_resolved(
    page: Any, database_url: str, db: Database, acme: TenantFixture
) -> None:
    settings = make_settings(database_url, retention_seconds=3600)
    branch = seed_branch(db, acme)
    with served(settings, db) as app:
        sign_in_page(page, app.base_url, acme.editor.username)
        # The delete goes to the bin; its progress view links to the bin entry.
        page.goto(f"{app.base_url}/console/groups/{branch.id}/delete")
        page.get_by_label("Type the group name to confirm").fill("Branch")
        page.get_by_text("Counted now over the whole subtree").wait_for()
        page.get_by_role("button", name="Delete subtree").click()
        page.wait_for_url("**/console/operations/*")
        page.get_by_role("status").get_by_text("succeeded").wait_for()
        in_bin = page.get_by_role("link", name="In the recycle bin")
        in_bin.wait_for()
        assert in_bin.get_attribute("href") == f"/console/bin/{branch.id}"
        # Meanwhile a live sibling takes the name "Branch".
        with api(app, acme.editor.headers) as client:
            taken = client.post("/api/v1/groups", json={"name": "Branch", "parentId": acme.root_id})
            assert taken.status_code == 201
        page.get_by_role("navigation", name="Console").get_by_role(
            "link", name="Recycle bin"
        ).click()
        page.get_by_role("heading", name="Recycle bin", level=1).wait_for()
        page.get_by_role("link", name="Branch", exact=True).click()
        page.get_by_role("heading", name="Branch (deleted)", level=1).wait_for()
        # Restored as it was, it is refused: the conflict named, nothing changed.
        page.get_by_role("button", name="Restore").click()
        page.get_by_role("heading", name="Restore refused (409)").wait_for()
        alert = page.get_by_role("alert")
        assert "Name taken" in alert.inner_text()
        assert (
            alert.get_by_role("link", name="the group holding it").get_attribute("href")
            == f"/console/groups/{taken.json()['id']}"
        )
        with api(app, acme.editor.headers) as client:
            assert client.get(f"/api/v1/groups/{branch.id}").status_code == 404
        # Under a new name it comes back, whole.
        page.get_by_label("New name").fill("Branch (restored)")
        page.get_by_role("button", name="Restore").click()
        page.wait_for_url("**/console/operations/*")
        page.get_by_role("status").get_by_text("succeeded").wait_for()
        page.get_by_role("link", name="Open the restored group").wait_for()
        with api(app, acme.editor.headers) as client:
            back = client.get(f"/api/v1/groups/{branch.id}")
            assert back.status_code == 200 and back.json()["name"] == "Branch (restored)"
            children = client.get("/api/v1/groups", params={"parentId": branch.id}).json()
            assert sorted(c["id"] for c in children["items"]) == sorted(branch.child_ids)
            assert client.get(f"/api/v1/deleted-groups/{branch.id}").status_code == 404
            licence = client.get(f"/api/v1/licenses/{branch.licence_id}").json()
            assert licence["usedUnits"] == branch.devices + branch.users
    assert_invariants(db)
