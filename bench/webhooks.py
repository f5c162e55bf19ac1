"""Benchmark (issue 23): webhook deliveries, their cost to the API, and a subtree delete's
events.

1. **Deliveries per second** from one process (groupd's ``Dispatcher``, its threads) to a
   fast local receiver (a bare asyncio protocol, in its own process): ``--events``
   outbox events for each of ``--subscriptions`` subscriptions, from the relay's first
   round until the receiver holds them all. Side by side, the floor: the same number of
   POSTs of the same size from as many threads, each over one kept-alive ``http.client``
   connection (the client groupd's sender uses), with no database and no signing.
   Target: at least 1,000 deliveries/s.
2. **The API's create throughput** with a subscription delivering every event against
   none: one ``groupd`` server pinned to core 0, with the delivery process it starts
   (moved to core 1, beside ``wrk`` and the receiver), ``wrk`` creating groups for
   ``--seconds`` each, the two cases back to back in each of ``--rounds`` rounds; the
   figure is the median of the rounds' slowdowns. Then the same with the server's own
   delivery threads (``--delivery``). Target: at most 10 % slower.
3. **A subtree delete's events** for each of ``--devices`` (10 groups, that many devices
   with an activation each, loaded by bulk SQL): the events and deliveries that the
   delete writes. Target: the same number whatever the devices.

    .venv/bin/python bench/webhooks.py --db sqlite
    .venv/bin/python bench/webhooks.py --db postgresql --devices 10000,100000
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    HOST,
    PYTHON,
    SRC,
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
    verdict,
)

TARGET_DELIVERIES_PER_S = 1000.0
TARGET_SLOWDOWN = 0.10
LOAD_CPU = "1"
SERVER_CPUS = {0}


# the receiver --------------------------------------------------------------------------
# A subscriber that costs the machine as little as it can: it shares the load generator's
# core, and what it spends there is taken from the requests it is meant to measure. An
# asyncio protocol reads each request's head, skips ``Content-Length`` bytes of body and
# answers 204; ``GET /count`` says how many POSTs it has had. It speaks just enough HTTP/1.1
# for groupd's sender and for the floor (kept-alive, no chunked bodies).
class _Receiver(asyncio.Protocol):
    received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length :]
            if head.startswith("POST "):
                _Receiver.received += 1
                self.transport.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            else:
                body = str(_Receiver.received).encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )


def serve_receiver(port: int) -> None:
    """The receiver's process: ``python -m bench.webhooks --receiver PORT``."""

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_Receiver, HOST, port)
        await server.serve_forever()

    asyncio.run(run())


def start_receiver(workdir: Path) -> Server:
    port = free_port()
    argv = [PYTHON, "-m", "bench.webhooks", "--receiver", str(port)]
    # On the load generator's core: the server's core stays the server's.
    return start_server(
        argv,
        env={},
        port=port,
        log_path=workdir / "receiver.log",
        health_path="/count",
        cpus={int(LOAD_CPU)},
    )


def received(server: Server) -> int:
    return int(httpx.get(f"{server.base_url}/count", timeout=5).text)


def wait_received(server: Server, count: int, timeout: float = 600.0) -> float:
    began = time.perf_counter()
    while received(server) < count:
        if time.perf_counter() - began > timeout:
            raise RuntimeError(f"only {received(server)} of {count} received")
        time.sleep(0.02)
    return time.perf_counter() - began


