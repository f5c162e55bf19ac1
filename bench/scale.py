"""Benchmark (issue 8, item 3): one big tenant, measured through the HTTP API.

One tenant with 1,000,000 groups (depth up to 100) and 5,000,000 objects on PostgreSQL
(1,000,000 / 2,000,000 on SQLite), times ``--scale``. The rows are bulk-loaded with SQL
straight into groupd's schema (the API would take hours to build this): every group and
object is a row exactly as groupd writes it (uuid, path, depth, kind, timestamps), one
object in ten carries a one-unit activation of one licence, and the licence's used units
match. The tree under the tenant's root "All":

  wide     a group with 100,000 children (the sibling list; also the 100k-group dry run)
  move     a 10-way subtree of 10,000 groups, and a group "target" to move it under
  chains   the rest: chains 99 groups deep (depth 1..99), so paths up to 100 ids long
  objects  spread round-robin over every group

Measured through one groupd server process (uvicorn), sequentially from one client:
  get p99           GET /api/v1/groups/{id} of random groups (all depths)
  pages             GET /api/v1/groups?parentId=wide&limit=50 at the first page, at a middle
                    and at a deep cursor (cursors found by walking the list, limit 1000)
  move              POST /api/v1/groups/{move}/move, 10,000 groups (there and back)
  dry run           DELETE /api/v1/groups/{wide}?dryRun=true, 100,001 groups
Targets (issue 8, PostgreSQL at full size): get p99 <= 10 ms; any page <= 20 ms;
the move <= 1 s; the dry run <= 2 s.

    .venv/bin/python bench/scale.py --db postgresql            # full size
    .venv/bin/python bench/scale.py --db sqlite,postgresql --scale 0.1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SQLITE_NOW,
    BenchDatabase,
    api,
    bootstrap,
    check,
    create_database,
    drop_database,
    machine_info,
    percentile,
    print_machine,
    start_groupd,
    tenant_root,
    vacuum_analyze,
)

FULL_GROUPS = 1_000_000
FULL_OBJECTS = {"postgresql": 5_000_000, "sqlite": 2_000_000}
WIDE = 100_000
MOVE = 10_000
CHAIN = 99
PRODUCT = "scale-seat"


class Layout:
    """Ids and uuids of the named parts, filled in by the loader."""

    def __init__(self) -> None:
        self.wide = ""
        self.move = ""
        self.target = ""
        self.sample: list[str] = []  # uuids of random groups to GET
        self.groups = 0
        self.objects = 0
        self.activations = 0
        self.max_depth = 0


def load(
    db: BenchDatabase, token: str, groups: int, objects: int, wide: int, move: int, sample_size: int
) -> Layout:
    """Bulk SQL into groupd's schema (see the module docstring)."""
    server = start_groupd(db, log_name="setup.log")
    try:
        with api(server.base_url, token) as client:
            root_uuid = tenant_root(client)
            check(
                client.post(
                    "/api/v1/licenses",
                    json={"product": PRODUCT, "unitKind": "seat", "totalUnits": objects},
                ),
                201,
            )
    finally:
        server.stop()
    sqlite = db.is_sqlite
    p = "?" if sqlite else "%s"

    def key(value: uuid.UUID) -> Any:
        return value.bytes if sqlite else value

    connection = db.raw_connect()
    layout = Layout()
    try:
        cur = connection.cursor()
        if sqlite:
            cur.execute("BEGIN IMMEDIATE")
        cur.execute(
            f"SELECT id, path, tenant_id FROM groups WHERE uuid = {p}", (key(uuid.UUID(root_uuid)),)
        )
        root_id, root_path, tenant_id = cur.fetchone()
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM groups")
        next_id = int(cur.fetchone()[0])
        rows: list[tuple[Any, ...]] = []
        rng = random.Random(42)

        def add(parent_id: int, parent_path: str, depth: int, name: str) -> tuple[int, str]:
            nonlocal next_id
            gid = next_id
            next_id += 1
            path = f"{parent_path}{gid}/"
            group_uuid = uuid.UUID(int=rng.getrandbits(128), version=4)
            rows.append((gid, key(group_uuid), tenant_id, parent_id, path, depth, name))
            layout.max_depth = max(layout.max_depth, depth)
            return gid, path

        wide_id, wide_path = add(root_id, root_path, 1, "wide")
        layout.wide = str(uuid.UUID(bytes=rows[-1][1]) if sqlite else rows[-1][1])
        for i in range(wide):
            add(wide_id, wide_path, 2, f"w{i:06d}")
        target_id, _ = add(root_id, root_path, 1, "target")
        layout.target = str(uuid.UUID(bytes=rows[-1][1]) if sqlite else rows[-1][1])
        move_nodes = [add(root_id, root_path, 1, "move")]
        layout.move = str(uuid.UUID(bytes=rows[-1][1]) if sqlite else rows[-1][1])
        for i in range(1, move):
            parent_id, parent_path = move_nodes[(i - 1) // 10]
            move_nodes.append(add(parent_id, parent_path, parent_path.count("/") - 1, f"m{i}"))
        chain = 0
        while len(rows) < groups:
            parent_id, parent_path = root_id, root_path
            for depth in range(1, CHAIN + 1):
                if len(rows) >= groups:
                    break
                parent_id, parent_path = add(parent_id, parent_path, depth, f"c{chain}.{depth}")
            chain += 1
        layout.groups = len(rows)
        first_id = rows[0][0]
        picks = rng.sample(range(len(rows)), min(sample_size, len(rows)))
        layout.sample = [str(uuid.UUID(bytes=rows[i][1]) if sqlite else rows[i][1]) for i in picks]
        now = SQLITE_NOW if sqlite else "CURRENT_TIMESTAMP"
        insert = (
            "INSERT INTO groups (id, uuid, tenant_id, parent_id, path, depth, kind, name,"
            " description, protected, state, version, created_at, updated_at) VALUES"
            f" ({p}, {p}, {p}, {p}, {p}, {p}, 'static', {p}, '', false, 'live', 1,"
            f" {now}, {now})"
        )
        if sqlite:
            cur.executemany(insert, rows)
        else:
            with cur.copy(
                "COPY groups (id, uuid, tenant_id, parent_id, path, depth, kind, name,"
                " description, protected, state, version, created_at, updated_at)"
                " FROM STDIN"
            ) as copy:
                for row in rows:
                    copy.write_row((*row[:6], "static", row[6], "", False, "live", 1, "now", "now"))
        rows.clear()
        cur.execute(f"SELECT id FROM licences WHERE product = {p}", (PRODUCT,))
        licence_id = int(cur.fetchone()[0])
        cur.execute("SELECT coalesce(max(id), 0) + 1 FROM objects")
        first_object = int(cur.fetchone()[0])
        count = layout.groups
        if sqlite:
            cur.execute(
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)"
                " INSERT INTO objects (id, uuid, tenant_id, kind, name, home_group_id, attributes,"
                " version, created_at, updated_at) SELECT ? + i, randomblob(16), ?,"
                f" 'device', 'd' || i, ? + (i % ?), '{{}}', 1, {SQLITE_NOW}, {SQLITE_NOW}"
                " FROM n",
                (objects, first_object, tenant_id, first_id, count),
            )
            cur.execute(
                "INSERT INTO activations (uuid, tenant_id, licence_id, object_id, object_uuid,"
                " object_name, units, created_at) SELECT randomblob(16), tenant_id,"
                f" ?, id, uuid, name, 1, {SQLITE_NOW} FROM objects"
                " WHERE id >= ? AND id % 10 = 0 ORDER BY id",
                (licence_id, first_object),
            )
        else:
            cur.execute(
                "INSERT INTO objects (id, uuid, tenant_id, kind, name, home_group_id, attributes,"
                " version, created_at, updated_at) SELECT %s + i, gen_random_uuid(), %s,"
                " 'device', 'd' || i, %s + (i %% %s), '{}', 1, now(), now()"
                " FROM generate_series(0, %s - 1) AS i",
                (first_object, tenant_id, first_id, count, objects),
            )
            cur.execute(
                "INSERT INTO activations (uuid, tenant_id, licence_id, object_id, object_uuid,"
                " object_name, units, created_at) SELECT gen_random_uuid(), tenant_id, %s, id,"
                " uuid, name, 1, now() FROM objects WHERE id >= %s AND id %% 10 = 0 ORDER BY id",
                (licence_id, first_object),
            )
            for table in ("groups", "objects", "activations"):
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                    f" (SELECT max(id) FROM {table}))"
                )
        cur.execute("SELECT count(*) FROM activations")
        layout.activations = int(cur.fetchone()[0])
        cur.execute(
            f"UPDATE licences SET used_units = {p} WHERE id = {p}", (layout.activations, licence_id)
        )
        layout.objects = objects
        if sqlite:
            cur.execute("COMMIT")
        else:
            connection.commit()
    finally:
        connection.close()
    return layout


