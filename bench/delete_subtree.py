"""Benchmark (issue 3, item 10): deleting a big subtree, against the database's floor.

Builds a 10-way tree of ``--groups`` static groups holding ``--devices`` devices, each with
a one-unit activation of one licence, through groupd's batch API (or, with ``--load sql``,
by bulk SQL into groupd's schema), on SQLite and on PostgreSQL. The loaded database is the
template; every measured configuration runs on a fresh copy of it. For each copy:

(c) the floor: the same numbers of groups, devices and activations removed and the units
    released, in ONE transaction of plain set-based SQL on a minimal schema of the same
    shape keyed by sequential integers (tables ``floor_*`` in the same database); and, as
    a reference beside it, the same SQL on groupd's own schema and rows (another copy);
(a) phase 1: ``DELETE /api/v1/groups/{id}?releaseConsumedUnits=true&wait=0`` until 202;
(b) the whole delete through the HTTP API until ``GET /api/v1/operations/{id}`` says
    succeeded;
(d) the server's peak RSS growth during the delete (sampled from /proc);
(e) a reader (GET of an unrelated group) and a small writer (creating groups elsewhere),
    each in its own process, running alongside: reader p99 and writer worst wait.

Quick run:  .venv/bin/python bench/delete_subtree.py --groups 1000 --devices 100000
Full run:   .venv/bin/python bench/delete_subtree.py
Chunk sweep: --chunks 200:20000,50:5000,20:2000 (GROUPD_DELETE_CHUNK_GROUPS:_OBJECTS)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SQLITE_NOW,
    BenchDatabase,
    RssSampler,
    api,
    bootstrap,
    check,
    clone_database,
    create_database,
    drop_database,
    machine_info,
    ms,
    percentile,
    print_machine,
    start_groupd,
    tenant_root,
    vacuum_analyze,
)

PRODUCT = "bench-seat"
BATCH = 10_000
TARGETS = {
    "phase1_s": 0.5,
    "ratio": 2.0,
    "rss_mb": 100.0,
    "reader_p99_ms": 20.0,
    "writer_worst_ms": 100.0,
}


# the tree ----------------------------------------------------------------------------
def tree_parents(groups: int, fanout: int) -> list[int]:
    """Parent index of each group in breadth-first order (-1 for the subtree root)."""
    return [-1] + [(index - 1) // fanout for index in range(1, groups)]


@dataclass
class Loaded:
    token: str
    subtree_root: str
    reader_group: str
    writer_parent: str
    licence: str
    groups: int
    devices: int
    load_seconds: float
    load_mode: str


def create_fixture(client: httpx.Client, devices: int) -> tuple[str, dict[str, Any], str, str]:
    """What both loads make through the API first: the tenant's root, the licence, and
    the groups the reader reads and the writer creates under, outside the subtree."""
    root = tenant_root(client)
    licence = check(
        client.post(
            "/api/v1/licenses",
            json={"product": PRODUCT, "unitKind": "seat", "totalUnits": devices + 1000},
        ),
        201,
    )
    side = check(client.post("/api/v1/groups", json={"name": "elsewhere", "parentId": root}), 201)[
        "id"
    ]
    reader = check(
        client.post("/api/v1/groups", json={"name": "reader-target", "parentId": side}), 201
    )["id"]
    writer = check(
        client.post("/api/v1/groups", json={"name": "writer-parent", "parentId": side}), 201
    )["id"]
    return root, licence, reader, writer


def load_through_api(
    db: BenchDatabase, token: str, groups: int, devices: int, fanout: int
) -> Loaded:
    """Everything through groupd's own batch endpoints (≤ 10,000 items per call)."""
    started = time.perf_counter()
    server = start_groupd(db, log_name="load.log")
    try:
        with api(server.base_url, token) as client:
            root, licence, reader, writer = create_fixture(client, devices)
            ids = [str(uuid.uuid4()) for _ in range(groups)]
            parents = tree_parents(groups, fanout)
            specs = [
                {
                    "id": ids[i],
                    "name": f"g{i}",
                    "parentId": root if parents[i] < 0 else ids[parents[i]],
                }
                for i in range(groups)
            ]
            for start in range(0, groups, BATCH):
                check(
                    client.post(
                        "/api/v1/groups:batchCreate", json={"groups": specs[start : start + BATCH]}
                    ),
                    201,
                )
            for start in range(0, devices, BATCH):
                batch = [
                    {
                        "kind": "device",
                        "name": f"d{n}",
                        "homeGroupId": ids[n % groups],
                        "activations": [{"product": PRODUCT, "units": 1}],
                    }
                    for n in range(start, min(devices, start + BATCH))
                ]
                check(client.post("/api/v1/objects:batchImport", json={"objects": batch}), 201, 200)
                if start and start % 100_000 == 0:
                    print(
                        f"  loaded {start} devices in {time.perf_counter() - started:.0f} s",
                        flush=True,
                    )
    finally:
        server.stop()
    return Loaded(
        token,
        ids[0],
        reader,
        writer,
        licence["id"],
        groups,
        devices,
        time.perf_counter() - started,
        "api",
    )


