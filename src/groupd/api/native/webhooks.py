"""/api/v1/webhooks: a tenant's event subscriptions (admin), their deliveries."""

from __future__ import annotations

from msgspec import UNSET
from starlette.responses import Response

from groupd.api.http import ApiRequest, Endpoint, QueryParam, json_response
from groupd.api.native import webhook_schemas as w
from groupd.api.native.common import PAGING, limit_and_cursor
from groupd.api.native.render import timestamp, ts
from groupd.api.native.surface import NATIVE
from groupd.services.webhooks import addresses, subscriptions
from groupd.services.webhooks.subscriptions import DeliveryView, Policy, SubscriptionView


def _policy(req: ApiRequest) -> Policy:
    settings = req.ctx.settings
    return Policy(
        networks=addresses.parse_networks(settings.webhook_allowed_networks),
        secret_keys=settings.webhook_secret_keys,
    )


def _out(view: SubscriptionView) -> w.WebhookOut:
    return w.WebhookOut(
        id=str(view.uuid),
        url=view.url,
        events=view.events,
        description=view.description,
        format=view.format,
        enabled=view.enabled,
        disabled_reason=view.disabled_reason,
        created_at=ts(view.created_at),
        updated_at=ts(view.updated_at),
    )


def _with_secret(view: SubscriptionView) -> w.WebhookWithSecret:
    assert view.secret is not None, "only a just-made secret is shown"
    base = _out(view)
    return w.WebhookWithSecret(
        **{field: getattr(base, field) for field in base.__struct_fields__}, secret=view.secret
    )


def _delivery(view: DeliveryView) -> w.DeliveryOut:
    return w.DeliveryOut(
        id=str(view.uuid),
        event_id=str(view.event_uuid),
        event=view.event_type,
        status=view.state,
        attempts=view.attempt_count,
        last_response_code=view.last_status,
        last_error=view.last_error,
        next_attempt_at=timestamp(view.next_attempt_at),
        created_at=ts(view.created_at),
        delivered_at=timestamp(view.delivered_at),
    )


def create_webhook(req: ApiRequest) -> Response:
    body = req.decode(w.WebhookCreate)
    view = subscriptions.create_subscription(
        req.uow,
        actor=req.actor,
        url=body.url,
        events=body.events,
        description=body.description,
        format=body.format,
        policy=_policy(req),
        now=req.now,
    )
    return json_response(
        _with_secret(view), 201, headers={"Location": f"/api/v1/webhooks/{view.uuid}"}
    )


