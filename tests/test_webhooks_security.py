"""Webhook secrets at rest: sealed with the configured keys, opened with any of them."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError
from sqlalchemy import select

from conftest import TenantFixture, make_settings
from groupd.clock import system_clock
from groupd.services.common import system_actor
from groupd.services.webhooks import sealing, subscriptions
from groupd.services.webhooks.subscriptions import Policy
from groupd.store.db import Database, transaction
from groupd.store.models import WebhookSubscription


def test_secrets_are_sealed_at_rest_with_the_configured_keys(
    db: Database, acme: TenantFixture
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with transaction(db) as uow:
        made = subscriptions.create_subscription(
            uow,
            actor=system_actor(acme.id),
            url="https://hooks.example.com/a",
            events=["*"],
            policy=Policy(secret_keys=old),
            now=system_clock(),
        )
    assert made.secret is not None
    with db.engine.connect() as connection:
        stored = connection.execute(select(WebhookSubscription.secret)).scalar_one()
    assert made.secret not in stored and stored.startswith("fernet:")
    # A new key first, the old one kept: what the old sealed still opens.
    assert sealing.unseal(stored, f"{new},{old}") == made.secret
    with pytest.raises(Exception, match="no longer has"):
        sealing.unseal(stored, new)
    with pytest.raises(ValidationError, match="Fernet"):
        make_settings("sqlite://", webhook_secret_keys="not-a-key")