# 1. deliveries per second ----------------------------------------------------------------
def measure_deliveries(db: BenchDatabase, events: int, subscriptions: int) -> dict[str, Any]:
    from groupd.clock import system_clock
    from groupd.delivery.dispatcher import Dispatcher
    from groupd.services.common import system_actor
    from groupd.services.webhooks import addresses, outbox
    from groupd.services.webhooks import subscriptions as subs
    from groupd.settings import Settings
    from groupd.store.db import Database, transaction

    receiver = start_receiver(db.workdir)
    settings = Settings(
        database_url=db.url,
        webhook_allowed_networks="127.0.0.0/8",
        webhook_delivery_threads=subscriptions,
    )
    database = Database.from_settings(settings)
    try:
        now = system_clock()
        with transaction(database) as uow:
            actor = system_actor(1)
            policy = subs.Policy(networks=addresses.parse_networks("127.0.0.0/8"))
            for _ in range(subscriptions):
                subs.create_subscription(
                    uow,
                    actor=actor,
                    url=f"{receiver.base_url}/hook",
                    events=["*"],
                    policy=policy,
                    now=now,
                )
            data = {"actor": "bench", "requestId": "bench", "target": {"id": str(uuid.uuid4())}}
            for _ in range(events):
                outbox.emit(uow, tenant_id=1, event_type="group.updated", data=data, now=now)
        total = events * subscriptions
        dispatcher = Dispatcher(database, settings)
        busy_before = machine_busy_seconds()
        began = time.perf_counter()
        dispatcher.start()
        try:
            wait_received(receiver, total)
            seconds = time.perf_counter() - began
            busy = machine_busy_seconds() - busy_before
        finally:
            dispatcher.stop()
            dispatcher.close()
        floor_seconds = post_floor(receiver, events, subscriptions, total)
    finally:
        database.dispose()
        receiver.stop()
    return {
        "deliveries": total,
        "seconds": round(seconds, 3),
        "per_s": round(total / seconds),
        "floor_per_s": round(total / floor_seconds),
        "ratio": round(seconds / floor_seconds, 2),
        # Everything the machine did meanwhile (this process, the database, the receiver)
        # per delivery: what delivering takes from whatever else runs on the machine.
        "machine_cpu_us_per_delivery": round(busy / total * 1e6),
    }


def machine_busy_seconds() -> float:
    """The machine's CPU time spent on anything but idling, since boot (/proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def post_floor(receiver: Server, events: int, threads: int, already: int) -> float:
    """The same POSTs from bare ``http.client`` connections, one per thread: no
    database, no signing."""
    body = json.dumps(
        {"type": "group.updated", "timestamp": "2026-12-07T00:00:00Z", "data": {"x": "y" * 80}}
    ).encode()
    address = urlsplit(receiver.base_url)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}

    def post_all() -> None:
        # The client groupd's sender uses (decision 0079), one kept-alive connection each.
        connection = http.client.HTTPConnection(address.hostname or HOST, address.port)
        try:
            for _ in range(events):
                connection.request("POST", "/hook", body=body, headers=headers)
                connection.getresponse().read()
        finally:
            connection.close()

    workers = [threading.Thread(target=post_all) for _ in range(threads)]
    began = time.perf_counter()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    seconds = time.perf_counter() - began
    assert received(receiver) == already + events * threads
    return seconds


# 2. the API's creates with and without a subscription ---------------------------------------
def create_script(path: Path, token: str, parent: str, tag: str) -> None:
    path.write_text(
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f'  local body = \'{{"name":"{tag}-\' .. n .. \'","parentId":"{parent}"}}\'\n'
        '  return wrk.format("POST", "/api/v1/groups", nil, body)\n'
        "end\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,'
        '\\"errors\\":%d}\\n", summary.requests, summary.duration, summary.errors.status))\n'
        "end\n"
    )


def drive(server: Server, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    argv = ["taskset", "-c", LOAD_CPU, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    argv += ["--timeout", "5s", "-s", str(script), server.base_url]
    output = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 60, check=True
    ).stdout
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            return json.loads(line[len("WRKJSON ") :])  # type: ignore[no-any-return]
    raise RuntimeError(f"wrk printed no summary:\n{output}")


def cpu_seconds(pid: int) -> float:
    """The user and system CPU a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def delivery_children(pid: int) -> list[int]:
    """The delivery processes a server has started (decision 0076)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def move_delivery_off_the_server_core(server: Server) -> int:
    """Wait for the server's delivery process and give it the load generator's core: it
    inherited the server's pinning, and on a machine of its own it would use any core
    the server does not (the bench pins the server only to keep the load off its core)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = delivery_children(server.pid)
        if children:
            os.sched_setaffinity(children[0], {int(LOAD_CPU)})
            return children[0]
        time.sleep(0.05)
    raise RuntimeError("the server started no delivery process")


