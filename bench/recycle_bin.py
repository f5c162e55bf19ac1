"""Benchmark (issue 20): the recycle bin's delete, restore and purge, against floors.

Loads ``--groups`` static groups in a 10-way tree holding ``--devices`` devices, each with
a one-unit activation (bulk SQL into groupd's schema, as ``bench/delete_in_process.py``
does), and the minimal integer-keyed schema of the same shape (``floor_*``). On a fresh
copy, in this process:

1. the floors, each ONE transaction of plain set-based SQL on the minimal schema: to the
   bin (mark the subtree's groups, mark its activations released, give the units back),
   back from the bin (the reverse), and the removal (``run_floor`` of
   ``bench/delete_subtree.py``: what a purge does);
2. groupd, through its services and a worker in this process: a delete to the bin with
   ``releaseConsumedUnits`` (phase 1 alone, and whole until its operation succeeds), its
   restore (the units taken back), another delete to the bin, and its purge now;

while a thread makes a small write every ``1 / --writer-rate`` s: the worst wait of a
small writer during each is printed with the ratios. Targets (issue 20): delete to the
bin's phase 1 <= 0.3 s and whole <= 1.5 x its floor; restore <= 2 x its floor; purge
<= 1.5 x the removal floor.

    .venv/bin/python bench/recycle_bin.py --db sqlite --groups 1000 --devices 100000
    .venv/bin/python bench/recycle_bin.py --db postgresql
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SRC,
    BenchDatabase,
    bootstrap,
    clone_database,
    create_database,
    drop_database,
    machine_info,
    print_machine,
    vacuum_analyze,
)
from bench.delete_subtree import Loaded, build_floor, load_through_sql, run_floor

LOW, HIGH = "/1/2/", "/1/20"  # the floor's subtree: group 2 and everything under it


def _floor_transaction(db: BenchDatabase, statements: list[str]) -> float:
    param = "?" if db.is_sqlite else "%s"
    connection = db.raw_connect()
    try:
        cur = connection.cursor()
        started = time.perf_counter()
        db.begin(cur)
        for statement in statements:
            sql = statement.replace(":p", param)
            cur.execute(sql, (LOW, HIGH) * sql.count(f"path >= {param}"))
        db.commit(connection, cur)
        return time.perf_counter() - started
    finally:
        connection.close()


def prepare_floor_bin(db: BenchDatabase) -> None:
    """The minimal schema's columns for a bin: a group's state, an activation's release."""
    connection = db.raw_connect()
    try:
        cur = connection.cursor()
        db.begin(cur)
        cur.execute("ALTER TABLE floor_groups ADD COLUMN state INTEGER NOT NULL DEFAULT 0")
        cur.execute("ALTER TABLE floor_activations ADD COLUMN released INTEGER")
        db.commit(connection, cur)
    finally:
        connection.close()


_IN_TREE = "SELECT id FROM floor_groups WHERE path >= :p AND path < :p"
_OBJECTS = f"SELECT id FROM floor_objects WHERE group_id IN ({_IN_TREE})"


def floor_to_bin(db: BenchDatabase) -> float:
    return _floor_transaction(
        db,
        [
            "UPDATE floor_groups SET state = 1 WHERE path >= :p AND path < :p",
            "UPDATE floor_licences SET used = used - coalesce((SELECT sum(a.units)"
            " FROM floor_activations a WHERE a.licence_id = floor_licences.id"
            f" AND a.released IS NULL AND a.object_id IN ({_OBJECTS})), 0)",
            f"UPDATE floor_activations SET released = 1 WHERE object_id IN ({_OBJECTS})",
        ],
    )


def floor_from_bin(db: BenchDatabase) -> float:
    return _floor_transaction(
        db,
        [
            "UPDATE floor_licences SET used = used + coalesce((SELECT sum(a.units)"
            " FROM floor_activations a WHERE a.licence_id = floor_licences.id"
            f" AND a.released IS NOT NULL AND a.object_id IN ({_OBJECTS})), 0)",
            f"UPDATE floor_activations SET released = NULL WHERE object_id IN ({_OBJECTS})",
            "UPDATE floor_groups SET state = 0 WHERE path >= :p AND path < :p",
        ],
    )


class SmallWriter:
    """A thread writing one small row every ``1 / rate`` s; the worst wait per phase."""

    def __init__(self, write: Callable[[], None], rate: float) -> None:
        self.write = write
        self.rate = rate
        self.waits: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1 / self.rate):
            began = time.perf_counter()
            self.write()
            self.waits.append(time.perf_counter() - began)

    @contextmanager
    def beside(self) -> Iterator[list[float]]:
        self.waits = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        if self.rate > 0:
            self._thread.start()
        try:
            yield self.waits
        finally:
            self._stop.set()
            if self.rate > 0:
                self._thread.join(30)


