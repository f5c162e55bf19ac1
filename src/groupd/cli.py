"""The ``groupd`` command: serve, run workers, administer, and delete through the API."""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from groupd.cli_webhooks import webhooks_app
from groupd.clock import system_clock
from groupd.errors import GroupdError
from groupd.settings import get_settings
from groupd.store.db import Database, transaction

app = typer.Typer(
    help="groupd: a group directory with safe, durable, fast deletes.", no_args_is_help=True
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants.", no_args_is_help=True)
account_app = typer.Typer(help="Accounts.", no_args_is_help=True)
token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
groups_app = typer.Typer(help="Groups, through a running server's API.", no_args_is_help=True)
bin_app = typer.Typer(help="The recycle bin, through a running server's API.", no_args_is_help=True)
operations_app = typer.Typer(
    help="Operations (long deletes), through a running server's API.", no_args_is_help=True
)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(account_app, name="account")
app.add_typer(token_app, name="token")
app.add_typer(groups_app, name="groups")
app.add_typer(operations_app, name="operations")
app.add_typer(bin_app, name="bin")
app.add_typer(webhooks_app, name="webhooks")
err = Console(stderr=True)
out = Console()


def _database() -> Database:
    return Database.from_settings(get_settings())


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port to listen on")] = None,
    workers: Annotated[int, typer.Option(help="server processes (use PostgreSQL for >1)")] = 1,
) -> None:
    """Migrate, seed an empty database, and serve every API on one port."""
    import uvicorn

    from groupd.bootstrap import prepare_database
    from groupd.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    db = _database()
    seeded = prepare_database(db)
    db.dispose()
    if seeded is not None:
        err.print("[bold]groupd initialised[/bold]: tenant 'default' with an admin account.")
        err.print(f"  username: {seeded.username}")
        err.print(f"  password: {seeded.password}")
        err.print(f"  API token: {seeded.token}")
        err.print("These are shown once; store them now.")
    if workers > 1 and db.is_sqlite:
        err.print(
            "[yellow]note:[/yellow] several processes on SQLite share one write lock; "
            "use PostgreSQL for --workers > 1"
        )
    uvicorn.run(
        "groupd.api.app:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=5,
    )


@app.command()
def worker() -> None:
    """Run a phase-2 worker on its own, until interrupted."""
    from groupd.logs import configure_logging
    from groupd.worker import Worker

    settings = get_settings()
    configure_logging(settings.log_level)
    runner = Worker(_database(), settings)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    runner.start()
    err.print(f"worker {runner.id} running")
    while not stopping:
        time.sleep(0.2)
    runner.stop()


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    from groupd.store.migrate import upgrade

    upgrade(_database().engine)
    err.print("schema is up to date")


@tenant_app.command("create")
def tenant_create(name: str) -> None:
    """Create a tenant with its built-in groups."""
    from groupd.services import accounts

    try:
        with transaction(_database()) as uow:
            tenant = accounts.create_tenant(uow, name=name, now=system_clock())
    except GroupdError as error:
        _fail(error.detail)
    out.print(str(tenant.uuid))


@tenant_app.command("provisioning-home")
def tenant_provisioning_home(
    name: str,
    group_id: Annotated[
        str | None,
        typer.Argument(help="A static group's id; leave out for the default 'Provisioned'."),
    ] = None,
) -> None:
    """Name the static group SCIM-provisioned users of a tenant are homed in."""
    from groupd.services import accounts
    from groupd.services.common import system_actor
    from groupd.services.provisioning.home import set_provisioning_home

    try:
        with transaction(_database()) as uow:
            tenant = accounts.get_tenant(uow, name=name)
            chosen = set_provisioning_home(uow, actor=system_actor(tenant.id), group_id=group_id)
    except GroupdError as error:
        _fail(error.detail)
    out.print(str(chosen) if chosen else "the default: a protected 'Provisioned' group under All")


