"""kept counts of users per home group

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 05:40:00

``user_counts`` holds how many users each static group homes, kept by every insert, move
and removal of a user, so that a SCIM page's ``totalResults`` sums a few rows instead of
counting every user of the tenant (decision 0055). Filled from the objects that exist.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_counts",
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "home_group_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.CheckConstraint("users >= 0", name=op.f("ck_user_counts_users")),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_user_counts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("tenant_id", "home_group_id", name=op.f("pk_user_counts")),
    )
    op.execute(
        "INSERT INTO user_counts (tenant_id, home_group_id, users)"
        " SELECT tenant_id, home_group_id, count(*) FROM objects WHERE kind = 'user'"
        " GROUP BY tenant_id, home_group_id"
    )


def downgrade() -> None:
    op.drop_table("user_counts")