def _ordered_uuid_bytes(prefix: int, key: int) -> bytes:
    """The 16 bytes of a uuid that sorts with ``key`` (SQLite has no ``unhex()``)."""
    return ((prefix << 124) + key).to_bytes(16, "big")


def load_through_sql(
    db: BenchDatabase,
    token: str,
    groups: int,
    devices: int,
    fanout: int,
    ordered_uuids: bool = True,
) -> Loaded:
    """The same rows written straight into groupd's schema (for fast set-up only):
    groups and devices with their activations, and the licence's used units.

    Uuids follow the integer keys with ``ordered_uuids``, as groupd's time-ordered
    (version 7) uuids of rows created together do, or are random (version 4, as groupd
    made them before): to measure what the order of the uuid indexes costs a delete."""
    started = time.perf_counter()
    server = start_groupd(db, log_name="load.log")
    try:
        with api(server.base_url, token) as client:
            root, licence, reader, writer = create_fixture(client, devices)
    finally:
        server.stop()
    connection = db.raw_connect()
    sqlite = db.is_sqlite
    param = "?" if sqlite else "%s"
    try:
        cur = connection.cursor()
        db.begin(cur)
        cur.execute(
            f"SELECT id, path, tenant_id FROM groups WHERE uuid = {param}",
            (uuid.UUID(root).bytes if sqlite else uuid.UUID(root),),
        )
        root_id, root_path, tenant_id = cur.fetchone()
        cur.execute("SELECT coalesce(max(id), 0) FROM groups")
        base = int(cur.fetchone()[0]) + 1
        parents = tree_parents(groups, fanout)
        paths: list[str] = []
        uuids = [
            uuid.UUID(int=(1 << 124) + base + i) if ordered_uuids else uuid.uuid4()
            for i in range(groups)
        ]
        rows = []
        for i in range(groups):
            gid = base + i
            parent_id = root_id if parents[i] < 0 else base + parents[i]
            parent_path = root_path if parents[i] < 0 else paths[parents[i]]
            path = f"{parent_path}{gid}/"
            paths.append(path)
            depth = path.count("/") - 2
            rows.append(
                (
                    gid,
                    uuids[i].bytes if sqlite else uuids[i],
                    tenant_id,
                    parent_id,
                    path,
                    depth,
                    f"g{i}",
                )
            )
        now = SQLITE_NOW if sqlite else "CURRENT_TIMESTAMP"
        cur.executemany(
            "INSERT INTO groups (id, uuid, tenant_id, parent_id, path, depth, kind, name, "
            "description, protected, state, version, created_at, updated_at) VALUES "
            f"({', '.join([param] * 6)}, 'static', {param}, '', false, 'live', 1, {now}, {now})",
            rows,
        )
        cur.execute(
            f"SELECT id FROM licences WHERE uuid = {param}",
            (uuid.UUID(licence["id"]).bytes if sqlite else uuid.UUID(licence["id"]),),
        )
        licence_id = int(cur.fetchone()[0])
        cur.execute("SELECT coalesce(max(id), 0) FROM objects")
        obase = int(cur.fetchone()[0]) + 1
        if sqlite:
            # groupd keeps a uuid's 16 bytes on SQLite (migration 0007).
            connection.create_function("bench_uuid", 2, _ordered_uuid_bytes, deterministic=True)
            random_uuid = "randomblob(16)"
            object_uuid = "bench_uuid(2, ? + i)" if ordered_uuids else random_uuid
            activation_uuid = "bench_uuid(3, id)" if ordered_uuids else random_uuid
            cur.execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?) "
                "INSERT INTO objects (id, uuid, tenant_id, kind, name, home_group_id, attributes,"
                f" version, created_at, updated_at) SELECT ? + i, {object_uuid}, ?,"
                f" 'device', 'd' || i, ? + (i % ?), '{{}}', 1, {SQLITE_NOW}, {SQLITE_NOW}"
                " FROM n",
                (devices, obase, *((obase,) if ordered_uuids else ()), tenant_id, base, groups),
            )
            cur.execute(
                "INSERT INTO activations (uuid, tenant_id, licence_id, object_id, object_uuid,"
                f" object_name, units, created_at) SELECT {activation_uuid}, tenant_id,"
                f" ?, id, uuid, name, 1, {SQLITE_NOW} FROM objects WHERE id >= ?"
                " ORDER BY id",
                (licence_id, obase),
            )
        else:
            object_uuid = (
                "('2' || lpad(to_hex(%s + i), 31, '0'))::uuid"
                if ordered_uuids
                else "gen_random_uuid()"
            )
            activation_uuid = (
                "('3' || lpad(to_hex(id), 31, '0'))::uuid" if ordered_uuids else "gen_random_uuid()"
            )
            cur.execute(
                "INSERT INTO objects (id, uuid, tenant_id, kind, name, home_group_id, attributes,"
                f" version, created_at, updated_at) SELECT %s + i, {object_uuid}, %s,"
                " 'device', 'd' || i, %s + (i %% %s), '{}', 1, now(), now()"
                " FROM generate_series(0, %s - 1) AS i",
                (obase, *((obase,) if ordered_uuids else ()), tenant_id, base, groups, devices),
            )
            cur.execute(
                "INSERT INTO activations (uuid, tenant_id, licence_id, object_id, object_uuid,"
                f" object_name, units, created_at) SELECT {activation_uuid}, tenant_id, %s, id,"
                " uuid, name, 1, now() FROM objects WHERE id >= %s ORDER BY id",
                (licence_id, obase),
            )
            for table in ("groups", "objects", "activations"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
        cur.execute(
            f"UPDATE licences SET used_units = used_units + {param} WHERE id = {param}",
            (devices, licence_id),
        )
        db.commit(connection, cur)
    finally:
        connection.close()
    return Loaded(
        token,
        str(uuids[0]),
        reader,
        writer,
        licence["id"],
        groups,
        devices,
        time.perf_counter() - started,
        "sql",
    )


# the floor ---------------------------------------------------------------------------
def build_floor(db: BenchDatabase, groups: int, devices: int, fanout: int) -> None:
    """The minimal schema of the same shape, keyed by sequential integers, with the keys,
    foreign keys and indexes the delete needs, and the same numbers of rows."""
    sqlite = db.is_sqlite
    collate = "" if sqlite else ' COLLATE "C"'
    connection = db.raw_connect()
    try:
        cur = connection.cursor()
        db.begin(cur)
        for statement in (
            "CREATE TABLE floor_licences (id INTEGER PRIMARY KEY, total INTEGER NOT NULL,"
            " used INTEGER NOT NULL, CHECK (used >= 0 AND used <= total))",
            "CREATE TABLE floor_groups (id INTEGER PRIMARY KEY, parent_id INTEGER"
            f" REFERENCES floor_groups (id), path TEXT{collate} NOT NULL, depth INTEGER NOT NULL)",
            "CREATE INDEX floor_groups_path ON floor_groups (path)",
            "CREATE INDEX floor_groups_parent ON floor_groups (parent_id)",
            "CREATE TABLE floor_objects (id INTEGER PRIMARY KEY, group_id INTEGER NOT NULL"
            " REFERENCES floor_groups (id), name TEXT NOT NULL)",
            "CREATE INDEX floor_objects_group ON floor_objects (group_id)",
            "CREATE TABLE floor_activations (id INTEGER PRIMARY KEY, licence_id INTEGER NOT NULL"
            " REFERENCES floor_licences (id), object_id INTEGER NOT NULL"
            " REFERENCES floor_objects (id), units INTEGER NOT NULL)",
            "CREATE INDEX floor_activations_object ON floor_activations (object_id)",
        ):
            cur.execute(statement)
        param = "?" if sqlite else "%s"
        cur.execute(
            f"INSERT INTO floor_licences VALUES (1, {param}, {param})", (devices + 1000, devices)
        )
        # Group 1 is the tenant root; the subtree (groups 2..groups+1) hangs under it.
        parents = tree_parents(groups, fanout)
        rows: list[tuple[int, int | None, str, int]] = [(1, None, "/1/", 0)]
        paths = ["/1/"]
        for i in range(groups):
            gid = i + 2
            parent = 1 if parents[i] < 0 else parents[i] + 2
            path = f"{paths[parent - 1]}{gid}/"
            paths.append(path)
            rows.append((gid, parent, path, path.count("/") - 2))
        cur.executemany(
            f"INSERT INTO floor_groups VALUES ({param}, {param}, {param}, {param})", rows
        )
        if sqlite:
            cur.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO floor_objects SELECT i, 2 + (i % ?), 'd' || i FROM n",
                (devices, groups),
            )
            cur.execute("INSERT INTO floor_activations SELECT id, 1, id, 1 FROM floor_objects")
        else:
            cur.execute(
                "INSERT INTO floor_objects SELECT i, 2 + (i %% %s), 'd' || i"
                " FROM generate_series(1, %s) AS i",
                (groups, devices),
            )
            cur.execute("INSERT INTO floor_activations SELECT id, 1, id, 1 FROM floor_objects")
        db.commit(connection, cur)
    finally:
        connection.close()


