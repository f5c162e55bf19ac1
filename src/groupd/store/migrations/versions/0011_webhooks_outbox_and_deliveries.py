"""webhooks: the outbox of events, subscriptions and their deliveries

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-07 02:50:00

Every change writes an ``outbox_events`` row in its own transaction (through the audit
trail's seam); the relay gives each event to the tenant's matching subscriptions as
``webhook_deliveries``, sent in ``id`` order per subscription (decisions 0060, 0061).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from groupd.store.types import BigIntKey, JSONDocument, UTCDateTime, UuidKey

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def _key(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, BigIntKey, nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        _key("id"),
        sa.Column("uuid", UuidKey, nullable=False),
        _key("tenant_id"),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("data", JSONDocument, nullable=False),
        sa.Column("relayed", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_outbox_events_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_outbox_events"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_outbox_events_tenant_id_id"),
        sa.UniqueConstraint("uuid", name="uq_outbox_events_uuid"),
        sqlite_autoincrement=True,  # keys never repeat (see the model)
    )
    op.create_index(
        "ix_outbox_events_unrelayed",
        "outbox_events",
        ["id"],
        sqlite_where=sa.text("NOT relayed"),
        postgresql_where=sa.text("NOT relayed"),
    )
    op.create_table(
        "webhook_subscriptions",
        _key("id"),
        sa.Column("uuid", UuidKey, nullable=False),
        _key("tenant_id"),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("events", JSONDocument, nullable=False),
        sa.Column("description", sa.String(length=2000), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("secret", sa.String(length=500), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _key("after_event_id"),
        sa.Column("disabled_reason", sa.String(length=500), nullable=True),
        sa.Column("due_at", UTCDateTime(), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "format IN ('standard', 'cloudevents')", name="ck_webhook_subscriptions_format"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_webhook_subscriptions_tenant_id_tenants"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_subscriptions"),
        sa.UniqueConstraint("tenant_id", "id", name="uq_webhook_subscriptions_tenant_id_id"),
        sa.UniqueConstraint("uuid", name="uq_webhook_subscriptions_uuid"),
    )
    op.create_index("ix_webhook_subscriptions_due_at", "webhook_subscriptions", ["due_at"])
    op.create_table(
        "webhook_deliveries",
        _key("id"),
        sa.Column("uuid", UuidKey, nullable=False),
        _key("tenant_id"),
        _key("subscription_id"),
        _key("event_id"),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("first_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'succeeded', 'failed')", name="ck_webhook_deliveries_state"
        ),
        sa.CheckConstraint("attempts >= 0", name="ck_webhook_deliveries_attempts"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_webhook_deliveries_tenant_id_tenants"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "subscription_id"],
            ["webhook_subscriptions.tenant_id", "webhook_subscriptions.id"],
            name="fk_webhook_deliveries_subscription",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id", "event_id"],
            ["outbox_events.tenant_id", "outbox_events.id"],
            name="fk_webhook_deliveries_event",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint("uuid", name="uq_webhook_deliveries_uuid"),
    )
    op.create_index(
        "ix_webhook_deliveries_subscription_id_id",
        "webhook_deliveries",
        ["subscription_id", "id"],
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["subscription_id", "id"],
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("outbox_events")
