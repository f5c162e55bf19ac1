"""Benchmark (issue 22): SCIM on a tenant of ``--users`` users (100,000 by default).

On each database: the users are loaded through the objects service in batches (a SCIM
create first, which makes the "Provisioned" home group), then three SCIM requests are
timed through the whole app in process (Starlette's ASGI stack, authentication, the unit
of work, rendering; no network), each beside its floor, the same rows read or written
by plain SQL on the driver in one transaction:

1. ``GET /Users?filter=userName eq "…"`` (target: 10 ms): a user picked at random each
   time. Floor: the one row by ``lower(login_name)``.
2. ``GET /Users?startIndex=…&count=100`` (target: 20 ms): the first page, and a page in
   the middle. Two floors, each with the page's rows: the count of every user, and
   (where the schema keeps them, decision 0055) the sum of the kept counts of live homes.
3. ``PATCH /Groups/{id}`` adding 1,000 members (target: 200 ms), answered without the
   member list (``excludedAttributes=members``), then the members removed (not timed).
   Floor: one ``INSERT ... SELECT`` of the memberships.

It prints the median and the 95th percentile of each, and the ratio of the medians.

    .venv/bin/python bench/scim.py --db sqlite --users 100000
    .venv/bin/python bench/scim.py --db postgresql --users 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    SRC,
    BenchDatabase,
    bootstrap,
    create_database,
    drop_database,
    machine_info,
    ms,
    percentile,
    print_machine,
    vacuum_analyze,
    verdict,
)

sys.path.insert(0, str(SRC))

from starlette.testclient import TestClient

from groupd.api.app import create_app
from groupd.clock import system_clock
from groupd.services import objects
from groupd.services.common import system_actor
from groupd.settings import Settings
from groupd.store.db import Database, transaction

TARGETS = {"filter": 0.010, "page": 0.020, "patch": 0.200}
BATCH = 10_000
MEMBERS = 1_000
SCIM_JSON = {"Content-Type": "application/scim+json"}
PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def load(client: TestClient, db: Database, headers: dict[str, str], users: int) -> uuid.UUID:
    """``users`` users in the provisioning home; returns that home's uuid."""
    first = client.post(
        "/scim/v2/Users",
        headers={**headers, **SCIM_JSON},
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "u0"},
    )
    assert first.status_code == 201, first.text
    home = client.get(f"/api/v1/objects/{first.json()['id']}", headers=headers).json()
    home_uuid = uuid.UUID(home["homeGroupId"])
    now = system_clock()
    for start in range(1, users, BATCH):
        specs = [
            objects.ObjectSpec(
                kind="user",
                name=f"User {i}",
                home_group_uuid=home_uuid,
                login_name=f"u{i}",
                status="active",
            )
            for i in range(start, min(start + BATCH, users))
        ]
        with transaction(db) as uow:
            objects.import_objects(uow, actor=system_actor(1), specs=specs, now=now)
    return home_uuid


