"""``groupd webhooks``: a tenant's event subscriptions, through a running server's API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

webhooks_app = typer.Typer(
    help="Webhook subscriptions, through a running server's API (admin token).",
    no_args_is_help=True,
)
err = Console(stderr=True)
out = Console()
Url = Annotated[str | None, typer.Option(help="server URL (or GROUPD_URL)")]
Token = Annotated[str | None, typer.Option(help="API token (or GROUPD_TOKEN)")]


def _call(url: str | None, token: str | None, method: str, path: str, **kwargs: Any) -> Any:
    from groupd.cli import _client, _fail
    from groupd.client import ApiError

    client = _client(url, token)
    try:
        return client.call(method, path, **kwargs)
    except ApiError as error:
        _fail(str(error))
    finally:
        client.close()


@webhooks_app.command("list")
def webhooks_list(url: Url = None, token: Token = None) -> None:
    """The tenant's subscriptions."""
    body = _call(url, token, "GET", "/api/v1/webhooks", params={"limit": "1000"})
    table = Table(title="Webhooks")
    for column in ("id", "url", "events", "format", "enabled"):
        table.add_column(column)
    for item in body["items"]:
        enabled = "yes" if item["enabled"] else f"no ({item.get('disabledReason') or ''})"
        table.add_row(item["id"], item["url"], ", ".join(item["events"]), item["format"], enabled)
    out.print(table)


@webhooks_app.command("create")
def webhooks_create(
    target: Annotated[str, typer.Argument(metavar="URL", help="where events are sent")],
    events: Annotated[
        list[str] | None, typer.Option("--event", help="event type or pattern (repeat)")
    ] = None,
    description: Annotated[str, typer.Option(help="what it is for")] = "",
    cloudevents: Annotated[
        bool, typer.Option("--cloudevents", help="CloudEvents structured bodies")
    ] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Subscribe URL; prints the id, and the signing secret, which is shown only now."""
    body = _call(
        url,
        token,
        "POST",
        "/api/v1/webhooks",
        json={
            "url": target,
            "events": events or ["*"],
            "description": description,
            "format": "cloudevents" if cloudevents else "standard",
        },
    )
    err.print(f"webhook {body['id']} created; its signing secret (shown once):")
    out.print(body["secret"])


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    status: Annotated[str | None, typer.Option(help="pending, succeeded or failed")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    url: Url = None,
    token: Token = None,
) -> None:
    """A subscription's latest deliveries."""
    params = {"limit": str(limit), **({"status": status} if status else {})}
    body = _call(url, token, "GET", f"/api/v1/webhooks/{webhook_id}/deliveries", params=params)
    table = Table(title=f"Deliveries of {webhook_id}")
    for column in ("id", "event", "status", "attempts", "last answer", "next attempt"):
        table.add_column(column)
    for item in body["items"]:
        answer = item["lastResponseCode"] or item["lastError"] or ""
        table.add_row(
            item["id"],
            item["event"],
            item["status"],
            str(item["attempts"]),
            str(answer),
            item["nextAttemptAt"] or "",
        )
    out.print(table)


@webhooks_app.command("retry")
def webhooks_retry(
    webhook_id: Annotated[str, typer.Argument(metavar="ID")],
    delivery_id: Annotated[str, typer.Argument(metavar="DELIVERY")],
    url: Url = None,
    token: Token = None,
) -> None:
    """Send one delivery again (with the same webhook-id)."""
    path = f"/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/retry"
    body = _call(url, token, "POST", path)
    out.print(f"delivery {body['id']} ({body['event']}) queued again")


@webhooks_app.command("deliver")
def webhooks_deliver(
    parent_pid: Annotated[
        int | None,
        typer.Option(help="stop when this process is gone (set by the server that starts it)"),
    ] = None,
) -> None:
    """Run webhook delivery threads on their own, until interrupted. groupd serve
    starts one such process itself (GROUPD_WEBHOOK_DELIVERY_PROCESS); run more, here or on
    other machines, beside it or instead of it (GROUPD_WEBHOOK_DELIVERY_ENABLED=false on
    the servers)."""
    import signal
    import time

    from groupd.delivery.dispatcher import Dispatcher
    from groupd.delivery.process import parent_is_gone
    from groupd.logs import configure_logging
    from groupd.settings import get_settings
    from groupd.store.db import Database

    settings = get_settings()
    configure_logging(settings.log_level)
    dispatcher = Dispatcher(Database.from_settings(settings, serves_requests=False), settings)
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    dispatcher.start()
    err.print(f"webhook delivery {dispatcher.id} running")
    while not stopping and not (parent_pid is not None and parent_is_gone(parent_pid)):
        time.sleep(0.2)
    dispatcher.stop()
    dispatcher.close()