def run_floor(db: BenchDatabase) -> dict[str, Any]:
    """One transaction of set-based SQL: release the units, then remove activations,
    devices and groups of the subtree rooted at group 2."""
    sqlite = db.is_sqlite
    low, high = "/1/2/", "/1/20"
    param = "?" if sqlite else "%s"
    in_tree = f"SELECT id FROM floor_groups WHERE path >= {param} AND path < {param}"
    objects = f"SELECT id FROM floor_objects WHERE group_id IN ({in_tree})"
    connection = db.raw_connect()
    try:
        cur = connection.cursor()
        started = time.perf_counter()
        db.begin(cur)
        cur.execute(
            "UPDATE floor_licences SET used = used - coalesce((SELECT sum(a.units)"
            f" FROM floor_activations a WHERE a.licence_id = floor_licences.id"
            f" AND a.object_id IN ({objects})), 0)",
            (low, high),
        )
        cur.execute(f"DELETE FROM floor_activations WHERE object_id IN ({objects})", (low, high))
        activations = cur.rowcount
        cur.execute(f"DELETE FROM floor_objects WHERE group_id IN ({in_tree})", (low, high))
        devices = cur.rowcount
        cur.execute(
            f"DELETE FROM floor_groups WHERE path >= {param} AND path < {param}", (low, high)
        )
        groups = cur.rowcount
        db.commit(connection, cur)
        elapsed = time.perf_counter() - started
        cur.execute("SELECT used FROM floor_licences WHERE id = 1")
        used = cur.fetchone()[0]
    finally:
        connection.close()
    return {
        "seconds": elapsed,
        "groups": groups,
        "devices": devices,
        "activations": activations,
        "used_after": used,
    }


