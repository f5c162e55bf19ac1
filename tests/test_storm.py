"""A storm: 8 clients for 30 s creating, moving, deleting and importing on shared subtrees.

Each client is a thread with its own keep-alive HTTP connection to a real ``groupd serve``
process, picking its next step (seeded) from a mix of writes and reads over one pool of
group and object ids that every client draws from and adds to, so they keep stepping on
each other: creating under a group another client is deleting, moving a subtree under one
that is being moved or deleted, importing into groups that vanish. 4xx answers (404 for
a group that just went, 409 for a cycle or a guard) are expected; a 5xx or a request left
unanswered is a failure. When the clients stop and every accepted delete has finished,
the invariants must hold. ``GROUPD_STORM_SECONDS`` and ``GROUPD_STORM_SEED`` change the
length and the mix.
"""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from conftest import TenantFixture
from groupd.clock import system_clock
from groupd.errors import NotFound
from groupd.services import accounts, deletion, groups
from groupd.services.common import Actor
from groupd.settings import Settings
from groupd.store.db import Database, UnitOfWork, transaction
from groupd.worker import Worker
from invariants import assert_invariants
from servers import ServerProcess, server_env

SEED = int(os.environ.get("GROUPD_STORM_SEED", "8"))
CLIENTS = 8
SECONDS = float(os.environ.get("GROUPD_STORM_SECONDS", "30"))
MAX_REQUESTS_PER_CLIENT = 5000
SERVER_SETTINGS: dict[str, str | int | float | bool] = {
    "worker_lease_seconds": 2,
    "worker_poll_seconds": 0.1,
    "delete_chunk_groups": 5,
    "delete_wait_seconds": 0.2,
}


@dataclass
class Pool:
    """Ids every client draws from; ids of things another client removed linger a while."""

    groups: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)
    operations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, kind: str, rng: random.Random) -> str | None:
        with self.lock:
            items: list[str] = getattr(self, kind)
            return rng.choice(items) if items else None

    def add(self, kind: str, *ids: str) -> None:
        with self.lock:
            getattr(self, kind).extend(ids)

    def drop(self, kind: str, item: str) -> None:
        with self.lock:
            items: list[str] = getattr(self, kind)
            if item in items:
                items.remove(item)

    def size(self, kind: str) -> int:
        with self.lock:
            return len(getattr(self, kind))


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    by_step: Counter[tuple[str, int]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, step: str, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            self.by_step[(step, response.status_code)] += 1
            if response.status_code >= 500 and len(self.failures) < 20:
                request = response.request
                self.failures.append(
                    f"{request.method} {request.url.path}?"
                    f"{request.url.query.decode()} -> {response.status_code} "
                    f"{response.text[:400]}"
                )

    def transport_error(self, step: str, error: Exception) -> None:
        with self.lock:
            self.statuses[0] += 1
            self.by_step[(step, 0)] += 1
            if len(self.failures) < 20:
                self.failures.append(f"{step}: no answer: {error!r}")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())