def list_webhooks(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = subscriptions.list_subscriptions(req.uow, actor=req.actor, limit=limit, cursor=cursor)
    return json_response(
        w.WebhookPage(items=[_out(v) for v in page.items], next_cursor=page.next_cursor)
    )


def get_webhook(req: ApiRequest) -> Response:
    return json_response(
        _out(
            subscriptions.get_subscription(
                req.uow, actor=req.actor, subscription_id=req.path_params["id"]
            )
        )
    )


def update_webhook(req: ApiRequest) -> Response:
    body = req.decode(w.WebhookUpdate)
    view = subscriptions.update_subscription(
        req.uow,
        actor=req.actor,
        subscription_id=req.path_params["id"],
        url=None if body.url is UNSET else body.url,
        events=None if body.events is UNSET else body.events,
        description=None if body.description is UNSET else body.description,
        enabled=None if body.enabled is UNSET else body.enabled,
        policy=_policy(req),
        now=req.now,
    )
    return json_response(_out(view))


def delete_webhook(req: ApiRequest) -> Response:
    subscriptions.delete_subscription(
        req.uow, actor=req.actor, subscription_id=req.path_params["id"], now=req.now
    )
    return Response(status_code=204)


def rotate_secret(req: ApiRequest) -> Response:
    view = subscriptions.rotate_secret(
        req.uow,
        actor=req.actor,
        subscription_id=req.path_params["id"],
        policy=_policy(req),
        now=req.now,
    )
    return json_response(_with_secret(view))


def list_deliveries(req: ApiRequest) -> Response:
    limit, cursor = limit_and_cursor(req)
    page = subscriptions.list_deliveries(
        req.uow,
        actor=req.actor,
        subscription_id=req.path_params["id"],
        state=req.query_str("status"),
        limit=limit,
        cursor=cursor,
    )
    return json_response(
        w.DeliveryPage(items=[_delivery(v) for v in page.items], next_cursor=page.next_cursor)
    )


def retry_delivery(req: ApiRequest) -> Response:
    view = subscriptions.retry_delivery(
        req.uow,
        actor=req.actor,
        subscription_id=req.path_params["id"],
        delivery_id=req.path_params["deliveryId"],
        now=req.now,
    )
    return json_response(_delivery(view), 202)


def send_test(req: ApiRequest) -> Response:
    view = subscriptions.send_test_event(
        req.uow, actor=req.actor, subscription_id=req.path_params["id"], now=req.now
    )
    return json_response(_delivery(view), 202)


def endpoints() -> list[Endpoint]:
    tags = ["webhooks"]
    one = "/api/v1/webhooks/{id}"
    return [
        Endpoint(
            "POST",
            "/api/v1/webhooks",
            create_webhook,
            NATIVE,
            role="admin",
            write=True,
            summary="Subscribe a URL to events (the secret is shown once)",
            body=w.WebhookCreate,
            response=w.WebhookWithSecret,
            status=201,
            tags=tags,
            errors=(400, 401, 403),
        ),
        Endpoint(
            "GET",
            "/api/v1/webhooks",
            list_webhooks,
            NATIVE,
            role="admin",
            summary="List webhook subscriptions",
            response=w.WebhookPage,
            tags=tags,
            query=PAGING,
        ),
        Endpoint(
            "GET",
            one,
            get_webhook,
            NATIVE,
            role="admin",
            summary="Get a webhook subscription",
            response=w.WebhookOut,
            tags=tags,
        ),
        Endpoint(
            "PATCH",
            one,
            update_webhook,
            NATIVE,
            role="admin",
            write=True,
            summary="Change a subscription's url, events, description or enabled",
            body=w.WebhookUpdate,
            response=w.WebhookOut,
            tags=tags,
        ),
        Endpoint(
            "DELETE",
            one,
            delete_webhook,
            NATIVE,
            role="admin",
            write=True,
            summary="Delete a subscription and its deliveries",
            status=204,
            tags=tags,
            json_body=False,
        ),
        Endpoint(
            "POST",
            f"{one}/rotate-secret",
            rotate_secret,
            NATIVE,
            role="admin",
            write=True,
            summary="Replace the signing secret (the new one is shown once)",
            response=w.WebhookWithSecret,
            tags=tags,
            json_body=False,
        ),
        Endpoint(
            "GET",
            f"{one}/deliveries",
            list_deliveries,
            NATIVE,
            role="admin",
            summary="A subscription's deliveries, newest first",
            response=w.DeliveryPage,
            tags=tags,
            query=[
                QueryParam(
                    "status", description="only these", enum=["pending", "succeeded", "failed"]
                ),
                *PAGING,
            ],
        ),
        Endpoint(
            "POST",
            f"{one}/deliveries/{{deliveryId}}/retry",
            retry_delivery,
            NATIVE,
            role="admin",
            write=True,
            summary="Send one delivery again (same webhook-id)",
            response=w.DeliveryOut,
            status=202,
            tags=tags,
            json_body=False,
        ),
        Endpoint(
            "POST",
            f"{one}/test",
            send_test,
            NATIVE,
            role="admin",
            write=True,
            summary="Queue a webhook.test event for this subscription",
            response=w.DeliveryOut,
            status=202,
            tags=tags,
            json_body=False,
        ),
    ]
