"""Benchmark (issue 21): each console page's server time on a big tenant.

One tenant of 1,000,000 objects (devices, one in ten with a one-unit activation) spread
over ~101,000 groups, one of them ("wide") a parent of 100,000 children, bulk-loaded with
the SQL loader of bench/scale.py. One groupd server process; one client on loopback asks
for each console page ``--rounds`` times, signed in through the console's own form, and
takes the median and the worst. Beside each page, its floor: the native API calls that
read the same data (the services' own cost without templates, sessions and CSRF), so the
console's own share is a ratio that a loaded machine does not blur.

The two aggregates over a whole subtree (its licence use, the delete's impact) are
fragments a page loads after it is shown (decisions 0042, 0043); each is timed on its
own line, beside the same aggregate in plain SQL on the driver (sqlite3 or psycopg, in
this process, on the same database): the raw-SQL floor.

Target (issue 21): every page <= 200 ms; a fragment is reported against its floor.

    .venv/bin/python bench/console.py                        # SQLite, full size
    .venv/bin/python bench/console.py --db postgresql --objects 200000
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BenchDatabase,
    api,
    bootstrap,
    check,
    create_database,
    drop_database,
    machine_info,
    print_machine,
    start_groupd,
    tenant_root,
    vacuum_analyze,
)
from bench.scale import PRODUCT, load

TARGET_SECONDS = 0.200
USERNAME = "console-bench"
PASSWORD = "console bench password"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def create_account(db: BenchDatabase) -> None:
    from groupd.clock import system_clock
    from groupd.services import accounts
    from groupd.settings import Settings
    from groupd.store.db import Database, transaction

    database = Database.from_settings(Settings(database_url=db.url, database_pool_size=1))
    try:
        with transaction(database) as uow:
            tenant = accounts.get_tenant(uow, name="default")
            accounts.create_account(
                uow,
                tenant_id=tenant.id,
                username=USERNAME,
                role="editor",
                password=PASSWORD,
                now=system_clock(),
            )
    finally:
        database.dispose()


def sign_in(client: httpx.Client) -> None:
    token = CSRF.search(client.get("/console/sign-in").text)
    assert token is not None
    answer = client.post(
        "/console/sign-in",
        data={"csrf": token.group(1), "username": USERNAME, "password": PASSWORD},
    )
    assert answer.status_code == 200 and "Sign out" in answer.text, answer.text[:500]


def time_it(call: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Median and worst of ``rounds`` calls, after one warm-up call."""
    call()
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times), max(times)


Row = tuple[str, float, float, float, float]  # name, median, worst, API floor, SQL floor


def run(kind: str, objects: int, wide: int, rounds: int) -> tuple[list[Row], list[Row]]:
    db = create_database(kind, "console")
    try:
        token = bootstrap(db)
        started = time.perf_counter()
        layout = load(db, token, wide + 1_000, objects, wide, 10, 10)
        create_account(db)
        vacuum_analyze(db)
        print(
            f"{kind}: loaded {layout.groups:,} groups, {layout.objects:,} objects, "
            f"{layout.activations:,} activations in {time.perf_counter() - started:.0f} s"
        )
        server = start_groupd(db)
        try:
            return measure(server.base_url, token, layout.wide, rounds, (wide, layout.objects), db)
        finally:
            server.stop()
    finally:
        drop_database(db)