# reader and writer alongside -----------------------------------------------------------
def run_schema_floor(db: BenchDatabase, loaded: Loaded) -> dict[str, Any]:
    """The same work as ``run_floor``, as plain SQL in one transaction, on groupd's own
    schema and rows: a reference, not the floor. Against it, the whole delete's ratio
    shows what groupd's way of deleting costs (chunks, progress, concurrency, the API);
    its own ratio to the floor shows what groupd's schema costs (wider rows, the indexes
    and keys its reads and invariants need)."""
    sqlite = db.is_sqlite
    param = "?" if sqlite else "%s"
    connection = db.raw_connect()
    try:
        cur = connection.cursor()
        key = uuid.UUID(loaded.subtree_root)
        cur.execute(
            f"SELECT tenant_id, path FROM groups WHERE uuid = {param}",
            (key.bytes if sqlite else key,),
        )
        tenant_id, path = cur.fetchone()
        bounds = (tenant_id, path, path[:-1] + "0")
        in_tree = (
            f"SELECT id FROM groups WHERE tenant_id = {param} AND path >= {param}"
            f" AND path < {param}"
        )
        objects = f"SELECT id FROM objects WHERE home_group_id IN ({in_tree})"
        started = time.perf_counter()
        db.begin(cur)
        cur.execute(
            "UPDATE licences SET used_units = used_units - coalesce((SELECT sum(a.units)"
            " FROM activations a WHERE a.licence_id = licences.id"
            f" AND a.object_id IN ({objects})), 0)",
            bounds,
        )
        cur.execute(f"DELETE FROM activations WHERE object_id IN ({objects})", bounds)
        activations = cur.rowcount
        cur.execute(f"DELETE FROM memberships WHERE group_id IN ({in_tree})", bounds)
        cur.execute(f"DELETE FROM objects WHERE home_group_id IN ({in_tree})", bounds)
        devices = cur.rowcount
        cur.execute(
            f"DELETE FROM groups WHERE tenant_id = {param} AND path >= {param} AND path < {param}",
            bounds,
        )
        groups = cur.rowcount
        db.commit(connection, cur)
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    return {"seconds": elapsed, "groups": groups, "devices": devices, "activations": activations}