@account_app.command("create")
def account_create(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    username: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="admin, editor or viewer")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Create an account; the password comes from stdin (never from the command line)."""
    from groupd.services import accounts

    if not password_stdin:
        _fail("pass --password-stdin and the password on standard input")
    password = sys.stdin.readline().rstrip("\n")
    try:
        with transaction(_database()) as uow:
            found = accounts.get_tenant(uow, name=tenant)
            account = accounts.create_account(
                uow,
                tenant_id=found.id,
                username=username,
                role=role,
                password=password,
                now=system_clock(),
            )
    except GroupdError as error:
        _fail(error.detail)
    out.print(str(account.uuid))


_DURATION = re.compile(r"^(\d+)([smhdw]?)$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise typer.BadParameter(f"'{text}' is not a duration like 3600, 90m, 12h or 30d")
    return int(match.group(1)) * _UNIT[match.group(2)]


@token_app.command("create")
def token_create(
    tenant: Annotated[str, typer.Option(help="tenant name")],
    username: Annotated[str, typer.Option()],
    ttl: Annotated[str, typer.Option(help="lifetime: 3600, 90m, 12h, 30d")] = "30d",
) -> None:
    """Create an API token and print it, alone, on stdout."""
    from groupd.services import accounts

    seconds = parse_duration(ttl)
    try:
        with transaction(_database()) as uow:
            found = accounts.get_tenant(uow, name=tenant)
            account = accounts.get_account(uow, username=username)
            if account.tenant_id != found.id:
                _fail(f"account '{username}' is not in tenant '{tenant}'")
            token = accounts.issue_credential(
                uow,
                account=account,
                kind="api",
                ttl_seconds=seconds,
                now=system_clock(),
                label="cli",
            )
    except GroupdError as error:
        _fail(error.detail)
    print(token.secret)


@app.command()
def maintenance(
    state: Annotated[str, typer.Argument(help="on or off")],
    message: Annotated[str, typer.Option(help="what callers are told")] = "",
) -> None:
    """Switch maintenance mode for every process (each sees it within a second)."""
    from groupd.services import system

    if state not in ("on", "off"):
        _fail("state is 'on' or 'off'")
    with transaction(_database()) as uow:
        system.set_maintenance(uow, enabled=state == "on", message=message, now=system_clock())
    err.print(f"maintenance {state}")


def _client(url: str | None, token: str | None) -> Any:
    from groupd.client import GroupdClient

    base = url or os.environ.get("GROUPD_URL") or "http://127.0.0.1:8000"
    secret = token or os.environ.get("GROUPD_TOKEN")
    if not secret:
        _fail("a token is needed: --token or GROUPD_TOKEN")
    return GroupdClient(base, secret or "")


@contextmanager
def _api(url: str | None, token: str | None) -> Iterator[Any]:
    """A client of the server's API for one command: an API error ends the command with
    its message, and the connection is closed either way."""
    from groupd.client import ApiError

    client = _client(url, token)
    try:
        yield client
    except ApiError as error:
        _fail(str(error))
    finally:
        client.close()


@groups_app.command("delete")
def groups_delete(
    group_id: Annotated[str, typer.Argument(metavar="ID")],
    release_units: Annotated[
        bool, typer.Option("--release-units", help="return consumed units")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only show the impact")] = False,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="return once accepted")] = False,
    url: Annotated[str | None, typer.Option(help="server URL (or GROUPD_URL)")] = None,
    token: Annotated[str | None, typer.Option(help="API token (or GROUPD_TOKEN)")] = None,
) -> None:
    """Delete a group's subtree, showing progress until the operation ends."""
    with _api(url, token) as client:
        status, body = client.delete_group(
            group_id, release_units=release_units, dry_run=dry_run, wait=0 if not dry_run else 0
        )
        if dry_run:
            _print_impact(body)
            return
        operation_id = body["id"]
        err.print(f"delete accepted: operation {operation_id}")
        if no_wait:
            out.print(operation_id)
            return
        body = _follow(client, operation_id, body)
    result = body.get("result") or {}
    if body["state"] != "succeeded":
        _fail(f"operation ended {body['state']}: {result}")
    _print_result(result.get("body") or {})


URL_OPTION = typer.Option(help="server URL (or GROUPD_URL)")
TOKEN_OPTION = typer.Option(help="API token (or GROUPD_TOKEN)")