def timed(work: Callable[[], Any], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return times


def fine(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def report(name: str, groupd: list[float], floor: list[float]) -> None:
    median, floor_median = statistics.median(groupd), statistics.median(floor)
    target = TARGETS[name.split()[0]]
    print(
        f"{name:<28} groupd median {fine(median)} p95 {fine(percentile(groupd, 95))}"
        f" | floor median {fine(floor_median)} p95 {fine(percentile(floor, 95))}"
        f" | ratio {median / floor_median:.1f}x | target {ms(target)}: {verdict(median <= target)}"
    )


def run(kind: str, users: int, runs: int) -> None:
    bench = create_database(kind, "scim")
    try:
        token = bootstrap(bench)
        settings = Settings(database_url=bench.url, rate_limit_enabled=False, worker_enabled=False)
        db = Database.from_settings(settings)
        app = create_app(settings)
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(app) as client:
            began = time.perf_counter()
            load(client, db, headers, users)
            print(f"{kind}: {users} users loaded in {time.perf_counter() - began:.1f} s")
            vacuum_analyze(bench)
            measure(kind, bench, client, headers, users, runs)
        db.dispose()
    finally:
        drop_database(bench)


def measure(
    kind: str,
    bench: BenchDatabase,
    client: TestClient,
    headers: dict[str, str],
    users: int,
    runs: int,
) -> None:
    rng = random.Random(22)
    raw = bench.raw_connect()
    cursor = raw.cursor()
    mark = "?" if bench.is_sqlite else "%s"

    def sql(statement: str, *params: Any) -> list[Any]:
        cursor.execute(statement.replace("?", mark), params)
        rows: list[Any] = cursor.fetchall()
        if not bench.is_sqlite:
            raw.commit()
        return rows

    # What any request costs in process (Starlette, the test client's thread hop), for
    # reading the figures below.
    overhead = statistics.median(timed(lambda: client.get("/healthz"), runs))
    print(f"{'GET /healthz (' + kind + ')':<28} median {fine(overhead)}: the in-process floor")

    # 1. userName eq
    def scim_filter() -> None:
        name = f"u{rng.randrange(users)}"
        answer = client.get(
            "/scim/v2/Users", headers=headers, params={"filter": f'userName eq "{name}"'}
        )
        assert answer.status_code == 200 and answer.json()["totalResults"] == 1, answer.text

    live_user = (
        "FROM objects o WHERE o.tenant_id = 1 AND o.kind = 'user' AND o.home_group_id IN"
        " (SELECT h.id FROM groups h WHERE h.tenant_id = 1 AND h.kind = 'static'"
        " AND h.state = 'live')"
    )

    def floor_filter() -> None:
        name = f"u{rng.randrange(users)}"
        rows = sql(
            "SELECT o.id, o.uuid, o.login_name, o.status, o.external_id, o.display_name,"
            f" o.profile, o.version, o.created_at, o.updated_at {live_user}"
            " AND o.login_name IS NOT NULL AND lower(o.login_name) = ?",
            name,
        )
        assert len(rows) == 1

    report(f"filter userName eq ({kind})", timed(scim_filter, runs), timed(floor_filter, runs))

    # 2. pages of 100. Two floors: the count of every user (what RFC 7644's totalResults
    # costs counted row by row) and the sum of the kept counts of live homes (decision
    # 0055), each with the page's rows.
    kept = bool(
        sql(
            "SELECT count(*) FROM sqlite_master WHERE name = 'user_counts'"
            if bench.is_sqlite
            else "SELECT count(*) FROM pg_tables WHERE tablename = 'user_counts'"
        )[0][0]
    )
    for start in (1, users // 2):

        def scim_page(start: int = start) -> None:
            answer = client.get(
                "/scim/v2/Users", headers=headers, params={"startIndex": start, "count": 100}
            )
            body = answer.json()
            assert len(body["Resources"]) == 100 and body["totalResults"] == users, answer.text

        def page_rows(start: int) -> None:
            rows = sql(
                "SELECT o.id, o.uuid, o.login_name, o.status, o.external_id, o.display_name,"
                f" o.profile, o.version, o.created_at, o.updated_at {live_user}"
                " ORDER BY o.id LIMIT 100 OFFSET ?",
                start - 1,
            )
            assert len(rows) == 100

        def floor_page(start: int = start) -> None:
            assert sql(f"SELECT count(*) {live_user}")[0][0] == users
            page_rows(start)

        def kept_floor_page(start: int = start) -> None:
            total = sql(
                "SELECT sum(c.users) FROM user_counts c JOIN groups g ON g.id = c.home_group_id"
                " WHERE c.tenant_id = 1 AND g.tenant_id = 1 AND g.state = 'live'"
            )[0][0]
            assert total == users
            page_rows(start)

        page_runs = max(runs // 2, 3)
        groupd_times = timed(scim_page, page_runs)
        report(f"page at {start} ({kind})", groupd_times, timed(floor_page, page_runs))
        if kept:
            report(
                f"page at {start}, kept ({kind})",
                groupd_times,
                timed(kept_floor_page, page_runs),
            )

    # 3. PATCH adding 1,000 members
    group = client.post(
        "/scim/v2/Groups",
        headers={**headers, **SCIM_JSON},
        json={"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Big"},
    ).json()
    group_key = sql("SELECT id FROM groups WHERE uuid = ?", _bound(bench, group["id"]))[0][0]
    patch_runs = max(runs // 10, 3)
    groupd_times, floor_times = [], []
    for _ in range(patch_runs):
        picked = rng.sample(range(users), MEMBERS)
        uuids = [
            row[0]
            for row in sql(
                "SELECT uuid FROM objects WHERE tenant_id = 1 AND login_name IN ("
                + ", ".join([mark] * len(picked))
                + ")",
                *[f"u{i}" for i in picked],
            )
        ]
        values = [{"value": str(_as_uuid(u))} for u in uuids]
        body = {
            "schemas": [PATCH_URN],
            "Operations": [{"op": "add", "path": "members", "value": values}],
        }
        began = time.perf_counter()
        answer = client.patch(
            f"/scim/v2/Groups/{group['id']}",
            headers={**headers, **SCIM_JSON},
            params={"excludedAttributes": "members"},
            json=body,
        )
        groupd_times.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.text
        _reset(bench, raw, cursor, group_key)
        began = time.perf_counter()
        bench.begin(cursor)
        cursor.execute(
            "INSERT INTO memberships (group_id, object_id, tenant_id, created_at)"
            f" SELECT {mark}, o.member_key, 1, o.created_at FROM objects o"
            f" WHERE o.uuid IN ({', '.join([mark] * len(uuids))})",
            (group_key, *uuids),
        )
        bench.commit(raw, cursor)
        floor_times.append(time.perf_counter() - began)
        _reset(bench, raw, cursor, group_key)
    report(f"patch +{MEMBERS} members ({kind})", groupd_times, floor_times)
    raw.close()


def _bound(bench: BenchDatabase, value: str) -> Any:
    key = uuid.UUID(value)
    return key.bytes if bench.is_sqlite else key


def _as_uuid(value: Any) -> uuid.UUID:
    return uuid.UUID(bytes=value) if isinstance(value, bytes) else uuid.UUID(str(value))


def _reset(bench: BenchDatabase, raw: Any, cursor: Any, group_key: int) -> None:
    bench.begin(cursor)
    cursor.execute(
        "DELETE FROM memberships WHERE group_id = " + ("?" if bench.is_sqlite else "%s"),
        (group_key,),
    )
    bench.commit(raw, cursor)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    print_machine(machine_info())
    for kind in ("sqlite", "postgresql") if args.db == "both" else (args.db,):
        run(kind, args.users, args.runs)


if __name__ == "__main__":
    main()