def side_load(
    role: str,
    base_url: str,
    token: str,
    target: str,
    rate: float,
    max_seconds: float,
    stop: Any,
    ready: Any,
    out: Any,
) -> None:
    """A paced loop in its own process, bounded in count and in time."""
    import httpx

    interval = 1.0 / rate
    max_count = int(rate * max_seconds) + 1
    latencies: list[tuple[float, float]] = []  # (wall-clock start, seconds)
    errors = 0
    deadline = time.monotonic() + max_seconds
    with httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30.0
    ) as client:
        next_at = time.monotonic()
        for n in range(max_count):
            if stop.is_set() or time.monotonic() > deadline:
                break
            started = time.perf_counter()
            started_at = time.time()
            try:
                if role == "reader":
                    response = client.get(f"/api/v1/groups/{target}")
                    ok = response.status_code == 200
                else:
                    response = client.post(
                        "/api/v1/groups",
                        json={"name": f"w-{uuid.uuid4().hex[:12]}-{n}", "parentId": target},
                    )
                    ok = response.status_code == 201
            except httpx.HTTPError:
                ok = False
            latencies.append((started_at, time.perf_counter() - started))
            ready.set()
            errors += 0 if ok else 1
            next_at += interval
            pause = next_at - time.monotonic()
            if pause > 0:
                stop.wait(pause)
            else:
                next_at = time.monotonic()
    out.put((role, latencies, errors))


# one measured configuration ------------------------------------------------------------
@dataclass
class Result:
    database: str
    chunk_groups: int
    chunk_objects: int
    groups: int
    devices: int
    floor_s: float
    schema_floor_s: float
    phase1_s: float
    whole_s: float
    server_s: float
    ratio: float
    rss_growth_mb: float
    rss_base_mb: float
    reader_p50_ms: float
    reader_p99_ms: float
    reader_n: int
    reader_errors: int
    writer_worst_ms: float
    writer_p99_ms: float
    writer_n: int
    writer_errors: int
    baseline_reader_p99_ms: float
    baseline_writer_worst_ms: float
    chunks: int
    units_left: int