def measure(
    base_url: str, token: str, wide: str, rounds: int, sizes: tuple[int, int], db: BenchDatabase
) -> tuple[list[Row], list[Row]]:
    children, total = (f"{n:,}" for n in sizes)
    rows: list[Row] = []
    nan = float("nan")
    with (
        api(base_url, token) as native,
        httpx.Client(base_url=base_url, timeout=600, follow_redirects=True) as console,
    ):
        sign_in(console)
        root = tenant_root(native)
        licence = next(
            item["id"]
            for item in check(native.get("/api/v1/licenses"), 200)["items"]
            if item["product"] == PRODUCT
        )
        # A cursor deep in the wide parent's children: walk the list 1,000 at a time.
        deep: str | None = None
        for _ in range(50):
            page = check(
                native.get(
                    "/api/v1/groups", params={"parentId": wide, "limit": 1000, "cursor": deep}
                ),
                200,
            )
            deep = page["nextCursor"] or deep
        pages: list[tuple[str, str, list[tuple[str, dict[str, str]]]]] = [
            (
                "tree (All, user and policy groups)",
                "/console/",
                [
                    ("/api/v1/groups", {"parentId": root}),
                    ("/api/v1/groups", {"kind": "user"}),
                    ("/api/v1/groups", {"kind": "policy"}),
                ],
            ),
            (
                f"expand the {children}-child parent",
                f"/console/groups/{wide}/children",
                [
                    ("/api/v1/groups", {"parentId": wide}),
                ],
            ),
            (
                "its children deep in the list",
                f"/console/groups/{wide}/children?cursor={deep}",
                [
                    ("/api/v1/groups", {"parentId": wide, "cursor": deep or ""}),
                ],
            ),
            (
                "search by name",
                "/console/search?q=w04999",
                [
                    ("/api/v1/groups", {"name": "w04999"}),
                ],
            ),
            (
                f"group page of the {children}-child parent",
                f"/console/groups/{wide}",
                [
                    (f"/api/v1/groups/{wide}", {}),
                    ("/api/v1/groups", {"parentId": wide}),
                    (f"/api/v1/groups/{wide}/objects", {}),
                    ("/api/v1/audit", {"target": wide}),
                ],
            ),
            (
                "same, objects of the whole subtree",
                f"/console/groups/{wide}?recursive=true",
                [
                    (f"/api/v1/groups/{wide}", {}),
                    ("/api/v1/groups", {"parentId": wide}),
                    (f"/api/v1/groups/{wide}/objects", {"recursive": "true"}),
                    ("/api/v1/audit", {"target": wide}),
                ],
            ),
            (
                f"group page of All ({total} objects)",
                f"/console/groups/{root}",
                [
                    (f"/api/v1/groups/{root}", {}),
                    ("/api/v1/groups", {"parentId": root}),
                    (f"/api/v1/groups/{root}/objects", {}),
                    ("/api/v1/audit", {"target": root}),
                ],
            ),
            (
                f"delete page of the {children}-child parent",
                f"/console/groups/{wide}/delete",
                [(f"/api/v1/groups/{wide}", {})],
            ),
            ("operations", "/console/operations", []),
            ("audit log", "/console/audit", [("/api/v1/audit", {})]),
            ("licences", "/console/licences", [("/api/v1/licenses", {})]),
            (
                "licence with orphaned activations",
                f"/console/licences/{licence}",
                [
                    (f"/api/v1/licenses/{licence}", {}),
                    (f"/api/v1/licenses/{licence}/activations", {"orphaned": "true"}),
                ],
            ),
        ]
        for name, path, calls in pages:
            check_page(console, path)
            median, worst = time_it(page_call(console, path), rounds)
            floor = time_it(api_calls(native, calls), rounds)[0] if calls else nan
            rows.append((name, median, worst, floor, nan))
        fragments: list[Row] = []
        floors = RawFloors(db, wide)
        try:
            for name, path, api_floor, sql_floor in (
                (
                    f"licence use of the {children}-child parent",
                    f"/console/groups/{wide}/usage",
                    None,
                    floors.licence_use,
                ),
                (
                    f"delete impact of the {children}-child parent",
                    f"/console/groups/{wide}/delete/impact",
                    dry_run_call(native, wide),
                    floors.impact,
                ),
            ):
                check_page(console, path)
                median, worst = time_it(page_call(console, path), rounds)
                floor = time_it(api_floor, rounds)[0] if api_floor else nan
                fragments.append((name, median, worst, floor, time_it(sql_floor, rounds)[0]))
        finally:
            floors.close()
    return rows, fragments