@operations_app.command("list")
def operations_list(
    state: Annotated[str | None, typer.Option(help="accepted, running, succeeded, failed")] = None,
    url: Annotated[str | None, URL_OPTION] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """The tenant's operations, newest first."""
    with _api(url, token) as client:
        items = client.list_operations(state=state)
    for item in items:
        groups = (item.get("progress") or {}).get("groups") or {}
        done = f"{groups.get('done', 0)}/{groups.get('total') or '?'} groups"
        fields = (item["id"], item["state"], item["kind"], item["target"]["name"], done)
        out.print("  ".join((*fields, item["createdAt"])), soft_wrap=True, highlight=False)


@operations_app.command("show")
def operations_show(
    operation_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Annotated[str | None, URL_OPTION] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """One operation: its state, progress and result."""
    with _api(url, token) as client:
        body = client.get_operation(operation_id)
    _print_operation(body)


@operations_app.command("resume")
def operations_resume(
    operation_id: Annotated[str, typer.Argument(metavar="ID")],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="return once accepted")] = False,
    url: Annotated[str | None, URL_OPTION] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """Resume a failed operation (admin) and follow it to the end."""
    with _api(url, token) as client:
        body = client.resume_operation(operation_id)
        err.print(f"operation {operation_id} accepted again")
        if not no_wait:
            body = _follow(client, operation_id, body)
    _print_operation(body)
    if not no_wait and body["state"] != "succeeded":
        raise typer.Exit(1)


@bin_app.command("list")
def bin_list(
    limit: Annotated[int, typer.Option(help="entries per page (1-1000)")] = 50,
    url: Annotated[str | None, URL_OPTION] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """The deleted subtrees waiting in the bin, newest first."""
    with _api(url, token) as client:
        page = client.list_deleted(limit=limit)
    table = Table(title="Recycle bin")
    table.add_column("id", no_wrap=True)
    for column in ("name", "path", "deleted", "by", "purged", "groups", "objects"):
        table.add_column(column, justify="right" if column in ("groups", "objects") else "left")
    for item in page["items"]:
        counts = item["counts"]
        table.add_row(
            item["id"],
            item["name"] + (" (restoring)" if item["restoring"] else ""),
            " / ".join(item["pathNames"]),
            item["deletedAt"],
            item["deletedBy"],
            item["purgeAt"],
            f"{counts['groups']:,}",
            f"{counts['devices'] + counts['users']:,}",
        )
    out.print(table)
    if page["nextCursor"]:
        err.print("(more: the API pages on with nextCursor)")


@bin_app.command("restore")
def bin_restore(
    group_id: Annotated[str, typer.Argument(metavar="ID")],
    parent: Annotated[str | None, typer.Option("--parent", help="restore under this group")] = None,
    name: Annotated[str | None, typer.Option("--name", help="restore under this name")] = None,
    url: Annotated[str | None, URL_OPTION] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """Bring a deleted subtree back, all or nothing, showing progress until it ends."""
    from groupd.client import ApiError

    client = _client(url, token)
    try:
        body = client.restore_deleted(group_id, parent_id=parent, name=name, wait=0)
        err.print(f"restore accepted: operation {body['id']}")
        body = _follow(client, body["id"], body)
    except ApiError as error:
        if error.status == 409 and isinstance(error.body, dict) and "conflicts" in error.body:
            _print_conflicts(error.body["conflicts"])
        _fail(str(error))
    finally:
        client.close()
    result = body.get("result") or {}
    if result.get("status") == 409:
        _print_conflicts(result["body"].get("conflicts", []))
        _fail(str(result["body"].get("detail")))
    if body["state"] != "succeeded" or result.get("status") != 200:
        _fail(f"operation ended {body['state']}: {result}")
    out.print(f"restored: {result['body']['restored']}", soft_wrap=True)


@bin_app.command("purge")
def bin_purge(
    group_id: Annotated[str, typer.Argument(metavar="ID")],
    url: Annotated[str | None, URL_OPTION] = None,
    token: Annotated[str | None, TOKEN_OPTION] = None,
) -> None:
    """Remove a deleted subtree for good now (admin), showing progress until it ends."""
    with _api(url, token) as client:
        body = client.purge_deleted(group_id, wait=0)
        err.print(f"purge accepted: operation {body['id']}")
        body = _follow(client, body["id"], body)
    result = body.get("result") or {}
    if body["state"] != "succeeded":
        _fail(f"operation ended {body['state']}: {result}")
    out.print(f"purged: {(result.get('body') or {}).get('deleted', {})}", soft_wrap=True)


def _print_conflicts(conflicts: list[dict[str, Any]]) -> None:
    table = Table(title="The restore is refused")
    table.add_column("conflict")
    table.add_column("detail")
    for item in conflicts:
        if item["kind"] == "units_unavailable":
            detail = f"{item['product']}: {item['needed']:,} units needed, {item['free']:,} free"
        elif item["kind"] == "name_taken":
            detail = f"'{item['name']}' is taken (by {item.get('takenBy', '?')})"
        else:
            detail = str(item.get("detail", ""))
        table.add_row(item["kind"], detail)
    err.print(table)


def _print_operation(body: dict[str, Any]) -> None:
    table = Table(title=f"Operation {body['id']}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    table.add_row("kind", body["kind"])
    table.add_row("state", body["state"])
    table.add_row("target", f"{body['target']['name']} ({body['target']['id']})")
    for key, counter in (body.get("progress") or {}).items():
        if isinstance(counter, dict):
            table.add_row(key, f"{counter['done']:,} of {counter.get('total') or '?'}")
        else:
            table.add_row(key, f"{counter:,}")
    result = body.get("result")
    if result:
        table.add_row("result", f"{result['status']} {result['body']}")
    for key in ("createdAt", "startedAt", "finishedAt"):
        if body.get(key):
            table.add_row(key, body[key])
    out.print(table)


def _follow(client: Any, operation_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),  # "?" for a total still being counted
        TimeElapsedColumn(),
        console=err,
    ) as progress:
        tasks: dict[str, Any] = {}
        while True:
            for key in ("groups", "devices", "users", "memberships", "activations"):
                counter = (body.get("progress") or {}).get(key)
                if not counter:
                    continue
                total = counter.get("total")
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=total)
                progress.update(tasks[key], total=total, completed=counter["done"])
            if body["state"] in ("succeeded", "failed"):
                return body
            time.sleep(0.5)
            body = client.get_operation(operation_id)


def _print_impact(body: dict[str, Any]) -> None:
    impact = body["impact"]
    table = Table(title=f"Deleting '{body['group']['name']}' would remove")
    table.add_column("what")
    table.add_column("count", justify="right")
    for kind, count in impact["groups"].items():
        table.add_row(f"groups ({kind})", f"{count:,}")
    table.add_row("devices", f"{impact['objects']['devices']:,}")
    table.add_row("users", f"{impact['objects']['users']:,}")
    table.add_row("memberships", f"{impact['memberships']:,}")
    table.add_row("activations", f"{impact['activations']:,}")
    for item in impact["units"]["byLicence"]:
        verb = "released" if item["action"] == "release" else "kept consumed"
        table.add_row(
            f"units of {item['product']} ({item['unitKind']}) {verb}", f"{item['units']:,}"
        )
    out.print(table)
    if impact["blockers"]:
        blockers = Table(title="Blocked by")
        blockers.add_column("rule")
        blockers.add_column("group")
        blockers.add_column("detail")
        for blocker in impact["blockers"]:
            detail = blocker.get("linkedEntityType") or blocker.get("activeMembers") or ""
            blockers.add_row(blocker["rule"], blocker["groupName"], str(detail))
        out.print(blockers)


def _print_result(body: dict[str, Any]) -> None:
    """What a finished delete took, in the same table as the dry run's impact: to the
    recycle bin (and how to restore it), or removed for good."""
    binned = "binned" in body
    counts = body.get("binned" if binned else "deleted") or {}
    verb = "Moved to the recycle bin" if binned else "Deleted"
    out.print(f"{verb}: group {body.get('groupId', '')}")
    table = Table()
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("groups", "devices", "users", "memberships", "activations"):
        table.add_row(key, f"{counts.get(key, 0):,}")
    table.add_row("units released", f"{body.get('unitsReleased', 0):,}")
    table.add_row("units kept consumed", f"{body.get('unitsKeptConsumed', 0):,}")
    out.print(table)
    if binned:
        out.print(f"Kept in the recycle bin until {body['purgeAt']}.", soft_wrap=True)
        out.print(f"Restore with: groupd bin restore {body['groupId']}", soft_wrap=True)


def main() -> None:
    try:
        app()
    except Exception as error:
        import httpx

        if not isinstance(error, httpx.TransportError):
            raise
        # A remote command that cannot reach its server: say so, without a traceback.
        try:
            url = str(error.request.url)
        except RuntimeError:  # no request was made
            url = "the server"
        err.print(
            f"[red]error:[/red] cannot reach {url} ({type(error).__name__}: {error}); "
            "is the server running, and are --url and GROUPD_URL right?",
            soft_wrap=True,
        )
        raise SystemExit(1) from None
