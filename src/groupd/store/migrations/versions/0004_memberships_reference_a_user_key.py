"""memberships reference a key only users have

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 06:00:00

``objects.member_key`` is the object's id for a user and NULL for a device, kept so by a
check constraint, and unique per tenant. Memberships now reference
``(tenant_id, member_key)`` instead of ``(tenant_id, id)``:

- the database itself refuses a membership of a device (only users are members), which
  the services alone enforced before;
- deleting a device no longer looks for its memberships: PostgreSQL queues no
  foreign-key check for a deleted row whose referenced key is NULL, where it ran one
  query a row before (about 5.6 s for a million devices when this was written:
  docs/benchmarks.md in git history).

On SQLite the objects table is copied (batch mode) to gain its new constraints; the
upgrade runs with foreign keys off and checks them all before it commits
(``groupd.store.migrate``).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MEMBER_KEY_RULE = "(kind = 'user' AND member_key = id) OR (kind <> 'user' AND member_key IS NULL)"


def upgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("fk_memberships_tenant_id_object_id_objects"), type_="foreignkey"
        )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.add_column(sa.Column("member_key", KEY, nullable=True))
    op.execute("UPDATE objects SET member_key = id WHERE kind = 'user'")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_check_constraint(op.f("ck_objects_member_key"), MEMBER_KEY_RULE)
        batch_op.create_unique_constraint(
            op.f("uq_objects_tenant_id_member_key"), ["tenant_id", "member_key"]
        )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_memberships_tenant_id_object_id_objects"),
            "objects",
            ["tenant_id", "object_id"],
            ["tenant_id", "member_key"],
        )


def downgrade() -> None:
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_constraint(
            op.f("fk_memberships_tenant_id_object_id_objects"), type_="foreignkey"
        )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_objects_tenant_id_member_key"), type_="unique")
        batch_op.drop_constraint(op.f("ck_objects_member_key"), type_="check")
        batch_op.drop_column("member_key")
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_foreign_key(
            op.f("fk_memberships_tenant_id_object_id_objects"),
            "objects",
            ["tenant_id", "object_id"],
            ["tenant_id", "id"],
        )