def measure(
    template: BenchDatabase,
    loaded: Loaded,
    chunk_groups: int,
    chunk_objects: int,
    args: argparse.Namespace,
) -> Result:
    label = f"run{chunk_groups}x{chunk_objects}"
    reference = clone_database(template, f"{label}schema")
    try:
        schema_floor = run_schema_floor(reference, loaded)
    finally:
        drop_database(reference)
    assert schema_floor["devices"] == loaded.devices, schema_floor
    assert schema_floor["groups"] == loaded.groups, schema_floor
    db = clone_database(template, label)
    try:
        floor = run_floor(db)
        assert floor["groups"] == loaded.groups and floor["devices"] == loaded.devices, floor
        assert floor["used_after"] == 0, floor
        floor["schema_seconds"] = schema_floor["seconds"]
        server = start_groupd(
            db,
            extra_env={
                "GROUPD_DELETE_CHUNK_GROUPS": str(chunk_groups),
                "GROUPD_DELETE_CHUNK_OBJECTS": str(chunk_objects),
                "GROUPD_WORKER_THREADS": str(args.worker_threads),
            },
        )
        try:
            return _measure_groupd(db, server, loaded, floor, chunk_groups, chunk_objects, args)
        finally:
            server.stop()
    finally:
        drop_database(db)


