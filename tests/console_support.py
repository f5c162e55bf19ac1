"""What the console's tests share: a branch of data seeded below HTTP, a served app in a
background thread (so a test can hold its clock), and signing in."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from conftest import PASSWORD, TenantFixture
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import Clock, system_clock
from groupd.services import groups, licensing, memberships, objects
from groupd.services.common import Actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction
from servers import free_port

SIGN_IN_TOKEN = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Branch:
    """A subtree "Branch" under "All": two sub-groups, devices and users with a seat each,
    and a user group one of the users belongs to."""

    id: str
    name: str
    child_ids: list[str]
    licence_id: str
    user_group_id: str
    devices: int
    users: int


def seed_branch(
    db: Database, tenant: TenantFixture, *, name: str = "Branch", devices: int = 6, users: int = 2
) -> Branch:
    actor = Actor(tenant_id=tenant.id, account_id=None, username="seed", role="admin")
    now = system_clock()
    with transaction(db) as uow:
        licence = licensing.create_licence(
            uow, actor=actor, product=f"Seats {name}", unit_kind="seat", total_units=100, now=now
        )
        root = groups.create_group(
            uow,
            actor=actor,
            spec=groups.GroupSpec(name=name, parent_uuid=groups.parse_uuid(tenant.root_id)),
            now=now,
        )
        children = [
            groups.create_group(
                uow,
                actor=actor,
                spec=groups.GroupSpec(name=f"{name} {i}", parent_uuid=root.uuid),
                now=now,
            )
            for i in (1, 2)
        ]
        seat = [objects.ActivationSpec(licence_uuid=licence.uuid)]
        specs = [
            objects.ObjectSpec("device", f"pc-{i}", children[i % 2].uuid, activations=list(seat))
            for i in range(devices)
        ]
        specs += [
            objects.ObjectSpec(
                "user",
                f"user-{i}",
                root.uuid,
                login_name=f"{name.lower()}-user-{i}",
                activations=list(seat),
            )
            for i in range(users)
        ]
        made = objects.import_objects(uow, actor=actor, specs=specs, now=now)
        team = groups.create_group(
            uow, actor=actor, spec=groups.GroupSpec(name=f"{name} team", kind="user"), now=now
        )
        for user in [o for o in made if o.kind == "user"][:1]:
            memberships.add_member(
                uow, actor=actor, group_id=team.uuid, object_id=user.uuid, now=now
            )
    return Branch(
        str(root.uuid),
        name,
        [str(c.uuid) for c in children],
        str(licence.uuid),
        str(team.uuid),
        devices,
        users,
    )


class ServedApp:
    """groupd served by uvicorn on a loopback port, in a thread of this process."""

    def __init__(self, settings: Settings, db: Database, clock: Clock = system_clock) -> None:
        self.context = AppContext.create(settings, db=db, clock=clock)
        self.port = free_port()
        config = uvicorn.Config(
            create_app(context=self.context),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive(), "the server thread ended before it started"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(20)


@contextmanager
def served(settings: Settings, db: Database, clock: Clock = system_clock) -> Iterator[ServedApp]:
    app = ServedApp(settings, db, clock)
    app.start()
    try:
        yield app
    finally:
        app.stop()


def sign_in(client: Any, username: str, password: str = PASSWORD) -> Any:
    """Sign a TestClient or httpx client in through the form; the answer to the POST."""
    page = client.get("/console/sign-in")
    token = SIGN_IN_TOKEN.search(page.text)
    assert token is not None, page.text
    return client.post(
        "/console/sign-in",
        data={"csrf": token.group(1), "username": username, "password": password},
        follow_redirects=False,
    )


def csrf_of(html: str) -> str:
    found = SIGN_IN_TOKEN.search(html)
    assert found is not None, "the page carries no CSRF token"
    return found.group(1)


def sign_in_page(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Sign a playwright page in by the form, as a person does."""
    page.goto(f"{base_url}/console/sign-in")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base_url}/console/")


def api(app: ServedApp, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=app.base_url, headers=headers, timeout=30)