class Storm:
    """One client's steps. Each returns after one request."""

    def __init__(
        self, index: int, client: httpx.Client, pool: Pool, tally: Tally, root: str, licence: str
    ) -> None:
        self.index = index
        self.licence = licence
        self.client = client
        self.pool = pool
        self.tally = tally
        self.root = root
        self.rng = random.Random(SEED * 1000 + index)
        self.count = 0
        self.steps: list[tuple[Callable[[], None], int]] = [
            (self.create_group, 14),
            (self.create_subtree, 6),
            (self.move_group, 14),
            (self.rename_group, 4),
            (self.delete_group, 5),
            (self.import_objects, 14),
            (self.move_object, 8),
            (self.add_activation, 4),
            (self.read, 28),
        ]

    def step(self) -> None:
        actions, weights = zip(*self.steps, strict=True)
        self.rng.choices(actions, weights)[0]()

    def send(self, name: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        self.count += 1
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            self.tally.transport_error(name, error)
            return None
        self.tally.record(name, response)
        return response

    def group(self) -> str:
        return self.pool.pick("groups", self.rng) or self.root

    def parent(self) -> str:
        # Deletes take whole subtrees; when few groups are left, grow from the root again.
        if self.pool.size("groups") < 20 and self.rng.random() < 0.5:
            return self.root
        return self.group()

    def name(self, prefix: str) -> str:
        return f"{prefix}{self.index}-{self.rng.getrandbits(40):x}"

    def _gone(self, response: httpx.Response | None, kind: str, item: str) -> None:
        if response is not None and response.status_code == 404:
            self.pool.drop(kind, item)

    # writes ----------------------------------------------------------------------------
    def create_group(self) -> None:
        parent = self.parent()
        answer = self.send(
            "create", "POST", "/api/v1/groups", json={"name": self.name("g"), "parentId": parent}
        )
        if answer is not None and answer.status_code == 201:
            self.pool.add("groups", answer.json()["id"])
        self._gone(answer, "groups", parent)

    def create_subtree(self) -> None:
        parent = self.parent()
        top = str(uuid.uuid4())
        items = [{"id": top, "name": self.name("s"), "parentId": parent}]
        items += [
            {"id": str(uuid.uuid4()), "name": self.name("s"), "parentId": top}
            for _ in range(self.rng.randint(1, 4))
        ]
        answer = self.send(
            "batchCreate", "POST", "/api/v1/groups:batchCreate", json={"groups": items}
        )
        if answer is not None and answer.status_code == 201:
            self.pool.add("groups", *[item["id"] for item in items])
        self._gone(answer, "groups", parent)

    def move_group(self) -> None:
        moved, parent = self.group(), self.group()
        answer = self.send(
            "move", "POST", f"/api/v1/groups/{moved}/move", json={"parentId": parent}
        )
        self._gone(answer, "groups", moved)

    def rename_group(self) -> None:
        group = self.group()
        answer = self.send(
            "rename", "PATCH", f"/api/v1/groups/{group}", json={"name": self.name("r")}
        )
        self._gone(answer, "groups", group)

    def delete_group(self) -> None:
        group = self.group()
        release = self.rng.choice(("true", "false"))
        answer = self.send(
            "delete",
            "DELETE",
            f"/api/v1/groups/{group}",
            params={"wait": "0", "releaseConsumedUnits": release},
        )
        if answer is not None and answer.status_code in (200, 202):
            self.pool.add("operations", answer.json()["id"])
            self.pool.drop("groups", group)
        self._gone(answer, "groups", group)

    def import_objects(self) -> None:
        home = self.group()
        objects = [
            {
                "kind": "device",
                "name": self.name("d"),
                "homeGroupId": home,
                "activations": [{"product": "Seats", "units": self.rng.randint(1, 3)}],
            }
            for _ in range(self.rng.randint(5, 40))
        ]
        answer = self.send(
            "import", "POST", "/api/v1/objects:batchImport", json={"objects": objects}
        )
        if answer is not None and answer.status_code == 201:
            self.pool.add("objects", *[item["id"] for item in answer.json()["items"]])
        self._gone(answer, "groups", home)

    def move_object(self) -> None:
        item = self.pool.pick("objects", self.rng)
        if item is None:
            return self.import_objects()
        answer = self.send(
            "moveObject", "POST", f"/api/v1/objects/{item}/move", json={"groupId": self.group()}
        )
        self._gone(answer, "objects", item)
        return None

    def add_activation(self) -> None:
        item = self.pool.pick("objects", self.rng)
        if item is None:
            return self.import_objects()
        answer = self.send(
            "activate",
            "POST",
            f"/api/v1/licenses/{self.licence}/activations",
            json={"objectId": item, "units": 1},
        )
        self._gone(answer, "objects", item)
        return None

    # reads -----------------------------------------------------------------------------
    def read(self) -> None:
        group = self.group()
        choice = self.rng.randrange(4)
        if choice == 0:
            answer = self.send("get", "GET", f"/api/v1/groups/{group}")
        elif choice == 1:
            answer = self.send(
                "children", "GET", "/api/v1/groups", params={"parentId": group, "limit": 50}
            )
        elif choice == 2:
            answer = self.send(
                "subtreeObjects",
                "GET",
                f"/api/v1/groups/{group}/objects",
                params={"recursive": "true", "limit": 100},
            )
        else:
            operation = self.pool.pick("operations", self.rng)
            if operation is None:
                answer = self.send("get", "GET", f"/api/v1/groups/{group}")
            else:
                answer = self.send("operation", "GET", f"/api/v1/operations/{operation}")
                return
        self._gone(answer, "groups", group)


def settle(db: Database, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as connection:
            open_ops = connection.execute(
                text("SELECT COUNT(*) FROM operations WHERE state IN ('accepted', 'running')")
            ).scalar_one()
        if not open_ops:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"operations still open {timeout} s after the storm; tangled: {tangled_groups(db)}"
    )


def tangled_groups(db: Database) -> list[tuple[object, ...]]:
    """Groups whose parent belongs to another delete, or to none while they are in one."""
    with db.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                text("""
            SELECT c.id, c.state, c.operation_id, c.depth, p.id, p.state, p.operation_id,
                   p.depth, o.state
            FROM groups c JOIN groups p ON p.id = c.parent_id
            LEFT JOIN operations o ON o.id = p.operation_id
            WHERE p.state <> 'live'
              AND (c.operation_id IS NULL OR c.operation_id <> p.operation_id)
        """)
            )
        ]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(
        server_env(database_url, **SERVER_SETTINGS), tmp_path / "groupd.log"
    ) as process:
        process.start()
        yield process


