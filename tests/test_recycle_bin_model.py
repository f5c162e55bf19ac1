"""A model of the recycle bin: interleaved deletes, restores, purges and the passing of
time, each checked against what the API shows and against the invariants (books exact)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings, seed_tenant
from groupd.api.app import create_app
from groupd.api.context import AppContext
from groupd.clock import ManualClock
from groupd.settings import Settings
from groupd.store.db import Database
from helpers import create, devices, licence
from invariants import assert_invariants

RETENTION = 3600
# name -> parent name (None: under the tenant's root); each group holds one device of one
# unit, so the books are a count of devices.
TREE = {"A": None, "A1": "A", "A1x": "A1", "B": None, "B1": "B"}
NAMES = list(TREE)
tenants = itertools.count()


@pytest.fixture
def settings_(database_url: str) -> Settings:
    return make_settings(database_url, retention_seconds=RETENTION)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def bin_app(settings_: Settings, db: Database, clock: ManualClock) -> Iterator[AppContext]:
    yield AppContext.create(settings_, db=db, clock=clock)


@dataclass
class Entry:
    purge_at: float
    release: bool
    members: set[str]


@dataclass
class Model:
    """What the bin should hold: each group live, in an entry, or gone; each device's
    unit counted or released."""

    now: float = 0.0
    state: dict[str, str] = field(default_factory=lambda: dict.fromkeys(TREE, "live"))
    entries: dict[str, Entry] = field(default_factory=dict)
    counted: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(TREE, True))

    def below(self, name: str) -> list[str]:
        out = [name]
        for child, parent in TREE.items():
            if parent == name:
                out += self.below(child)
        return out

    def live(self, name: str) -> bool:
        return self.state[name] == "live"

    def parent_live(self, name: str) -> bool:
        parent = TREE[name]
        return parent is None or self.live(parent)

    def delete(self, name: str, release: bool) -> None:
        members = {g for g in self.below(name) if self.live(g)}
        for g in members:
            self.state[g] = "binned"
            if release:
                self.counted[g] = False
        self.entries[name] = Entry(self.now + RETENTION, release, members)

    def restore(self, name: str) -> None:
        entry = self.entries.pop(name)
        for g in entry.members:
            self.state[g] = "live"
            self.counted[g] = True

    def purge(self, name: str) -> None:
        for g in self.below(name):
            if self.state[g] == "binned":
                self.state[g] = "gone"
                self.entries.pop(g, None)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        # Oldest first, as the worker takes them.
        for name, entry in sorted(self.entries.items(), key=lambda item: item[1].purge_at):
            if name in self.entries and entry.purge_at <= self.now:
                self.purge(name)


action = st.one_of(
    st.tuples(st.just("delete"), st.sampled_from(NAMES), st.booleans()),
    st.tuples(st.just("restore"), st.sampled_from(NAMES), st.just(False)),
    st.tuples(st.just("purge"), st.sampled_from(NAMES), st.just(False)),
    st.tuples(st.just("advance"), st.sampled_from([600, 1800, 3000]), st.just(False)),
)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(actions=st.lists(action, min_size=3, max_size=10))
def test_interleaved_deletes_restores_and_purges_keep_the_books(
    bin_app: AppContext, db: Database, clock: ManualClock, actions: list[tuple[str, object, bool]]
) -> None:
    tenant = seed_tenant(db, f"model{next(tenants)}")
    with TestClient(create_app(context=bin_app)) as client:
        moved = run_actions(client, tenant, bin_app, db, clock, actions)
    clock.advance(-moved)  # the fixtures' tokens live a day: keep every example near now


def open_operations(db: Database) -> int:
    with db.engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT count(*) FROM operations WHERE state IN ('accepted', 'running')")
            ).scalar_one()
        )


def run_actions(
    client: TestClient,
    tenant: TenantFixture,
    ctx: AppContext,
    db: Database,
    clock: ManualClock,
    actions: list[tuple[str, object, bool]],
) -> float:
    h, admin = tenant.editor.headers, tenant.admin.headers
    seats = licence(client, h, "Seat", 100)
    ids: dict[str, str] = {}
    for name, parent in TREE.items():
        parent_id = tenant.root_id if parent is None else ids[parent]
        ids[name] = create(client, h, "/api/v1/groups", {"name": name, "parentId": parent_id})["id"]
        devices(client, h, ids[name], 1, product="Seat")
    model = Model()
    moved = 0.0
    for kind, target, release in actions:
        if kind == "delete":
            name = str(target)
            response = client.delete(
                f"/api/v1/groups/{ids[name]}",
                params={"releaseConsumedUnits": str(release).lower()},
                headers=h,
            )
            if model.live(name):
                assert response.status_code == 200, response.text
                model.delete(name, release)
            else:
                assert response.status_code == 404, response.text
        elif kind == "restore":
            name = str(target)
            response = client.post(f"/api/v1/deleted-groups/{ids[name]}/restore", headers=h)
            if name not in model.entries:
                assert response.status_code == 404, response.text
            elif not model.parent_live(name):
                assert response.status_code == 409, response.text
                assert [c["kind"] for c in response.json()["conflicts"]] == ["parent_gone"]
            else:
                assert response.status_code == 200, response.text
                model.restore(name)
        elif kind == "purge":
            name = str(target)
            response = client.delete(f"/api/v1/deleted-groups/{ids[name]}", headers=admin)
            if name in model.entries:
                # 202 when the purge waits for one binned inside it (below: the clock).
                assert response.status_code in (200, 202), response.text
                model.purge(name)
            else:
                assert response.status_code == 404, response.text
        else:
            seconds = float(str(target))
            clock.advance(seconds)
            moved += seconds
            ctx.worker.run_until_idle()
            model.advance(seconds)
        # A purge waiting for another one inside it is handed back until a moment later
        # by the clock, which only moves here; the app's own worker may hold one a while.
        for _ in range(50):
            clock.advance(1)
            moved += 1
            model.advance(1)
            ctx.worker.run_until_idle()
            if not open_operations(db):
                break
            time.sleep(0.02)
        for name in NAMES:
            shown = client.get(f"/api/v1/groups/{ids[name]}", headers=h).status_code
            assert shown == (200 if model.live(name) else 404), (name, model)
            binned = client.get(f"/api/v1/deleted-groups/{ids[name]}", headers=h).status_code
            assert binned == (200 if name in model.entries else 404), (name, model)
        used = client.get(f"/api/v1/licenses/{seats['id']}", headers=h).json()["usedUnits"]
        assert used == sum(model.counted.values()), model
        assert_invariants(db)
    return moved
