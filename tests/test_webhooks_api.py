"""/api/v1/webhooks: subscriptions per tenant, secrets shown once, address refusals."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from conftest import TenantFixture, make_settings
from groupd.settings import Settings

HOOK = "https://hooks.example.com/groupd"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, webhook_delivery_enabled=False)


def _create(client: TestClient, tenant: TenantFixture, **body: object) -> dict[str, object]:
    payload = {"url": HOOK, "events": ["group.*"], **body}
    response = client.post("/api/v1/webhooks", json=payload, headers=tenant.admin.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_subscription_is_made_listed_changed_and_deleted_its_secret_shown_once(
    client: TestClient, acme: TenantFixture, check_invariants: None
) -> None:
    made = _create(client, acme, description="provisioning", format="cloudevents")
    assert str(made["secret"]).startswith("whsec_")
    assert made["format"] == "cloudevents" and made["enabled"] is True
    one = f"/api/v1/webhooks/{made['id']}"
    fetched = client.get(one, headers=acme.admin.headers).json()
    assert "secret" not in fetched and fetched["description"] == "provisioning"
    listed = client.get("/api/v1/webhooks", headers=acme.admin.headers).json()
    assert [item["id"] for item in listed["items"]] == [made["id"]]
    assert listed["nextCursor"] is None and "secret" not in listed["items"][0]

    changed = client.patch(
        one, json={"events": ["object.created", "*"], "enabled": False}, headers=acme.admin.headers
    ).json()
    assert changed["events"] == ["object.created", "*"] and changed["enabled"] is False

    rotated = client.post(f"{one}/rotate-secret", headers=acme.admin.headers).json()
    assert str(rotated["secret"]).startswith("whsec_") and rotated["secret"] != made["secret"]

    deliveries = client.get(f"{one}/deliveries", headers=acme.admin.headers).json()
    assert deliveries == {"items": [], "nextCursor": None}
    queued = client.post(f"{one}/test", headers=acme.admin.headers)
    assert queued.status_code == 202 and queued.json()["event"] == "webhook.test"
    assert queued.json()["status"] == "pending"

    assert client.delete(one, headers=acme.admin.headers).status_code == 204
    assert client.get(one, headers=acme.admin.headers).status_code == 404
    actions = [
        e["action"] for e in client.get("/api/v1/audit", headers=acme.admin.headers).json()["items"]
    ]
    assert actions[-4:] == [
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
    ]


def test_only_admins_manage_webhooks_and_another_tenants_are_not_found(
    client: TestClient, acme: TenantFixture, globex: TenantFixture
) -> None:
    made = _create(client, acme)
    for caller in (acme.editor, acme.viewer):
        assert client.get("/api/v1/webhooks", headers=caller.headers).status_code == 403
    one = f"/api/v1/webhooks/{made['id']}"
    assert client.get(one, headers=globex.admin.headers).status_code == 404
    assert client.post(f"{one}/test", headers=globex.admin.headers).status_code == 404
    assert client.get("/api/v1/webhooks", headers=globex.admin.headers).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://192.168.0.10/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://100.100.100.200/hook",
        "https://localhost/hook",
        "https://metadata.google.internal/computeMetadata",
        "http://hooks.example.com/hook",
    ],
)
def test_targets_that_are_not_public_https_are_refused(
    client: TestClient, acme: TenantFixture, url: str
) -> None:
    response = client.post(
        "/api/v1/webhooks", json={"url": url, "events": ["*"]}, headers=acme.admin.headers
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "webhook_address_refused"
    assert client.get("/api/v1/webhooks", headers=acme.admin.headers).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://hooks.example.com/", "events": ["*"]}, "https"),
        ({"url": "https://user:pw@hooks.example.com/", "events": ["*"]}, "credentials"),
        ({"url": HOOK, "events": []}, "at least one"),
        ({"url": HOOK, "events": ["group.exploded"]}, "group.exploded"),
        ({"url": HOOK, "events": ["*"], "format": "xml"}, "format"),
    ],
)
def test_bad_subscriptions_say_what_is_wrong(
    client: TestClient, acme: TenantFixture, body: dict[str, object], field: str
) -> None:
    response = client.post("/api/v1/webhooks", json=body, headers=acme.admin.headers)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


def test_the_allow_list_admits_its_networks_over_plain_http(
    database_url: str, acme: TenantFixture
) -> None:
    from groupd.api.app import create_app
    from groupd.api.context import AppContext
    from groupd.store.db import Database

    settings = make_settings(
        database_url, webhook_delivery_enabled=False, webhook_allowed_networks="127.0.0.0/8"
    )
    db = Database.from_settings(settings)
    try:
        app = create_app(context=AppContext.create(settings, db=db))
        with TestClient(app) as client:
            ok = {"url": "http://127.0.0.1:9/hook", "events": ["*"]}
            assert (
                client.post("/api/v1/webhooks", json=ok, headers=acme.admin.headers).status_code
                == 201
            )
            other = {"url": "http://10.0.0.1/hook", "events": ["*"]}
            refused = client.post("/api/v1/webhooks", json=other, headers=acme.admin.headers)
            assert refused.status_code == 400
    finally:
        db.dispose()