def seed_zones(client: httpx.Client, tenant: TenantFixture, pool: Pool) -> str:
    """Four zones of 13 groups, each with devices holding seats."""
    seats = client.post(
        "/api/v1/licenses", json={"product": "Seats", "unitKind": "seat", "totalUnits": 10_000_000}
    )
    assert seats.status_code == 201, seats.text
    items: list[dict[str, Any]] = []
    for zone in range(4):
        top = str(uuid.uuid4())
        items.append({"id": top, "name": f"zone-{zone}", "parentId": tenant.root_id})
        for i in range(3):
            mid = str(uuid.uuid4())
            items.append({"id": mid, "name": f"z{zone}-{i}", "parentId": top})
            items += [
                {"id": str(uuid.uuid4()), "name": f"z{zone}-{i}-{j}", "parentId": mid}
                for j in range(3)
            ]
    answer = client.post("/api/v1/groups:batchCreate", json={"groups": items})
    assert answer.status_code == 201, answer.text
    pool.add("groups", *[item["id"] for item in items])
    objects = [
        {
            "kind": "device",
            "name": f"seed-{n}",
            "homeGroupId": item["id"],
            "activations": [{"product": "Seats", "units": 1}],
        }
        for item in items
        for n in range(5)
    ]
    answer = client.post("/api/v1/objects:batchImport", json={"objects": objects})
    assert answer.status_code == 201, answer.text
    pool.add("objects", *[item["id"] for item in answer.json()["items"]])
    return str(seats.json()["id"])


@pytest.mark.slow
def test_storm_of_eight_clients(
    server: ServerProcess, acme: TenantFixture, db: Database, request: pytest.FixtureRequest
) -> None:
    pool, tally = Pool(), Tally()
    headers = acme.editor.headers
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
        licence = seed_zones(client, acme, pool)
    deadline = time.monotonic() + SECONDS

    def run(index: int) -> None:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
            storm = Storm(index, client, pool, tally, acme.root_id, licence)
            while time.monotonic() < deadline and storm.count < MAX_REQUESTS_PER_CLIENT:
                storm.step()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(CLIENTS)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SECONDS + 60)
    elapsed = time.monotonic() - started
    assert not any(thread.is_alive() for thread in threads), "a client is stuck"
    settle(db)
    accepted_deletes = tally.by_step[("delete", 202)] + tally.by_step[("delete", 200)]
    print(
        f"\nstorm [{request.node.callspec.id}]: {CLIENTS} clients, {tally.requests} requests "
        f"in {elapsed:.1f} s ({tally.requests / elapsed:.0f}/s); statuses "
        f"{dict(sorted(tally.statuses.items()))}; deletes accepted {accepted_deletes}"
    )
    print("  by step:", dict(sorted(tally.by_step.items())))
    assert not tally.failures, (
        "\n".join(tally.failures) + f"\ntangled: {tangled_groups(db)}\n" + server.log_problems()
    )
    assert all(status < 500 for status in tally.statuses), tally.statuses
    # The storm did real work on every kind of write, not only 404s.
    for step, ok in (("create", 201), ("move", 200), ("import", 201), ("moveObject", 200)):
        assert tally.by_step[(step, ok)] > 0, (step, tally.by_step)
    assert accepted_deletes > 0
    assert not tangled_groups(db), f"{tangled_groups(db)}\n{server.log_problems()}"
    assert_invariants(db)


