"""SCIM provisioning: what an identity provider keeps on users and user groups

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 02:50:00

Users get the identity provider's ``externalId``, a display name, their e-mail values
(folded, framed by newlines, for one portable LIKE) and the rest of their SCIM profile;
user groups an ``externalId``; tenants the static group provisioned users are homed in.
Every new column is NULL for what exists, so nothing is rewritten. Two partial indexes
find a provider's ids, and one on ``lower(login_name)`` answers ``userName eq`` ignoring
case (decision 0051).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from groupd.store.types import JSONDocument, UuidKey

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("provisioning_home_uuid", UuidKey, nullable=True))
    op.add_column("groups", sa.Column("external_id", sa.String(255), nullable=True))
    op.add_column("objects", sa.Column("external_id", sa.String(255), nullable=True))
    op.add_column("objects", sa.Column("display_name", sa.String(255), nullable=True))
    op.add_column("objects", sa.Column("email_keys", sa.String(4000), nullable=True))
    op.add_column("objects", sa.Column("profile", JSONDocument, nullable=True))
    op.create_index(
        "ix_groups_tenant_id_external_id",
        "groups",
        ["tenant_id", "external_id"],
        sqlite_where=sa.text("external_id IS NOT NULL"),
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index(
        "ix_objects_tenant_id_external_id",
        "objects",
        ["tenant_id", "external_id"],
        sqlite_where=sa.text("external_id IS NOT NULL"),
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_index(
        "ix_objects_tenant_id_login_folded",
        "objects",
        ["tenant_id", sa.text("lower(login_name)")],
        sqlite_where=sa.text("login_name IS NOT NULL"),
        postgresql_where=sa.text("login_name IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_objects_tenant_id_login_folded", table_name="objects")
    op.drop_index("ix_objects_tenant_id_external_id", table_name="objects")
    op.drop_index("ix_groups_tenant_id_external_id", table_name="groups")
    for column in ("profile", "email_keys", "display_name", "external_id"):
        op.drop_column("objects", column)
    op.drop_column("groups", "external_id")
    op.drop_column("tenants", "provisioning_home_uuid")