def run_groupd(
    db: BenchDatabase, loaded: Loaded, rate: float, timeout: float
) -> dict[str, tuple[float, float]]:
    """Delete to the bin, restore, delete again and purge, through the services and a
    worker here; each phase's seconds and the small writer's worst wait beside it."""
    sys.path.insert(0, str(SRC))
    from sqlalchemy import select, update

    from groupd.clock import system_clock
    from groupd.services import deletion, recycle_bin, restore
    from groupd.services.common import Actor
    from groupd.settings import Settings
    from groupd.store.db import Database, transaction
    from groupd.store.models import Group, Tenant
    from groupd.worker import Worker

    settings = Settings(database_url=db.url, retention_seconds=7 * 86400)
    database = Database.from_settings(settings)
    key = uuid.UUID(loaded.subtree_root)
    with transaction(database) as uow:
        tenant_id = uow.session.execute(
            select(Group.tenant_id).where(Group.uuid == key)
        ).scalar_one()
    actor = Actor(tenant_id=tenant_id, account_id=None, username="bench", role="admin")

    def small_write() -> None:
        with transaction(database) as uow:
            uow.session.execute(
                update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name)
            )

    def run_worker() -> None:
        thread = threading.Thread(target=Worker(database, settings).run_until_idle, daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"the worker did not finish within {timeout} s")

    def to_bin() -> float:
        began = time.perf_counter()
        with transaction(database) as uow:
            deletion.request_delete(
                uow,
                actor=actor,
                group_id=key,
                release_units=True,
                now=system_clock(),
                retention_seconds=settings.retention_seconds,
            )
        return time.perf_counter() - began

    writer = SmallWriter(small_write, rate)
    figures: dict[str, tuple[float, float]] = {}
    try:
        with writer.beside() as waits:
            began = time.perf_counter()
            phase1 = to_bin()
            run_worker()
            whole = time.perf_counter() - began
        figures["to the bin, phase 1"] = (phase1, 0.0)
        figures["to the bin, whole"] = (whole, max(waits, default=0.0))
        with writer.beside() as waits:
            began = time.perf_counter()
            with transaction(database) as uow:
                restore.accept_restore(uow, actor=actor, group_id=key, now=system_clock())
            run_worker()
            figures["restore"] = (time.perf_counter() - began, max(waits, default=0.0))
        with transaction(database) as uow:
            restored = uow.session.execute(select(Group.state).where(Group.uuid == key)).scalar()
        if restored != "live":
            raise RuntimeError("the restore did not bring the subtree back")
        to_bin()
        run_worker()
        with writer.beside() as waits:
            began = time.perf_counter()
            with transaction(database) as uow:
                recycle_bin.purge_now(uow, actor=actor, group_id=key, now=system_clock())
            run_worker()
            figures["purge"] = (time.perf_counter() - began, max(waits, default=0.0))
        with transaction(database) as uow:
            left = uow.session.execute(select(Group.id).where(Group.uuid == key)).first()
        if left is not None:
            raise RuntimeError("the purge left the subtree's root")
    finally:
        database.dispose()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--writer-rate", type=float, default=5.0, help="small writes per s")
    parser.add_argument("--timeout", type=float, default=3600.0, help="one operation's limit, s")
    args = parser.parse_args()
    pg_url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    print_machine(machine_info(pg_url if args.db == "postgresql" else None))
    print("command:", " ".join(sys.argv))
    template = create_database(args.db, "bin")
    try:
        token = bootstrap(template)
        loaded = load_through_sql(template, token, args.groups, args.devices, 10)
        build_floor(template, args.groups, args.devices, 10)
        prepare_floor_bin(template)
        vacuum_analyze(template)
        print(f"loaded {args.groups} groups, {args.devices} devices in {loaded.load_seconds:.1f} s")
        copy = clone_database(template, "bin0")
        try:
            floors = {"to the bin": floor_to_bin(copy), "restore": floor_from_bin(copy)}
            floors["purge"] = run_floor(copy)["seconds"]
            figures = run_groupd(copy, loaded, args.writer_rate, args.timeout)
        finally:
            drop_database(copy)
    finally:
        drop_database(template)
    targets = {"to the bin, whole": 1.5, "restore": 2.0, "purge": 1.5}
    floor_of = {"to the bin, whole": "to the bin", "restore": "restore", "purge": "purge"}
    print(f"\n{'what':<22} {'groupd s':>9} {'floor s':>8} {'ratio':>6} {'target':>7}  writer worst")
    for what, (seconds, worst) in figures.items():
        if what in floor_of:
            floor = floors[floor_of[what]]
            ratio = seconds / floor
            ok = "met" if ratio <= targets[what] else "MISSED"
            print(
                f"{what:<22} {seconds:9.3f} {floor:8.3f} {ratio:6.2f} {targets[what]:>5.1f}x"
                f" {ok:<6} {worst * 1000:6.0f} ms"
            )
        else:
            ok = "met" if seconds <= 0.3 else "MISSED"
            print(f"{what:<22} {seconds:9.3f} {'':>8} {'':>6} {'0.3 s':>7} {ok}")


if __name__ == "__main__":
    main()
