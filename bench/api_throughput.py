"""Benchmark (issues 8 and 24): groupd's API path against the floors of its stack.

On each database it starts ONE groupd server process (uvicorn, the app factory
``groupd.api.app:create_app``, as ``groupd serve`` runs it: JSON access log on, rate
limiter on) and two floors, all pinned to CPU 0, and drives each in turn with ``wrk``
pinned to CPU 1. The floors are bare Starlette + orjson with the same credential check
and the same SQL on the same data, under the same uvicorn:

  floor   ``bench/floor_app.py``: handlers in Starlette's thread pool, as groupd's are
          (every scenario);
  async   ``bench/async_floor_app.py``: ``async def`` handlers, the statements in the
          event loop (SQLite's ``sqlite3``; psycopg's async connections on PostgreSQL):
          the limit of the stack for a read (get and list only).

The scenarios, in fixed-duration runs:

  get     GET  /api/v1/groups/{id}
  list    GET  /api/v1/groups?parentId=...&limit=50   (a page of 50 of 200 children)
  create  POST /api/v1/groups                          (a new child of one parent)
  member  PUT  /api/v1/groups/{id}/members/{userId}    (a new member of a user group)

Each scenario runs ``--rounds`` times per app, the apps of a round one after the other
(their order rotating between rounds), so each round gives a ratio measured side by side;
it prints every run, then per scenario the best run of each app and the range of the
rounds' ratios (groupd / async floor, groupd / thread-pool floor, and groupd's p99 / the
async floor's). Targets: issue 8, get >= 70 % of the thread-pool floor and create >= 50 %;
issue 24, on SQLite, get >= 70 % of the async floor, list >= 60 %, p99 <= 2x its.

    .venv/bin/python bench/api_throughput.py                   # both databases
    .venv/bin/python bench/api_throughput.py --scenarios get,list --rounds 3   # issue 24
    .venv/bin/python bench/api_throughput.py --db sqlite --duration 5 --rounds 1
    .venv/bin/python bench/api_throughput.py --profile         # + py-spy of groupd's hot path
    .venv/bin/python bench/api_throughput.py --server-stack asyncio,h11   # uvicorn's pure-Python

Needs ``wrk`` (``apt-get install -y wrk``); ``--profile`` needs ``py-spy`` (PYSPY=path).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    HOST,
    PYTHON,
    BenchDatabase,
    Server,
    api,
    bootstrap,
    check,
    create_database,
    drop_database,
    free_port,
    machine_info,
    print_machine,
    start_groupd,
    start_server,
    tenant_root,
    vacuum_analyze,
    verdict,
)

SCENARIOS = ("get", "list", "create", "member")
TARGETS = {"get": 0.70, "create": 0.50}  # groupd / thread-pool floor (issue 8)
ASYNC_TARGETS = {"get": 0.70, "list": 0.60}  # groupd / async floor, SQLite (issue 24)
P99_TARGET = 2.0  # groupd's p99 / the async floor's at most (issue 24)
ASYNC_SCENARIOS = ("get", "list")  # what the async floor serves
APPS = ("async", "floor", "groupd")
# groupd as `groupd serve` runs it: the access log on and the rate limiter on, at its
# default limit.
GROUPD_ENV = {"GROUPD_LOG_LEVEL": "info", "GROUPD_RATE_LIMIT_ENABLED": "true"}
# The load's clients, each with its own token: at the rates here each stays under
# groupd's default limit (100 requests per 2 s per credential and address).
CLIENTS = 256
SERVER_CPU = {0}
LOAD_CPU = "1"
LIST_CHILDREN = 200
BACKGROUND_GROUPS = 10_000


@dataclass
class Fixture:
    token: str
    get_target: str
    list_parent: str
    create_parent: str
    member_groups: dict[str, str]  # "<app>-<round>" -> user group uuid
    users: list[str]
    tokens: list[str]  # the clients' API tokens, taken in turn (one rate-limit bucket each)


def build_fixture(db: BenchDatabase, token: str, users: int, rounds: int) -> Fixture:
    """Data through groupd's API: a background tree, a parent with 200 children, users
    and one empty user group per app and round (so every added member is new)."""
    server = start_groupd(db, log_name="setup.log")
    try:
        with api(server.base_url, token) as client:
            root = tenant_root(client)
            background = [
                {"id": str(uuid.uuid4()), "name": f"bg{i}"} for i in range(BACKGROUND_GROUPS)
            ]
            for i, item in enumerate(background):
                item["parentId"] = root if i < 100 else background[i // 100 - 1]["id"]
            for start in range(0, len(background), 10_000):
                check(
                    client.post(
                        "/api/v1/groups:batchCreate",
                        json={"groups": background[start : start + 10_000]},
                    ),
                    201,
                )
            list_parent = check(
                client.post("/api/v1/groups", json={"name": "bench-list", "parentId": root}), 201
            )["id"]
            children = check(
                client.post(
                    "/api/v1/groups:batchCreate",
                    json={
                        "groups": [
                            {"name": f"child{i}", "parentId": list_parent}
                            for i in range(LIST_CHILDREN)
                        ]
                    },
                ),
                201,
            )["items"]
            create_parent = check(
                client.post("/api/v1/groups", json={"name": "bench-create", "parentId": root}), 201
            )["id"]
            home = check(
                client.post("/api/v1/groups", json={"name": "bench-users", "parentId": root}), 201
            )["id"]
            user_ids: list[str] = []
            for start in range(0, users, 10_000):
                batch = [
                    {
                        "kind": "user",
                        "name": f"user {n}",
                        "loginName": f"u{n}@bench",
                        "status": "active",
                        "homeGroupId": home,
                    }
                    for n in range(start, min(users, start + 10_000))
                ]
                items = check(
                    client.post("/api/v1/objects:batchImport", json={"objects": batch}), 201, 200
                )["items"]
                user_ids.extend(item["id"] for item in items)
            tokens = [
                check(client.post("/api/v1/tokens", json={"label": f"client {n}"}), 201)["token"]
                for n in range(CLIENTS)
            ]
            member_groups = {}
            for app in ("groupd", "floor"):
                for round_ in range(rounds + 1):  # +1 for the warm-up runs
                    member_groups[f"{app}-{round_}"] = check(
                        client.post(
                            "/api/v1/groups",
                            json={"name": f"members-{app}-{round_}", "kind": "user"},
                        ),
                        201,
                    )["id"]
    finally:
        server.stop()
    return Fixture(
        token,
        children[LIST_CHILDREN // 2]["id"],
        list_parent,
        create_parent,
        member_groups,
        user_ids,
        tokens,
    )


def lua_script(path: Path, scenario: str, fixture: Fixture, tag: str) -> None:
    """A wrk script: the request of the scenario, and a JSON summary at the end."""
    tokens = ",".join(f'"{t}"' for t in fixture.tokens)
    # Each request carries the next client's token: many clients, each under groupd's
    # default rate limit, as a directory's callers are.
    head = (
        f"local tokens = {{{tokens}}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        '  local headers = {["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1]}\n'
    )
    if scenario == "get":
        call = f'wrk.format("GET", "/api/v1/groups/{fixture.get_target}", headers)'
    elif scenario == "list":
        call = (
            f'wrk.format("GET", "/api/v1/groups?parentId={fixture.list_parent}&limit=50", headers)'
        )
    elif scenario == "create":
        head += (
            '  headers["Content-Type"] = "application/json"\n'
            f'  local body = \'{{"name":"{tag}-\' .. n .. \'","parentId":"\'\n'
            f'    .. "{fixture.create_parent}" .. \'"}}\'\n'
        )
        call = 'wrk.format("POST", "/api/v1/groups", headers, body)'
    else:
        group = fixture.member_groups[tag]
        users = ",".join(f'"{u}"' for u in fixture.users)
        head = f"local users = {{{users}}}\n" + head
        head += "  local user = users[((n - 1) % #users) + 1]\n"
        call = f'wrk.format("PUT", "/api/v1/groups/{group}/members/" .. user, headers)'
    body = f"{head}  return {call}\nend\n"
    done = (
        "done = function(summary, latency, requests)\n"
        "  local e = summary.errors\n"
        '  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,'
        '\\"errors\\":%d,\\"socket_errors\\":%d,\\"p50_us\\":%d,\\"p90_us\\":%d,'
        '\\"p99_us\\":%d,\\"max_us\\":%d}\\n", summary.requests, summary.duration,'
        " e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(50),"
        " latency:percentile(90), latency:percentile(99), latency.max))\n"
        "end\n"
    )
    path.write_text(body + done)


@dataclass
class Run:
    database: str
    app: str
    scenario: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    cpu_us: float  # the server process's CPU time (all threads, user + system) per request
    load: float  # the machine's load average (1 min) at the end of the run


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def drive(server: Server, script: Path, duration: float, connections: int) -> dict[str, Any]:
    seconds = max(1, round(duration))
    argv = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(script),
        server.base_url,
    ]
    output = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 60, check=True
    ).stdout
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"wrk printed no summary:\n{output}")


def uvicorn_argv(factory: str, port: int, stack: tuple[str, str]) -> list[str]:
    """uvicorn as the floors and groupd all run here: the same loop and HTTP parser."""
    loop, http = stack
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "--factory",
        factory,
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        loop,
        "--http",
        http,
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def start_app(app: str, db: BenchDatabase, stack: tuple[str, str]) -> Server:
    port = free_port()
    if app == "groupd":
        # Logging as `groupd serve` sets it up (JSON lines on stderr, the server's log
        # file), then uvicorn's command line as for the floors.
        argv = uvicorn_argv("groupd.api.app:create_app", port, stack)
        argv[1:3] = [
            "-c",
            "from groupd.logs import configure_logging; configure_logging('info');"
            " from uvicorn.main import main; main()",
        ]
        env = {"GROUPD_DATABASE_URL": db.url, **GROUPD_ENV}
    else:
        factory = (
            "bench.async_floor_app:create_app" if app == "async" else "bench.floor_app:create_app"
        )
        argv = uvicorn_argv(factory, port, stack)
        env = {"FLOOR_DATABASE_URL": db.url}
    return start_server(
        argv, env=env, port=port, log_path=db.workdir / f"{app}.log", cpus=SERVER_CPU
    )


def sanity(servers: dict[str, Server], fixture: Fixture) -> None:
    """Every app answers the get and the list alike before anything is measured."""
    for path in (
        f"/api/v1/groups/{fixture.get_target}",
        f"/api/v1/groups?parentId={fixture.list_parent}&limit=50",
    ):
        shapes = {}
        for name, server in servers.items():
            with api(server.base_url, fixture.token) as client:
                shapes[name] = check(client.get(path), 200)
        for name, shape in shapes.items():
            if shape != shapes["groupd"]:
                raise RuntimeError(f"{name} answers {path} differently: {shape}")


def measure_database(kind: str, args: argparse.Namespace, profile_dir: Path | None) -> list[Run]:
    db = create_database(kind, "api")
    runs: list[Run] = []
    try:
        token = bootstrap(db)
        fixture = build_fixture(db, token, args.users, args.rounds)
        vacuum_analyze(db)
        servers = {app: start_app(app, db, args.server_stack) for app in APPS}
        try:
            sanity(servers, fixture)
            scripts = db.workdir / "scripts"
            scripts.mkdir()
            for scenario in args.scenarios:
                apps = [a for a in APPS if a != "async" or scenario in ASYNC_SCENARIOS]
                # Warm-up: one short run each (connection pools, caches, code paths).
                for app in apps:
                    script = scripts / f"{scenario}-{app}-warm.lua"
                    lua_script(script, scenario, fixture, f"{app}-{args.rounds}")
                    drive(servers[app], script, min(2.0, args.duration), args.connections)
                for round_ in range(args.rounds):
                    order = apps[round_ % len(apps) :] + apps[: round_ % len(apps)]
                    for app in order:
                        script = scripts / f"{scenario}-{app}-{round_}.lua"
                        lua_script(script, scenario, fixture, f"{app}-{round_}")
                        cpu_before = cpu_seconds(servers[app].pid)
                        out = drive(servers[app], script, args.duration, args.connections)
                        cpu = cpu_seconds(servers[app].pid) - cpu_before
                        run = Run(
                            kind,
                            app,
                            scenario,
                            round_,
                            rps=out["requests"] / (out["duration_us"] / 1e6),
                            p50_ms=out["p50_us"] / 1000,
                            p99_ms=out["p99_us"] / 1000,
                            errors=out["errors"] + out["socket_errors"],
                            requests=out["requests"],
                            cpu_us=cpu / max(1, out["requests"]) * 1e6,
                            load=os.getloadavg()[0],
                        )
                        runs.append(run)
                        print(
                            f"  [{kind}] {scenario:<6} {app:<6} round {round_}: "
                            f"{run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                            f"p99 {run.p99_ms:6.2f} ms  server CPU {run.cpu_us:5.0f} µs/req  "
                            f"errors {run.errors}  load {run.load:.1f}",
                            flush=True,
                        )
            if profile_dir is not None:
                for app in ("groupd", "async"):
                    profile(kind, app, servers[app], fixture, scripts, profile_dir, args)
        finally:
            for server in servers.values():
                server.stop()
    finally:
        drop_database(db)
    return runs


def profile(
    kind: str,
    app: str,
    server: Server,
    fixture: Fixture,
    scripts: Path,
    out_dir: Path,
    args: argparse.Namespace,
) -> None:
    """py-spy samples one app while wrk drives it; prints the heaviest frames."""
    pyspy = os.environ.get("PYSPY") or shutil.which("py-spy")
    if pyspy is None:
        raise SystemExit("--profile needs py-spy: on PATH, or its path in PYSPY")
    env = {**os.environ, "PYTHONPATH": str(Path(pyspy).parent.parent)}
    for scenario in ASYNC_SCENARIOS:
        raw = out_dir / f"{kind}-{app}-{scenario}.txt"
        spy = subprocess.Popen(
            [
                pyspy,
                "record",
                "-p",
                str(server.pid),
                "-d",
                str(int(args.duration)),
                "-r",
                "250",
                "-f",
                "raw",
                "-o",
                str(raw),
                "--nonblocking",
                "--gil",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        time.sleep(0.5)
        script = scripts / f"{scenario}-{app}-profile.lua"
        lua_script(script, scenario, fixture, f"{app}-profile")
        drive(server, script, args.duration, args.connections)
        spy.wait(60)
        if raw.exists():
            summarise_profile(raw, f"{app} on {kind}, {scenario}")


GENERIC = (
    "threading.py",
    "runpy",
    "click/",
    "uvicorn/main.py",
    "uvicorn/__main__.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "asyncio/base_events.py",
    "anyio/_backends",
)


def summarise_profile(raw: Path, title: str, top: int = 40) -> None:
    """Share of GIL-holding samples per function: inclusive (each function counted once
    per stack) and self; frames of the interpreter's plumbing are left out."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():  # a frame name py-spy could not read
            continue
        count = int(count_text)
        frames = [frame.strip() for frame in stack.split(";")]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        total += count
        for frame in set(_short(f) for f in frames):
            inclusive[frame] += count
        if frames:
            own[_short(frames[-1])] += count
    print(f"\nprofile {title}: {total} samples of the thread holding the GIL (py-spy, 250 Hz)")
    print("  inclusive  self   function")
    shown = [(f, c) for f, c in inclusive.most_common() if not any(g in f for g in GENERIC)]
    for frame, count in shown[:top]:
        print(f"  {100 * count / total:6.1f} % {100 * own[frame] / total:5.1f} %  {frame}")
    print("  top self:")
    for frame, count in own.most_common(15):
        print(f"  {100 * count / total:6.1f} %  {frame}")


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (package/module.py)``."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    for anchor in ("site-packages", "src", "lib"):
        if anchor in parts:
            parts = parts[len(parts) - parts[::-1].index(anchor) :]
            break
    return f"{name} ({'/'.join(parts[-3:])})"


