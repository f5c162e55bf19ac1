"""webhooks: the delivery queue apart from the rest

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 11:30:00

When a subscription's deliveries are due and who holds them moves from
``webhook_subscriptions`` to ``webhook_schedules``; ``webhook_deliveries`` loses its
foreign keys and gains one delivery per event and subscription. On SQLite the two tables
move to the queue's own file (``groupd.store.queue``, attached writable here as
``webhook_queue``, where they were made from the models), so that the delivery threads'
writes never take the lock the API's writes wait for (decision 0078). On PostgreSQL, and
on a SQLite database in memory, they stay with the rest.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from groupd.store.types import BigIntKey, UTCDateTime, UuidKey

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

QUEUE = "webhook_queue"
DELIVERY_COLUMNS = (
    "id, uuid, tenant_id, subscription_id, event_id, state, attempts, first_attempt_at,"
    " next_attempt_at, last_status, last_error, created_at, delivered_at"
)
SCHEDULE_COLUMNS = "subscription_id, tenant_id, due_at, lease_until, claimed_by"
DELIVERY_FOREIGN_KEYS = (
    ("fk_webhook_deliveries_tenant_id_tenants", ["tenant_id"], "tenants", ["id"], None),
    (
        "fk_webhook_deliveries_subscription",
        ["tenant_id", "subscription_id"],
        "webhook_subscriptions",
        ["tenant_id", "id"],
        "CASCADE",
    ),
    (
        "fk_webhook_deliveries_event",
        ["tenant_id", "event_id"],
        "outbox_events",
        ["tenant_id", "id"],
        None,
    ),
)


def _queue_file_attached() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return False
    return QUEUE in {row[1] for row in bind.exec_driver_sql("PRAGMA database_list")}


def _key(name: str, *, nullable: bool = False) -> sa.Column[int]:
    return sa.Column(name, BigIntKey, nullable=nullable)


def upgrade() -> None:
    if _queue_file_attached():
        # Copied afresh: a copy of an attempt that stopped before its end is replaced.
        op.execute(f"DELETE FROM {QUEUE}.webhook_deliveries")
        op.execute(f"DELETE FROM {QUEUE}.webhook_schedules")
        op.execute(
            f"INSERT INTO {QUEUE}.webhook_deliveries ({DELIVERY_COLUMNS})"
            f" SELECT {DELIVERY_COLUMNS} FROM main.webhook_deliveries"
        )
        target = f"{QUEUE}.webhook_schedules"
    else:
        op.create_table(
            "webhook_schedules",
            _key("subscription_id"),
            _key("tenant_id"),
            sa.Column("due_at", UTCDateTime(), nullable=True),
            sa.Column("lease_until", UTCDateTime(), nullable=True),
            sa.Column("claimed_by", sa.String(length=100), nullable=True),
            sa.PrimaryKeyConstraint("subscription_id", name="pk_webhook_schedules"),
        )
        op.create_index("ix_webhook_schedules_due_at", "webhook_schedules", ["due_at"])
        target = "webhook_schedules"
    op.execute(
        f"INSERT INTO {target} ({SCHEDULE_COLUMNS})"
        " SELECT id, tenant_id, due_at, lease_until, claimed_by FROM webhook_subscriptions"
        " WHERE due_at IS NOT NULL OR lease_until IS NOT NULL"
    )
    if _queue_file_attached():
        op.drop_table("webhook_deliveries")  # main's: the queue's is found after it
    else:
        with op.batch_alter_table("webhook_deliveries") as batch:
            for name, *_ in DELIVERY_FOREIGN_KEYS:
                batch.drop_constraint(name, type_="foreignkey")
            batch.create_unique_constraint(
                "uq_webhook_deliveries_subscription_id_event_id", ["subscription_id", "event_id"]
            )
    op.drop_index("ix_webhook_subscriptions_due_at", table_name="webhook_subscriptions")
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("lease_until")
        batch.drop_column("due_at")


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("due_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("lease_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))
    op.create_index("ix_webhook_subscriptions_due_at", "webhook_subscriptions", ["due_at"])
    attached = _queue_file_attached()
    schedules = f"{QUEUE}.webhook_schedules" if attached else "webhook_schedules"
    for column in ("due_at", "lease_until", "claimed_by"):
        op.execute(
            f"UPDATE webhook_subscriptions SET {column} = (SELECT s.{column} FROM {schedules} s"
            " WHERE s.subscription_id = webhook_subscriptions.id)"
        )
    if attached:
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
            *(
                sa.ForeignKeyConstraint(
                    columns,
                    [f"{table}.{column}" for column in referred],
                    name=name,
                    ondelete=ondelete,
                )
                for name, columns, table, referred, ondelete in DELIVERY_FOREIGN_KEYS
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
        )
        op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
        op.execute(
            f"INSERT INTO main.webhook_deliveries ({DELIVERY_COLUMNS})"
            f" SELECT {DELIVERY_COLUMNS} FROM {QUEUE}.webhook_deliveries"
        )
        op.execute(f"DELETE FROM {QUEUE}.webhook_deliveries")
        op.execute(f"DELETE FROM {QUEUE}.webhook_schedules")
        return
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_constraint("uq_webhook_deliveries_subscription_id_event_id", type_="unique")
        for name, columns, table, referred, ondelete in DELIVERY_FOREIGN_KEYS:
            batch.create_foreign_key(name, table, columns, referred, ondelete=ondelete)
    op.drop_index("ix_webhook_schedules_due_at", table_name="webhook_schedules")
    op.drop_table("webhook_schedules")
