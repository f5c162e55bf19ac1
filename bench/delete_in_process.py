"""Benchmark (issue 3): phase 2 of a big delete in process, statement by statement.

Where ``bench/delete_subtree.py`` judges the targets through the HTTP API, this one shows
where phase 2's time goes. It loads the same subtree (``--groups`` groups in a 10-way
tree, ``--devices`` devices each with a one-unit activation) by bulk SQL, and for each
run, on a fresh copy of that database:

1. the floor: the same work in one transaction of plain SQL on the minimal schema
   (``run_floor`` of ``delete_subtree``), for the ratio;
2. phase 1 through the service (``deletion.request_delete``), units released;
3. phase 2 by ``Worker.run_until_idle()`` in this process, while a thread writes a small
   row through the unit of work ``--writer-rate`` times a second (as a small writer would
   on the server; its worst wait is printed), and SQLAlchemy's cursor events sum the
   time of each statement.

It prints phase 2's time, its ratio to the floor, the writer's worst wait, where the
worker thread's time went (its statements, its commits, the WAL checkpoints it runs
after its chunks on SQLite, and the rest: Python, and waiting for the write lock), and
the statements of every thread by total time (prepared ones, which run on the driver's
cursor, included). Settings go in as ``--setting name=value`` (for instance
``--setting delete_step_objects=20000``); ``--runs`` repeats
on fresh copies.

    .venv/bin/python bench/delete_in_process.py --db sqlite
    .venv/bin/python bench/delete_in_process.py --db sqlite --setting sqlite_cache_mib=16
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

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

STATEMENTS_SHOWN = 12
WORKER_THREAD = "groupd-bench-worker"


def phase_two(
    db: BenchDatabase,
    loaded: Loaded,
    settings_overrides: dict[str, str],
    rate: float,
    timeout: float,
) -> tuple[float, float, list[float], dict[str, list[Any]], dict[str, float]]:
    """Phase 1 and 2 in this process; returns (phase 1 s, phase 2 s, writer waits,
    statement times, the worker thread's time by kind)."""
    sys.path.insert(0, str(SRC))
    from sqlalchemy import event, select, update

    from groupd.clock import system_clock
    from groupd.services import deletion, operations
    from groupd.services.common import Actor
    from groupd.settings import Settings
    from groupd.store.db import Database, UnitOfWork, transaction
    from groupd.store.models import Group, Tenant
    from groupd.store.prepared import Prepared
    from groupd.store.sqlite import WalFolds
    from groupd.worker import Worker

    # Through the constructor, so that GROUPD_* variables apply as on a server.
    values: dict[str, Any] = {"database_url": db.url, **settings_overrides}
    settings = Settings(**values)
    database = Database.from_settings(settings)
    times: dict[str, list[Any]] = defaultdict(lambda: [0, 0.0])

    @event.listens_for(database.engine, "before_cursor_execute")
    def started(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        conn.info["statement_started"] = time.perf_counter()

    @event.listens_for(database.engine, "after_cursor_execute")
    def ended(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        count(statement, time.perf_counter() - conn.info.pop("statement_started"))

    def count(statement: str, took: float) -> None:
        entry = times[re.sub(r"\s+", " ", statement)[:96]]
        entry[0] += 1
        entry[1] += took
        if threading.current_thread().name == WORKER_THREAD:
            worker_spent["statements"] += took

    # Prepared statements run on the driver's cursor, past SQLAlchemy's events: each call
    # is timed whole, fetching its rows included.
    untimed_prepared = {
        name: getattr(Prepared, name) for name in ("all", "column", "one_or_none", "execute")
    }

    def timed_prepared(name: str) -> Any:
        untimed = untimed_prepared[name]

        def timed_call(prepared: Any, uow: Any, params: Any) -> Any:
            began = time.perf_counter()
            try:
                return untimed(prepared, uow, params)
            finally:
                count(prepared.compiled_for(uow.dialect).sql, time.perf_counter() - began)

        return timed_call

    for name in untimed_prepared:
        setattr(Prepared, name, timed_prepared(name))

    # Where the worker thread's time goes besides its statements: its commits, the WAL
    # checkpoints it runs after its chunks and its waits for those run beside the next
    # chunk (SQLite). The checkpoints beside are timed apart.
    worker_spent: dict[str, float] = defaultdict(float)
    beside_spent: dict[str, float] = defaultdict(float)

    def timed(what: str, run: Any) -> Any:
        def timed_run(*args: Any) -> Any:
            began = time.perf_counter()
            try:
                return run(*args)
            finally:
                took = time.perf_counter() - began
                if threading.current_thread().name == WORKER_THREAD:
                    worker_spent[what] += took
                else:
                    beside_spent[what] += took

        return timed_run

    database.checkpoint = timed("WAL checkpoints", database.checkpoint)  # type: ignore[method-assign]
    untimed_commit = UnitOfWork.commit
    UnitOfWork.commit = timed("commits", untimed_commit)  # type: ignore[method-assign]
    untimed_settle = WalFolds.settle
    WalFolds.settle = timed("waits for a fold beside", untimed_settle)  # type: ignore[method-assign]

    waits: list[float] = []
    stop = threading.Event()

    def small_writer(tenant_id: int) -> None:
        while not stop.wait(1 / rate):
            began = time.perf_counter()
            with transaction(database) as uow:
                uow.session.execute(
                    update(Tenant).where(Tenant.id == tenant_id).values(name=Tenant.name)
                )
            waits.append(time.perf_counter() - began)

    try:
        key = uuid.UUID(loaded.subtree_root)
        with transaction(database) as uow:
            tenant_id = uow.session.execute(
                select(Group.tenant_id).where(Group.uuid == key)
            ).scalar_one()
        actor = Actor(
            tenant_id=tenant_id,
            account_id=None,
            username="bench",
            role="admin",
            request_id="bench",
            source="bench",
        )
        began = time.perf_counter()
        with transaction(database) as uow:
            plan = deletion.request_delete(
                uow, actor=actor, group_id=key, release_units=True, now=system_clock()
            )
        phase1 = time.perf_counter() - began
        assert plan.operation_uuid is not None, "the delete was not accepted"
        times.clear()
        writer = threading.Thread(target=small_writer, args=(tenant_id,), daemon=True)
        if rate > 0:
            writer.start()
        began = time.perf_counter()
        worker = threading.Thread(
            target=Worker(database, settings).run_until_idle, name=WORKER_THREAD, daemon=True
        )
        worker.start()
        worker.join(timeout)
        phase2 = time.perf_counter() - began
        stop.set()
        if worker.is_alive():
            raise RuntimeError(f"phase 2 did not end within {timeout} s")
        if rate > 0:
            writer.join(10)
        with transaction(database) as uow:
            operation = operations.get_operation(
                uow, actor=actor, operation_id=plan.operation_uuid, now=system_clock()
            )
        deleted = (operation.result_body or {}).get("deleted", {})
        if operation.state != "succeeded" or (deleted.get("groups"), deleted.get("devices")) != (
            loaded.groups,
            loaded.devices,
        ):
            raise RuntimeError(f"the delete did not remove what was loaded: {operation}")
    finally:
        UnitOfWork.commit = untimed_commit  # type: ignore[method-assign]
        WalFolds.settle = untimed_settle  # type: ignore[method-assign]
        for name, untimed in untimed_prepared.items():
            setattr(Prepared, name, untimed)
        database.dispose()
    worker_spent.update({f"{what} (other threads)": took for what, took in beside_spent.items()})
    return phase1, phase2, waits, dict(times), dict(worker_spent)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--writer-rate", type=float, default=5.0, help="small writes per s")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=3600.0, help="one phase 2's limit, s")
    parser.add_argument("--setting", action="append", default=[], help="name=value")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.setting)
    info = machine_info(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres" if args.db == "postgresql" else None
    )
    print_machine(info)
    print("command:", " ".join(sys.argv))
    template = create_database(args.db, "inproc")
    try:
        token = bootstrap(template)
        loaded = load_through_sql(template, token, args.groups, args.devices, 10)
        build_floor(template, args.groups, args.devices, 10)
        vacuum_analyze(template)
        print(f"loaded {args.groups} groups, {args.devices} devices in {loaded.load_seconds:.1f} s")
        for run in range(args.runs):
            copy = clone_database(template, f"inproc{run}")
            try:
                floor = run_floor(copy)
                phase1, phase2, waits, times, spent = phase_two(
                    copy, loaded, overrides, args.writer_rate, args.timeout
                )
            finally:
                drop_database(copy)
            worst = f"{max(waits) * 1000:.0f} ms" if waits else "-"
            print(
                f"\nrun {run + 1}: floor {floor['seconds']:.2f} s, phase 1 {phase1 * 1000:.0f} ms,"
                f" phase 2 {phase2:.2f} s = {phase2 / floor['seconds']:.2f} x the floor;"
                f" small writer: {len(waits)} writes, worst wait {worst}"
            )
            beside = {
                what: took for what, took in spent.items() if what.endswith(" (other threads)")
            }
            own = {what: took for what, took in spent.items() if what not in beside}
            rest = phase2 - sum(own.values())
            print(
                "the worker thread: "
                + ", ".join(f"{what} {seconds:.2f} s" for what, seconds in own.items())
                + f", the rest (Python, waits for the lock) {rest:.2f} s"
            )
            if beside:
                print(
                    "other threads (the WAL fold beside, the small writer, the background"
                    " checkpointer): "
                    + ", ".join(
                        f"{what.removesuffix(' (other threads)')} {seconds:.2f} s"
                        for what, seconds in beside.items()
                    )
                )
            print(f"{'total s':>8} {'count':>6}  statement (phase 2, every thread)")
            ranked = sorted(times.items(), key=lambda item: -item[1][1])
            for statement, (count, seconds) in ranked[:STATEMENTS_SHOWN]:
                print(f"{seconds:8.2f} {count:6d}  {statement}")
    finally:
        drop_database(template)


if __name__ == "__main__":
    main()