def best(runs: list[Run], database: str, app: str, scenario: str) -> Run | None:
    candidates = [r for r in runs if (r.database, r.app, r.scenario) == (database, app, scenario)]
    return max(candidates, key=lambda r: r.rps) if candidates else None


def round_ratios(
    runs: list[Run], database: str, scenario: str, floor: str
) -> tuple[list[float], list[float], list[float]]:
    """Per round: groupd's req/s over the floor's, groupd's p99 over the floor's, and the
    floor's server CPU per request over groupd's (what the req/s ratio becomes when the
    server has its core to itself: the figure least disturbed by a loaded machine)."""
    rates: list[float] = []
    tails: list[float] = []
    cpus: list[float] = []
    by_round: dict[int, dict[str, Run]] = {}
    for r in runs:
        if (r.database, r.scenario) == (database, scenario):
            by_round.setdefault(r.round, {})[r.app] = r
    for apps in by_round.values():
        if "groupd" in apps and floor in apps:
            rates.append(apps["groupd"].rps / apps[floor].rps)
            tails.append(apps["groupd"].p99_ms / apps[floor].p99_ms)
            cpus.append(apps[floor].cpu_us / apps["groupd"].cpu_us)
    return rates, tails, cpus


def span(values: list[float], fmt: str = "{:.0%}") -> str:
    if not values:
        return "-"
    low, high = min(values), max(values)
    return fmt.format(low) if low == high else f"{fmt.format(low)}..{fmt.format(high)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3, help="runs per app and scenario")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument(
        "--users", type=int, default=40_000, help="users to add as members (each run adds new ones)"
    )
    parser.add_argument(
        "--server-stack",
        default="auto,auto",
        help="uvicorn's --loop and --http for every server: auto,auto (uvloop and httptools,"
        " which groupd ships) or asyncio,h11 (the pure-Python stack)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy groupd and the async floor")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    args.scenarios = args.scenarios.split(",")
    loop, _, http = args.server_stack.partition(",")
    args.server_stack = (loop, http or "auto")
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install -y wrk")
    info = machine_info(
        "postgresql+psycopg://postgres@127.0.0.1:5432/postgres" if "postgresql" in args.db else None
    )
    info["server_cpus"] = sorted(SERVER_CPU)
    info["load_cpu"] = LOAD_CPU
    info["server_stack"] = server_stack(args.server_stack)
    print_machine(info)
    print("command:", " ".join(sys.argv))
    profile_dir = Path("/tmp") / f"groupd-profile-{os.getpid()}" if args.profile else None
    if profile_dir:
        profile_dir.mkdir(exist_ok=True)
    runs: list[Run] = []
    for kind in args.db.split(","):
        runs.extend(measure_database(kind, args, profile_dir))
    print(
        "\nbest run of each app (req/s, p99 ms, server CPU µs per request); then the range"
        " over the rounds of groupd / floor (req/s) and of groupd's p99 / the async floor's"
    )
    print(
        f"{'db':<11}{'scenario':<9}{'async':>7}{'p99':>7}{'cpu':>6}{'floor':>7}{'p99':>7}"
        f"{'cpu':>6}{'groupd':>8}{'p99':>7}{'cpu':>6}  {'/ async':<10}{'/ floor':<10}"
        f"{'p99 / async':<12} targets"
    )
    summary = []
    for kind in args.db.split(","):
        for scenario in args.scenarios:
            ours = best(runs, kind, "groupd", scenario)
            assert ours is not None
            cells = []
            for app in ("async", "floor", "groupd"):
                run = best(runs, kind, app, scenario)
                cells.append(
                    f"{run.rps:>7.0f}{run.p99_ms:>7.1f}{run.cpu_us:>6.0f}"
                    if run is not None
                    else f"{'-':>7}{'-':>7}{'-':>6}"
                )
            to_async, tail, cpu_async = round_ratios(runs, kind, scenario, "async")
            to_floor, _, cpu_floor = round_ratios(runs, kind, scenario, "floor")
            marks = []
            if kind == "sqlite" and scenario in ASYNC_TARGETS and to_async:
                goal = ASYNC_TARGETS[scenario]
                marks.append(
                    f"/async >= {goal:.0%} {verdict(min(to_async) >= goal)}"
                    f", p99 <= {P99_TARGET:g}x {verdict(max(tail) <= P99_TARGET)}"
                )
            if scenario in TARGETS and to_floor:
                goal = TARGETS[scenario]
                marks.append(f"/floor >= {goal:.0%} {verdict(min(to_floor) >= goal)}")
            print(
                f"{kind:<11}{scenario:<9}{''.join(cells)}  {span(to_async):<12}"
                f"{span(to_floor):<12}{span(tail, '{:.2f}x'):<12} {'; '.join(marks)}"
            )
            print(
                f"{'':<20}by CPU per request: / async {span(cpu_async)}, / floor {span(cpu_floor)}"
            )
            summary.append(
                {
                    "database": kind,
                    "scenario": scenario,
                    "best": {
                        app: asdict(run)
                        for app in APPS
                        if (run := best(runs, kind, app, scenario)) is not None
                    },
                    "groupd_over_async": to_async,
                    "groupd_over_floor": to_floor,
                    "p99_over_async": tail,
                    "cpu_async_over_groupd": cpu_async,
                    "cpu_floor_over_groupd": cpu_floor,
                }
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "command": sys.argv,
                    "summary": summary,
                    "runs": [asdict(r) for r in runs],
                },
                indent=2,
            )
        )


def server_stack(stack: tuple[str, str]) -> str:
    """What uvicorn's ``auto`` picks here: uvloop and httptools when installed."""
    loop, http = stack
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"{loop} + {http}"


if __name__ == "__main__":
    main()