class RawFloors:
    """The whole-subtree aggregates in plain SQL on the driver: what the database alone
    takes to give the same answer, on the connection settings groupd uses."""

    def __init__(self, db: BenchDatabase, wide: str) -> None:
        self.connection = db.raw_connect()
        self.sqlite = db.is_sqlite
        p = "?" if self.sqlite else "%s"
        key: object = uuid.UUID(wide).bytes if self.sqlite else uuid.UUID(wide)
        cursor = self.connection.cursor()
        cursor.execute(f"SELECT tenant_id, path FROM groups WHERE uuid = {p}", (key,))
        tenant_id, path = cursor.fetchone()
        self.range = (tenant_id, path, path[:-1] + "0")
        self.p = p
        if not self.sqlite:
            self.connection.rollback()

    def close(self) -> None:
        self.connection.close()

    def _run(self, *statements: tuple[str, tuple[object, ...]]) -> list[list[tuple[object, ...]]]:
        cursor = self.connection.cursor()
        out = []
        for sql, params in statements:
            cursor.execute(sql, params)
            out.append(cursor.fetchall())
        if not self.sqlite:
            self.connection.rollback()
        return out

    def _subtree(self, extra: str = "") -> str:
        p = self.p
        return (
            f"SELECT id FROM groups WHERE tenant_id = {p} AND path >= {p} AND path < {p}"
            f" AND state = 'live'{extra}"
        )

    def licence_use(self) -> object:
        sql = (
            "SELECT l.uuid, l.product, l.unit_kind, count(*), sum(a.units)"
            " FROM activations a JOIN objects o ON o.id = a.object_id"
            " JOIN licences l ON l.id = a.licence_id"
            f" WHERE o.home_group_id IN ({self._subtree()})"
            " GROUP BY l.uuid, l.product, l.unit_kind ORDER BY l.product"
        )
        return self._run((sql, self.range))

    def impact(self) -> object:
        """Groups by kind (and the guards' flags), objects by kind, memberships (of the
        subtree's groups or its objects, each once), activations per licence."""
        subtree = self._subtree()
        user_groups = self._subtree(" AND kind = 'user'")
        groups = (
            "SELECT kind, count(*), sum(CASE WHEN protected THEN 1 ELSE 0 END),"
            " sum(CASE WHEN linked_entity_type IS NULL THEN 0 ELSE 1 END) FROM groups"
            f" WHERE tenant_id = {self.p} AND path >= {self.p} AND path < {self.p}"
            " AND state = 'live' GROUP BY kind"
        )
        # Kinds by conditional sums, as groupd counts them: a GROUP BY sorts the
        # million rows on SQLite.
        objects = (
            "SELECT sum(CASE WHEN kind = 'device' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN kind = 'user' THEN 1 ELSE 0 END)"
            f" FROM objects WHERE home_group_id IN ({subtree})"
        )
        members = (
            "SELECT count(*) FROM (SELECT group_id, object_id FROM memberships"
            f" WHERE group_id IN ({user_groups})"
            " UNION SELECT m.group_id, m.object_id FROM memberships m"
            " JOIN objects o ON o.id = m.object_id"
            f" WHERE o.kind = 'user' AND o.home_group_id IN ({subtree})) AS k"
        )
        activations = (
            "SELECT a.licence_id, count(*), sum(a.units) FROM activations a"
            " JOIN objects o ON o.id = a.object_id"
            f" WHERE o.home_group_id IN ({subtree}) GROUP BY a.licence_id"
        )
        return self._run(
            (groups, self.range),
            (objects, self.range),
            (members, self.range * 2),
            (activations, self.range),
        )


def page_call(client: httpx.Client, path: str) -> Callable[[], object]:
    return lambda: check_page(client, path)


def api_calls(
    client: httpx.Client, calls: list[tuple[str, dict[str, str]]]
) -> Callable[[], object]:
    return lambda: [check(client.get(path, params=query), 200) for path, query in calls]


def dry_run_call(client: httpx.Client, group: str) -> Callable[[], object]:
    return lambda: check(client.delete(f"/api/v1/groups/{group}", params={"dryRun": "true"}), 200)


def check_page(client: httpx.Client, path: str) -> None:
    answer = client.get(path)
    if answer.status_code != 200:
        raise RuntimeError(f"GET {path} -> {answer.status_code}: {answer.text[:500]}")


def report(kind: str, rows: list[Row], fragments: list[Row]) -> None:
    print(f"\n{kind}: console pages, median and worst of the rounds; floor = the API calls")
    print(f"{'page':45} {'median':>9} {'worst':>9} {'floor':>9} {'ratio':>6}  target")
    for name, median, worst, floor, _ in rows:
        ratio = median / floor if floor == floor and floor > 0 else float("nan")
        verdict = "PASS" if median <= TARGET_SECONDS else "MISS"
        print(
            f"{name:45} {median * 1000:7.1f}ms {worst * 1000:7.1f}ms "
            f"{floor * 1000:7.1f}ms {ratio:6.2f}  {verdict}"
        )
    print(f"\n{kind}: fragments (whole-subtree aggregates, loaded after their page)")
    print(
        f"{'fragment':45} {'median':>9} {'worst':>9} {'API':>9} {'raw SQL':>9} {'/SQL':>6}  target"
    )
    for name, median, worst, floor, sql in fragments:
        verdict = "PASS" if median <= TARGET_SECONDS else "MISS"
        print(
            f"{name:45} {median * 1000:7.1f}ms {worst * 1000:7.1f}ms {floor * 1000:7.1f}ms "
            f"{sql * 1000:7.1f}ms {median / sql:6.2f}  {verdict}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql, or both (comma)")
    parser.add_argument("--objects", type=int, default=1_000_000)
    parser.add_argument("--wide", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    kinds = args.db.split(",")
    print_machine(machine_info())
    for kind in kinds:
        report(kind, *run(kind, args.objects, args.wide, args.rounds))


if __name__ == "__main__":
    main()