def _measure_groupd(
    db: BenchDatabase,
    server: Any,
    loaded: Loaded,
    floor: dict[str, Any],
    chunk_groups: int,
    chunk_objects: int,
    args: argparse.Namespace,
) -> Result:
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    ready = [ctx.Event(), ctx.Event()]
    out = ctx.Queue()
    loaders = [
        ctx.Process(
            target=side_load,
            args=(
                "reader",
                server.base_url,
                loaded.token,
                loaded.reader_group,
                args.reader_rate,
                args.timeout,
                stop,
                ready[0],
                out,
            ),
        ),
        ctx.Process(
            target=side_load,
            args=(
                "writer",
                server.base_url,
                loaded.token,
                loaded.writer_parent,
                args.writer_rate,
                args.timeout,
                stop,
                ready[1],
                out,
            ),
        ),
    ]
    with api(server.base_url, loaded.token) as client:
        for loader in loaders:
            loader.start()
        # The side loads run alone first: their latencies without a delete are the
        # baseline that shows what the machine itself costs.
        for event in ready:
            event.wait(60)
        time.sleep(args.baseline)
        with RssSampler(server.pid) as rss:
            delete_started_at = time.time()
            started = time.perf_counter()
            response = client.delete(
                f"/api/v1/groups/{loaded.subtree_root}",
                params={"releaseConsumedUnits": "true", "wait": "0"},
            )
            phase1 = time.perf_counter() - started
            body = check(response, 202, 200)
            operation = body["id"]
            deadline = time.monotonic() + args.timeout
            while body["state"] not in ("succeeded", "failed"):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the delete did not end within {args.timeout} s")
                time.sleep(args.poll)
                body = check(client.get(f"/api/v1/operations/{operation}"), 200)
            whole = time.perf_counter() - started
            delete_ended_at = time.time()
        stop.set()
        results = {}
        for _ in loaders:
            role, latencies, errors = out.get(timeout=120)
            results[role] = (latencies, errors)
        for loader in loaders:
            loader.join(30)
        if body["state"] != "succeeded":
            raise RuntimeError(f"the delete failed: {body}")
        licence = check(client.get(f"/api/v1/licenses/{loaded.licence}"), 200)
        gone = client.get(f"/api/v1/groups/{loaded.subtree_root}").status_code
        assert gone == 404, gone
    from datetime import datetime

    server_s = (
        datetime.fromisoformat(body["finishedAt"].replace("Z", "+00:00"))
        - datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00"))
    ).total_seconds()
    deleted = body["result"]["body"]["deleted"]
    assert deleted["groups"] == loaded.groups and deleted["devices"] == loaded.devices, deleted
    reader_all, reader_errors = results["reader"]
    writer_all, writer_errors = results["writer"]

    def split(samples: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
        before = [took for at, took in samples if at + took < delete_started_at]
        during = [
            took for at, took in samples if at + took >= delete_started_at and at <= delete_ended_at
        ]
        return before, during

    reader_before, reader = split(reader_all)
    writer_before, writer = split(writer_all)
    return Result(
        database=db.kind,
        chunk_groups=chunk_groups,
        chunk_objects=chunk_objects,
        groups=loaded.groups,
        devices=loaded.devices,
        floor_s=floor["seconds"],
        schema_floor_s=floor["schema_seconds"],
        phase1_s=phase1,
        whole_s=whole,
        server_s=server_s,
        ratio=whole / floor["seconds"],
        rss_growth_mb=rss.growth / 1e6,
        rss_base_mb=rss.baseline / 1e6,
        reader_p50_ms=percentile(reader, 50) * 1000,
        reader_p99_ms=percentile(reader, 99) * 1000,
        reader_n=len(reader),
        reader_errors=reader_errors,
        writer_worst_ms=max(writer, default=float("nan")) * 1000,
        writer_p99_ms=percentile(writer, 99) * 1000,
        writer_n=len(writer),
        writer_errors=writer_errors,
        baseline_reader_p99_ms=percentile(reader_before, 99) * 1000,
        baseline_writer_worst_ms=max(writer_before, default=float("nan")) * 1000,
        chunks=int(body["progress"].get("chunks", 0)),
        units_left=int(licence["usedUnits"]),
    )


def report(result: Result) -> None:
    r = result
    t = TARGETS
    ok = {
        "phase1": r.phase1_s <= t["phase1_s"],
        "ratio": r.ratio <= t["ratio"],
        "rss": r.rss_growth_mb <= t["rss_mb"],
        "reader": r.reader_p99_ms <= t["reader_p99_ms"],
        "writer": r.writer_worst_ms <= t["writer_worst_ms"],
    }
    print(
        f"[{r.database} chunk={r.chunk_groups} groups/{r.chunk_objects} objects] "
        f"{r.groups} groups, {r.devices} devices+activations, {r.chunks} chunks"
    )
    print(f"  floor (one SQL transaction)   {r.floor_s:8.2f} s")
    print(
        f"  the same SQL on groupd's schema {r.schema_floor_s:6.2f} s   "
        f"({r.schema_floor_s / r.floor_s:.2f} x the floor; a reference, not a target)"
    )
    print(
        f"  (a) phase 1 (202)             {ms(r.phase1_s):>10}   target <= 500 ms "
        f"{'PASS' if ok['phase1'] else 'MISS'}"
    )
    print(f"  (b) whole delete via API      {r.whole_s:8.2f} s   (server-side {r.server_s:.2f} s)")
    print(f"      ratio to the same SQL on groupd's schema {r.whole_s / r.schema_floor_s:.2f} x")
    print(
        f"      ratio to floor            {r.ratio:8.2f} x   target <= 2.0 x "
        f"{'PASS' if ok['ratio'] else 'MISS'}"
    )
    print(
        f"  (d) server RSS growth         {r.rss_growth_mb:8.1f} MB  target <= 100 MB "
        f"{'PASS' if ok['rss'] else 'MISS'}  (from {r.rss_base_mb:.0f} MB)"
    )
    print(
        f"  (e) reader p99 ({r.reader_n} GETs)    {r.reader_p99_ms:8.1f} ms  (p50 "
        f"{r.reader_p50_ms:.1f}) target <= 20 ms {'PASS' if ok['reader'] else 'MISS'}"
        f"{f'  ERRORS {r.reader_errors}' if r.reader_errors else ''}"
    )
    if not r.writer_n or not r.reader_n:
        print("      (the delete ended before a side request did: raise --devices for (e))")
    print(
        f"      writer worst ({r.writer_n} creates) {r.writer_worst_ms:8.1f} ms  (p99 "
        f"{r.writer_p99_ms:.1f}) target <= 100 ms {'PASS' if ok['writer'] else 'MISS'}"
        f"{f'  ERRORS {r.writer_errors}' if r.writer_errors else ''}"
    )
    print(
        f"      the same loads before the delete: reader p99 {r.baseline_reader_p99_ms:.1f} ms,"
        f" writer worst {r.baseline_writer_worst_ms:.1f} ms"
    )
    print(f"  licence used units after      {r.units_left}", flush=True)


def parse_chunks(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        groups, _, objects = item.partition(":")
        out.append((int(groups), int(objects or 20_000)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql"
    )
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=1_000_000)
    parser.add_argument("--fanout", type=int, default=10)
    parser.add_argument(
        "--load",
        choices=("api", "sql"),
        default="api",
        help="build the data through the batch API (default) or bulk SQL",
    )
    parser.add_argument(
        "--uuids",
        choices=("random", "ordered"),
        default="ordered",
        help="with --load sql: uuids in key order (as groupd's time-ordered "
        "version-7 uuids are, since a6d11b3) or random (version 4, as "
        "groupd made them before)",
    )
    parser.add_argument(
        "--chunks",
        default="200:20000",
        help="configurations to measure, groups:objects[,groups:objects]",
    )
    parser.add_argument("--worker-threads", type=int, default=1)
    parser.add_argument("--reader-rate", type=float, default=50.0, help="reader GETs per s")
    parser.add_argument("--writer-rate", type=float, default=5.0, help="writer creates per s")
    parser.add_argument(
        "--baseline",
        type=float,
        default=10.0,
        help="seconds the reader and writer run alone before the delete",
    )
    parser.add_argument("--poll", type=float, default=0.1, help="operation poll interval, s")
    parser.add_argument("--timeout", type=float, default=3600.0, help="one delete's limit, s")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    chunks = parse_chunks(args.chunks)
    info = machine_info(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres" if "postgresql" in args.db else None
    )
    print_machine(info)
    print("command:", " ".join(sys.argv))
    results: list[Result] = []
    for kind in args.db.split(","):
        template = create_database(kind, "deltpl")
        try:
            token = bootstrap(template)
            if args.load == "api":
                loaded = load_through_api(template, token, args.groups, args.devices, args.fanout)
            else:
                loaded = load_through_sql(
                    template,
                    token,
                    args.groups,
                    args.devices,
                    args.fanout,
                    ordered_uuids=args.uuids == "ordered",
                )
            print(
                f"[{kind}] loaded {loaded.groups} groups and {loaded.devices} devices "
                f"through the {loaded.load_mode} ({args.uuids} uuids) in "
                f"{loaded.load_seconds:.1f} s",
                flush=True,
            )
            started = time.perf_counter()
            build_floor(template, args.groups, args.devices, args.fanout)
            vacuum_analyze(template)
            print(
                f"[{kind}] floor schema loaded and analysed in "
                f"{time.perf_counter() - started:.1f} s",
                flush=True,
            )
            for chunk_groups, chunk_objects in chunks:
                result = measure(template, loaded, chunk_groups, chunk_objects, args)
                report(result)
                results.append(result)
        finally:
            drop_database(template)
    print("\nsummary (ratio = whole delete via API / floor in the same database copy)")
    print(
        f"{'db':<11}{'chunk':>12}{'floor s':>9}{'schema s':>9}{'phase1 ms':>10}{'whole s':>9}"
        f"{'ratio':>7}"
        f"{'RSS MB':>8}{'rd p99':>8}{'wr max':>8}"
    )
    for r in results:
        print(
            f"{r.database:<11}{f'{r.chunk_groups}/{r.chunk_objects}':>12}{r.floor_s:>9.2f}"
            f"{r.schema_floor_s:>9.2f}{r.phase1_s * 1000:>10.0f}{r.whole_s:>9.2f}{r.ratio:>7.2f}"
            f"{r.rss_growth_mb:>8.1f}"
            f"{r.reader_p99_ms:>8.1f}{r.writer_worst_ms:>8.1f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": info, "command": sys.argv, "results": [asdict(r) for r in results]},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
