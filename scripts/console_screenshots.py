"""Write a screenshot of each console page into docs/console/ (shown in docs/console.md).

Builds a small demonstration tenant in a temporary SQLite database (through the services,
below HTTP), serves groupd on a loopback port in this process, and drives Debian's
Chromium headless through playwright:

    .venv/bin/python scripts/console_screenshots.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from playwright.sync_api import Page, sync_playwright

from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.bootstrap import prepare_database
from groupd.clock import system_clock
from groupd.services import (
    accounts,
    deletion,
    group_views,
    groups,
    licensing,
    memberships,
    objects,
)
from groupd.services.common import Actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction

PASSWORD = "console screenshots"
CHROMIUM = "/usr/bin/chromium"


def seed(db: Database) -> dict[str, str]:
    """A demonstration tenant: offices with devices and people, a customer group with a
    linked entity, user and policy groups, a licence, and one earlier delete."""
    prepare_database(db)
    now = system_clock()
    ids: dict[str, str] = {}
    with transaction(db) as uow:
        tenant = accounts.get_tenant(uow, name="default")
        ids["tenant"] = str(tenant.id)
        for username, role in (("ada", "admin"), ("editor", "editor"), ("viewer", "viewer")):
            accounts.create_account(
                uow, tenant_id=tenant.id, username=username, role=role, password=PASSWORD, now=now
            )
        actor = Actor(tenant_id=tenant.id, account_id=None, username="ada", role="admin")
        root = group_views.get_root(uow, actor=actor)
        licence = licensing.create_licence(
            uow,
            actor=actor,
            product="Endpoint Security",
            unit_kind="seat",
            total_units=250,
            now=now,
        )
        ids["licence"] = str(licence.uuid)

        def group(name: str, parent: Any, **kw: Any) -> groups.GroupView:
            spec = groups.GroupSpec(name=name, parent_uuid=parent.uuid if parent else None, **kw)
            view = groups.create_group(uow, actor=actor, spec=spec, now=now)
            ids[name] = str(view.uuid)
            return view

        europe = group("Europe", root, description="Offices in the EU")
        berlin = group("Berlin office", europe, description="Friedrichstraße, 3rd floor")
        group("Berlin lab", berlin)
        paris = group("Paris office", europe)
        america = group("North America", root)
        group("Toronto office", america)
        group(
            "Customer Globex",
            america,
            linked_entity=groups.LinkedEntity("CUSTOMER", "globex-0042"),
        )
        group("Engineering", None, kind="user", description="Everyone who ships code")
        group("Finance", None, kind="user")
        group(
            "VPN allowed",
            None,
            kind="policy",
            value_type="ip_range",
            values=["10.20.0.0/16", "192.168.8.0/24"],
        )
        seat = [objects.ActivationSpec(licence_uuid=licence.uuid)]
        specs = [
            objects.ObjectSpec("device", f"ber-laptop-{i:02d}", berlin.uuid, activations=list(seat))
            for i in range(1, 13)
        ]
        specs += [
            objects.ObjectSpec("user", name, berlin.uuid, login_name=login, activations=list(seat))
            for name, login in (("Ada Lovelace", "ada"), ("Alan Turing", "alan"))
        ]
        specs += [
            objects.ObjectSpec("device", f"par-desk-{i:02d}", paris.uuid, activations=list(seat))
            for i in range(1, 4)
        ]
        made = objects.import_objects(uow, actor=actor, specs=specs, now=now)
        for person in (o for o in made if o.kind == "user"):
            memberships.add_member(
                uow, actor=actor, group_id=ids["Engineering"], object_id=person.uuid, now=now
            )
        # An earlier delete that kept its units: orphaned activations on the licence page.
        deletion.request_delete(uow, actor=actor, group_id=paris.uuid, release_units=False, now=now)
    return ids


def take_the_name(db: Database, ids: dict[str, str]) -> None:
    """A new live "Berlin office" beside the deleted one."""
    actor = Actor(tenant_id=int(ids["tenant"]), account_id=None, username="ada", role="admin")
    spec = groups.GroupSpec(name="Berlin office", parent_uuid=groups.parse_uuid(ids["Europe"]))
    with transaction(db) as uow:
        groups.create_group(uow, actor=actor, spec=spec, now=system_clock())


class Served:
    def __init__(self, settings: Settings, db: Database) -> None:
        context = AppContext.create(settings, db=db)
        config = uvicorn.Config(create_app(context=context), host="127.0.0.1", port=0)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def sign_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/console/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/")


def shoot(page: Page, out: Path, name: str) -> None:
    page.screenshot(path=str(out / f"{name}.png"), full_page=True)
    print(f"wrote {out / name}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/console"))
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as workdir:
        settings = Settings(
            database_url=f"sqlite:///{workdir}/console.db",
            rate_limit_enabled=False,
            worker_poll_seconds=0.05,
        )
        db = Database.from_settings(settings)
        ids = seed(db)
        with Served(settings, db) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(f"{base}/console/sign-in")
            shoot(page, out, "sign-in")
            sign_in(page, base, "editor")
            page.get_by_role("button", name="Expand Europe", exact=True).click()
            page.get_by_role("button", name="Expand Berlin office", exact=True).click()
            page.get_by_role("link", name="Berlin lab").wait_for()
            shoot(page, out, "tree")
            page.get_by_label("Search groups by name").fill("office")
            page.keyboard.press("Enter")
            page.wait_for_url("**/console/search?q=office")
            shoot(page, out, "search")
            page.goto(f"{base}/console/groups/{ids['Berlin office']}?recursive=true")
            shoot(page, out, "group")
            page.goto(f"{base}/console/groups/{ids['Engineering']}")
            shoot(page, out, "user-group")
            page.goto(f"{base}/console/groups/{ids['VPN allowed']}")
            shoot(page, out, "policy-group")
            page.goto(f"{base}/console/groups/{ids['North America']}/delete")
            page.get_by_role("heading", name="The delete would be refused").wait_for()
            shoot(page, out, "delete-refused")
            page.goto(f"{base}/console/groups/{ids['Berlin office']}/delete?release=true")
            page.get_by_text("Counted now over the whole subtree").wait_for()
            page.get_by_label("Type the group name to confirm").fill("Berlin office")
            shoot(page, out, "delete-impact")
            page.get_by_role("button", name="Delete subtree").click()
            page.wait_for_url("**/console/operations/*")
            page.locator("#op-ended").wait_for()
            shoot(page, out, "delete-progress")
            # The delete put the subtree in the recycle bin; meanwhile a new "Berlin
            # office" takes its name, so restoring it as it was is refused.
            take_the_name(db, ids)
            page.get_by_role("link", name="In the recycle bin").click()
            page.get_by_role("button", name="Restore").click()
            page.get_by_role("heading", name="Restore refused (409)").wait_for()
            page.get_by_label("New name").fill("Berlin office (old)")
            shoot(page, out, "bin-restore-refused")
            page.goto(f"{base}/console/bin")
            shoot(page, out, "bin")
            page.goto(f"{base}/console/operations")
            shoot(page, out, "operations")
            page.goto(f"{base}/console/audit")
            shoot(page, out, "audit")
            page.goto(f"{base}/console/licences")
            shoot(page, out, "licences")
            page.goto(f"{base}/console/licences/{ids['licence']}")
            shoot(page, out, "licence-orphans")
            context.close()
            viewer = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sign_in(viewer, base, "viewer")
            viewer.goto(f"{base}/console/groups/{ids['Europe']}")
            shoot(viewer, out, "group-as-viewer")
            admin = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            sign_in(admin, base, "ada")
            admin.goto(f"{base}/console/bin/{ids['Berlin office']}")
            shoot(admin, out, "bin-entry")
            browser.close()
        db.dispose()


if __name__ == "__main__":
    main()