def timed_call(
    client: Any, method: str, url: str, expected: int, **kwargs: Any
) -> tuple[float, Any]:
    started = time.perf_counter()
    response = client.request(method, url, **kwargs)
    elapsed = time.perf_counter() - started
    return elapsed, check(response, expected)


def measure(
    db: BenchDatabase, token: str, layout: Layout, args: argparse.Namespace
) -> dict[str, Any]:
    server = start_groupd(db)
    out: dict[str, Any] = {}
    try:
        with api(server.base_url, token) as client:
            # get: random groups at every depth
            for group in layout.sample[:50]:  # warm-up
                client.get(f"/api/v1/groups/{group}")
            gets = [timed_call(client, "GET", f"/api/v1/groups/{g}", 200)[0] for g in layout.sample]
            out["get_n"] = len(gets)
            out["get_p50_ms"] = percentile(gets, 50) * 1000
            out["get_p99_ms"] = percentile(gets, 99) * 1000
            out["get_max_ms"] = max(gets) * 1000
            # walk the 100k-sibling list to find cursors (and time the 1000-item pages)
            cursors: list[str | None] = [None]
            walk: list[float] = []
            cursor: str | None = None
            for _ in range(args.wide // 1000 + 2):
                params = {"parentId": layout.wide, "limit": "1000"}
                if cursor:
                    params["cursor"] = cursor
                elapsed, body = timed_call(client, "GET", "/api/v1/groups", 200, params=params)
                walk.append(elapsed)
                cursor = body["nextCursor"]
                if not cursor:
                    break
                cursors.append(cursor)
            out["walk_pages_1000"] = len(walk)
            out["walk_page_1000_max_ms"] = max(walk) * 1000
            out["walk_page_1000_p50_ms"] = percentile(walk, 50) * 1000
            positions = {
                "first": cursors[0],
                "middle": cursors[len(cursors) // 2],
                "deep": cursors[-1],
            }
            for label, at in positions.items():
                params = {"parentId": layout.wide, "limit": "50"}
                if at:
                    params["cursor"] = at
                times = [
                    timed_call(client, "GET", "/api/v1/groups", 200, params=params)[0]
                    for _ in range(args.page_repeats)
                ]
                out[f"page_{label}_p50_ms"] = percentile(times, 50) * 1000
                out[f"page_{label}_max_ms"] = max(times) * 1000
            # move the 10k-group subtree there and back
            moves = []
            home = tenant_root(client)
            for parent in (layout.target, home, layout.target, home):
                elapsed, _ = timed_call(
                    client,
                    "POST",
                    f"/api/v1/groups/{layout.move}/move",
                    200,
                    json={"parentId": parent},
                )
                moves.append(elapsed)
            out["move_s"] = moves
            out["move_median_s"] = statistics.median(moves)
            # the 100k-group dry run
            dry = []
            for _ in range(args.dry_repeats):
                elapsed, body = timed_call(
                    client,
                    "DELETE",
                    f"/api/v1/groups/{layout.wide}",
                    200,
                    params={"dryRun": "true"},
                )
                dry.append(elapsed)
            impact = body["impact"]
            out["dry_run_s"] = dry
            out["dry_run_median_s"] = statistics.median(dry)
            out["dry_run_groups"] = impact["groups"]["total"]
            out["dry_run_devices"] = impact["objects"]["devices"]
            out["dry_run_activations"] = impact["activations"]
    finally:
        server.stop()
    return out


def report(kind: str, layout: Layout, out: dict[str, Any], full: bool, move: int) -> None:
    def mark(ok: bool) -> str:
        return (
            ("PASS" if ok else "MISS")
            if full and kind == "postgresql"
            else ("ok" if ok else "over")
        )

    pages = max(out[f"page_{x}_max_ms"] for x in ("first", "middle", "deep"))
    print(
        f"\n[{kind}] {layout.groups} groups (max depth {layout.max_depth}), "
        f"{layout.objects} objects, {layout.activations} activations"
    )
    print(
        f"  get ({out['get_n']} random groups)  p50 {out['get_p50_ms']:.2f} ms  "
        f"p99 {out['get_p99_ms']:.2f} ms  max {out['get_max_ms']:.2f} ms   "
        f"target p99 <= 10 ms {mark(out['get_p99_ms'] <= 10)}"
    )
    for label in ("first", "middle", "deep"):
        print(
            f"  page of 50, {label:<6} cursor    p50 {out[f'page_{label}_p50_ms']:.2f} ms  "
            f"max {out[f'page_{label}_max_ms']:.2f} ms"
        )
    print(f"  any page of 50 (max)            {pages:.2f} ms   target <= 20 ms {mark(pages <= 20)}")
    print(
        f"  walking the list, {out['walk_pages_1000']} pages of 1000: "
        f"p50 {out['walk_page_1000_p50_ms']:.1f} ms, max {out['walk_page_1000_max_ms']:.1f} ms"
    )
    print(
        f"  move {move}-group subtree          median {out['move_median_s']:.3f} s  "
        f"(runs {', '.join(f'{m:.3f}' for m in out['move_s'])})   target <= 1 s "
        f"{mark(out['move_median_s'] <= 1)}"
    )
    print(
        f"  dry run of {out['dry_run_groups']} groups, {out['dry_run_devices']} devices, "
        f"{out['dry_run_activations']} activations: median {out['dry_run_median_s']:.3f} s "
        f"(runs {', '.join(f'{d:.3f}' for d in out['dry_run_s'])})   target <= 2 s "
        f"{mark(out['dry_run_median_s'] <= 2)}",
        flush=True,
    )


def keep(path: Path, db: BenchDatabase, token: str, layout: Layout, wide: int, move: int) -> None:
    """Write what a later ``--reuse`` run needs; the database is left in place."""
    path.write_text(
        json.dumps(
            {
                "database": {
                    "kind": db.kind,
                    "url": db.url,
                    "name": db.name,
                    "workdir": str(db.workdir),
                },
                "token": token,
                "layout": vars(layout),
                "wide": wide,
                "move": move,
            }
        )
    )
    print(f"kept {db.name}; drop it when done (reuse with --reuse {path})", flush=True)


def restore(path: Path) -> tuple[BenchDatabase, str, Layout, int, int]:
    saved = json.loads(path.read_text())
    source = saved["database"]
    db = BenchDatabase(source["kind"], source["url"], source["name"], Path(source["workdir"]))
    layout = Layout()
    for name, value in saved["layout"].items():
        setattr(layout, name, value)
    return db, saved["token"], layout, int(saved["wide"]), int(saved["move"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="fraction of the full size (groups, objects, sibling list)",
    )
    parser.add_argument("--gets", type=int, default=2000, help="random GETs for the p99")
    parser.add_argument("--page-repeats", type=int, default=50)
    parser.add_argument("--dry-repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the loaded database (one --db only) and write how to reach it to this file",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        help="measure a database kept by an earlier --keep run instead of loading one",
    )
    args = parser.parse_args()
    if (args.keep or args.reuse) and "," in args.db:
        parser.error("--keep and --reuse take one --db")
    full = args.scale >= 1.0
    args.wide = max(1000, int(WIDE * min(1.0, args.scale)))
    move = max(100, int(MOVE * min(1.0, args.scale)))
    info = machine_info(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres" if "postgresql" in args.db else None
    )
    print_machine(info)
    print("command:", " ".join(sys.argv))
    results = {}
    for kind in args.db.split(","):
        groups = int(FULL_GROUPS * args.scale)
        objects = int(FULL_OBJECTS[kind] * args.scale)
        if args.reuse:
            db, token, layout, args.wide, move = restore(args.reuse)
            print(f"[{kind}] reusing {db.name} ({layout.groups} groups)", flush=True)
        else:
            db = create_database(kind, "scale")
        try:
            if not args.reuse:
                token = bootstrap(db)
                started = time.perf_counter()
                layout = load(db, token, groups, objects, args.wide, move, args.gets)
                loaded = time.perf_counter() - started
                started = time.perf_counter()
                vacuum_analyze(db)
                print(
                    f"[{kind}] bulk-loaded {layout.groups} groups and {layout.objects} objects "
                    f"by SQL in {loaded:.0f} s; analysed in {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
                if args.keep:
                    keep(args.keep, db, token, layout, args.wide, move)
            out = measure(db, token, layout, args)
            report(kind, layout, out, full, move)
            results[kind] = {
                "groups": layout.groups,
                "objects": layout.objects,
                "activations": layout.activations,
                "max_depth": layout.max_depth,
                **out,
            }
        finally:
            if not (args.keep or args.reuse):
                drop_database(db)
    if args.json:
        args.json.write_text(
            json.dumps({"machine": info, "command": sys.argv, "results": results}, indent=2)
        )


if __name__ == "__main__":
    main()