def measure_create_cost(
    db: BenchDatabase,
    token: str,
    seconds: int,
    rounds: int,
    connections: int,
    *,
    mode: str,
) -> dict[str, Any]:
    """Creates with a subscription against none; deliveries by the process the server
    starts (``process``, the default) or by the server's own threads (``threads``).
    Besides the rates: the server's CPU per create (and the delivery process's), and how
    many deliveries were still to send when each subscribed round ended (the delivery's
    lag) and how long they then took."""
    receiver = start_receiver(db.workdir)
    env = {"GROUPD_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    if mode == "threads":
        env["GROUPD_WEBHOOK_DELIVERY_PROCESS"] = "false"
    server = start_groupd(db, extra_env=env, cpus=SERVER_CPUS)
    deliverer: int | None = None
    rates: dict[str, list[float]] = {"none": [], "subscribed": []}
    cpu_us: dict[str, list[float]] = {"none": [], "subscribed": []}
    deliverer_cpu_us: list[float] = []
    subscribed_creates = 0
    behind: list[int] = []  # deliveries still to send when a subscribed round ended
    catch_up: list[float] = []  # and the seconds they then took
    try:
        with api(server.base_url, token) as client:
            root = tenant_root(client)
            parent = check(
                client.post(
                    "/api/v1/groups",
                    json={"name": f"bench-{uuid.uuid4().hex[:8]}", "parentId": root},
                ),
                201,
            )["id"]
            hook_id: str | None = None

            def subscribe() -> str:
                nonlocal deliverer
                made = check(
                    client.post(
                        "/api/v1/webhooks",
                        json={"url": f"{receiver.base_url}/hook", "events": ["*"]},
                    ),
                    201,
                )["id"]
                if mode == "process" and deliverer is None:
                    deliverer = move_delivery_off_the_server_core(server)
                return str(made)

            # A warm-up run, subscribed and not counted: the delivery process starts
            # (its imports and first connections) before any round is measured.
            hook_id = subscribe()
            warm_up = db.workdir / "create-warm-up.lua"
            create_script(warm_up, token, parent, "warm-up")
            subscribed_creates += drive(server, warm_up, 2, connections)["requests"]
            wait_received(receiver, subscribed_creates)
            for round_ in range(rounds):
                # Each case goes first in every other round: whatever drifts during a
                # round (the machine, the growing table) falls on both alike.
                order = ("none", "subscribed") if round_ % 2 == 0 else ("subscribed", "none")
                for case in order:
                    if case == "subscribed" and hook_id is None:
                        hook_id = subscribe()
                    if case == "none" and hook_id is not None:
                        check(client.delete(f"/api/v1/webhooks/{hook_id}"), 204)
                        hook_id = None
                    script = db.workdir / f"create-{case}-{round_}.lua"
                    create_script(script, token, parent, f"{case}-{round_}")
                    cpu_before = cpu_seconds(server.pid)
                    child_before = cpu_seconds(deliverer) if deliverer else 0.0
                    result = drive(server, script, seconds, connections)
                    cpu = cpu_seconds(server.pid) - cpu_before
                    if result["errors"]:
                        raise RuntimeError(f"{result['errors']} creates failed: {result}")
                    rates[case].append(result["requests"] / (result["duration_us"] / 1e6))
                    cpu_us[case].append(cpu / result["requests"] * 1e6)
                    if case == "subscribed":
                        # Every subscribed create is one delivery. Wait for them all
                        # before the next run: deleting the subscription drops what
                        # it still had to send, and sending would spill into "none".
                        subscribed_creates += result["requests"]
                        behind.append(subscribed_creates - received(receiver))
                        catch_up.append(wait_received(receiver, subscribed_creates))
                        if deliverer:
                            child_cpu = cpu_seconds(deliverer) - child_before
                            deliverer_cpu_us.append(child_cpu / result["requests"] * 1e6)
        delivered = received(receiver)
    finally:
        server.stop()
        receiver.stop()
    none = statistics.median(rates["none"])
    subscribed = statistics.median(rates["subscribed"])
    # Each round runs the two cases back to back: the machine is shared, and its speed
    # drifts between rounds by more than the difference measured, so each round's pair is
    # compared and the median of those is the figure.
    paired = [1 - s / n for n, s in zip(rates["none"], rates["subscribed"], strict=True)]
    return {
        "creates_per_s_none": round(none),
        "creates_per_s_subscribed": round(subscribed),
        "slowdown": round(statistics.median(paired), 3),
        "slowdown_by_round": [round(value, 3) for value in paired],
        "rounds": {case: [round(r) for r in values] for case, values in rates.items()},
        "server_cpu_us_per_create": {
            case: round(statistics.median(values)) for case, values in cpu_us.items()
        },
        "delivery_process_cpu_us_per_create": (
            round(statistics.median(deliverer_cpu_us)) if deliverer_cpu_us else None
        ),
        "delivered": delivered,
        "behind_at_end": behind,
        "caught_up_s": [round(seconds, 2) for seconds in catch_up],
    }


# 3. a subtree delete's events ---------------------------------------------------------------
def measure_delete_events(kind: str, devices: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from bench.delete_subtree import load_through_sql
    from groupd.clock import system_clock
    from groupd.services import deletion
    from groupd.services.common import Actor
    from groupd.services.webhooks import addresses
    from groupd.services.webhooks import subscriptions as subs
    from groupd.settings import Settings
    from groupd.store.db import Database, transaction
    from groupd.store.models import Group, OutboxEvent, WebhookDelivery
    from groupd.worker import Worker

    db = create_database(kind, f"webhooks_delete_{devices}")
    try:
        token = bootstrap(db)
        loaded = load_through_sql(db, token, 10, devices, 10)
        settings = Settings(database_url=db.url, webhook_delivery_enabled=False)
        database = Database.from_settings(settings)
        try:
            key = uuid.UUID(loaded.subtree_root)
            with transaction(database) as uow:
                tenant_id = uow.session.execute(
                    select(Group.tenant_id).where(Group.uuid == key)
                ).scalar_one()
                actor = Actor(tenant_id, None, "bench", "admin", "bench", None)
                subs.create_subscription(
                    uow,
                    actor=actor,
                    url="https://hooks.example.com/bench",
                    events=["*"],
                    policy=subs.Policy(networks=addresses.parse_networks("")),
                    now=system_clock(),
                )
                before = uow.session.execute(
                    select(func.coalesce(func.max(OutboxEvent.id), 0))
                ).scalar_one()
            began = time.perf_counter()
            with transaction(database) as uow:
                deletion.request_delete(
                    uow, actor=actor, group_id=key, release_units=True, now=system_clock()
                )
            Worker(database, settings).run_until_idle()
            from groupd.delivery.dispatcher import Dispatcher

            Dispatcher(database, settings).relay_once()
            seconds = time.perf_counter() - began
            with database.unit_of_work(write=False) as uow:
                types = [
                    row[0]
                    for row in uow.session.execute(
                        select(OutboxEvent.type)
                        .where(OutboxEvent.id > before)
                        .order_by(OutboxEvent.id)
                    )
                ]
                deliveries = uow.session.execute(
                    select(func.count()).select_from(WebhookDelivery)
                ).scalar_one()
        finally:
            database.dispose()
    finally:
        drop_database(db)
    return {
        "devices": devices,
        "events": len(types),
        "types": types,
        "deliveries": deliveries,
        "delete_seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="sqlite")
    parser.add_argument("--events", type=int, default=2000, help="events per subscription")
    parser.add_argument("--subscriptions", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=5, help="each wrk run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--devices", default="10000,100000")
    parser.add_argument(
        "--parts", default="deliveries,creates,delete", help="which measurements to run"
    )
    parser.add_argument(
        "--delivery",
        default="process,threads",
        help="who delivers during the create runs: process (the one the server starts, "
        "the default), threads (the server's own)",
    )
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver is not None:
        serve_receiver(args.receiver)
        return
    parts = set(args.parts.split(","))
    sys.path.insert(0, str(SRC))
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    print_machine(machine_info())
    for kind in kinds:
        db = create_database(kind, "webhooks")
        try:
            token = bootstrap(db)
            if "deliveries" in parts:
                deliveries = measure_deliveries(db, args.events, args.subscriptions)
                ok = deliveries["per_s"] >= TARGET_DELIVERIES_PER_S
                print(f"[{kind}] deliveries: {json.dumps(deliveries)} {verdict(ok)}")
            for mode in args.delivery.split(",") if "creates" in parts else ():
                cost = measure_create_cost(
                    db, token, args.seconds, args.rounds, args.connections, mode=mode
                )
                ok = cost["slowdown"] <= TARGET_SLOWDOWN
                print(
                    f"[{kind}] creates, subscribed vs none, delivered by {mode}: "
                    f"{json.dumps(cost)} {verdict(ok)}"
                )
        finally:
            drop_database(db)
        if "delete" not in parts:
            continue
        counts = [measure_delete_events(kind, int(devices)) for devices in args.devices.split(",")]
        for result in counts:
            print(f"[{kind}] delete: {json.dumps(result)}")
        same = len({result["events"] for result in counts}) == 1
        print(f"[{kind}] delete events independent of the devices: {verdict(same)}")


if __name__ == "__main__":
    main()