class Held(threading.Thread):
    """A transaction on its own thread: runs ``work``, then stays open until released."""

    def __init__(self, db: Database, work: Callable[[UnitOfWork], Any]) -> None:
        super().__init__(daemon=True)
        self.db, self.work = db, work
        self.pid = 0
        self.started_tx = threading.Event()
        self.done = threading.Event()
        self.release = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction(self.db) as uow:
                self.pid = uow.session.execute(text("SELECT pg_backend_pid()")).scalar_one()
                self.started_tx.set()
                self.result = self.work(uow)
                self.done.set()
                assert self.release.wait(30), "never released"
        except BaseException as error:  # reported by the test
            self.error = error
        finally:
            self.started_tx.set()
            self.done.set()

    def begin(self) -> Held:
        self.start()
        assert self.started_tx.wait(10)
        return self


def wait_blocked(db: Database, waiter: Held, holder: Held, timeout: float = 10.0) -> None:
    """Until ``waiter``'s statement waits for a lock that ``holder`` has."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with db.engine.connect() as connection:
            blockers = connection.execute(
                text("SELECT pg_blocking_pids(:pid)"), {"pid": waiter.pid}
            ).scalar_one()
        if holder.pid in (blockers or []):
            return
        time.sleep(0.01)
    raise AssertionError(f"backend {waiter.pid} never waited for {holder.pid}")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_delete_marks_a_child_created_under_a_subtree_moved_in_meanwhile(
    acme: TenantFixture, db: Database, settings: Settings
) -> None:
    # The interleaving the storm found on PostgreSQL (SQLite runs one writer at a time):
    # a delete of A waits for a move that puts M under A's Q; a create under M waits for
    # the move too, and holds M while the delete's second marking statement waits for it.
    # That statement's snapshot predates the new child, so only a third one marks it.
    with transaction(db) as uow:
        account = accounts.get_account(uow, username=acme.admin.username)
    actor = accounts.account_actor(account, request_id="race", source=None)
    now = system_clock()

    def make(uow: UnitOfWork, name: str, parent: Any) -> Any:
        spec = groups.GroupSpec(name=name, parent_uuid=parent)
        return groups.create_group(uow, actor=actor, spec=spec, now=now).uuid

    root = uuid.UUID(acme.root_id)
    with transaction(db) as uow:
        a = make(uow, "A", root)
        q, z = make(uow, "Q", a), make(uow, "Z", a)
        mover = make(uow, "M", make(uow, "B", root))
    holder = Held(db, lambda uow: make(uow, "h", z)).begin()  # holds Z
    assert holder.done.wait(10) and holder.error is None
    move = Held(
        db,
        lambda uow: groups.move_group(uow, actor=actor, group_id=mover, new_parent_id=q, now=now),
    ).begin()
    assert move.done.wait(10) and move.error is None
    delete = Held(
        db,
        lambda uow: deletion.request_delete(
            uow, actor=actor, group_id=a, release_units=False, now=now
        ),
    )
    delete.release.set()  # commits as soon as phase 1 returns
    delete.begin()
    # Pin the interleaving: the delete's first statement must reach Q before the move
    # commits (on a busy machine it could start after, see M already under Q, and wait for
    # 'late' before 'holder').
    wait_blocked(db, delete, move)
    late = Held(db, lambda uow: make(uow, "late", mover)).begin()
    wait_blocked(db, late, move)
    move.release.set()
    move.join(10)
    assert late.done.wait(10) and late.error is None, late.error  # created, not committed
    wait_blocked(db, delete, holder)  # the first marking statement
    holder.release.set()
    holder.join(10)
    wait_blocked(db, delete, late)  # a later one, its snapshot taken before 'late' was
    late.release.set()
    late.join(10)
    delete.join(10)
    assert delete.error is None, delete.error
    _assert_marked(db, actor, late.result)
    Worker(db, settings).run_until_idle()
    assert_invariants(db)


def _assert_marked(db: Database, actor: Actor, group: Any) -> None:
    # Marked: hidden from reads, like the rest of the subtree (a live child of a group
    # being deleted is what broke phase 2's parent key).
    with transaction(db) as uow, pytest.raises(NotFound):
        groups.get_group(uow, actor=actor, group_id=group)
