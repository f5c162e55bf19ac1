"""objects by home group: the index covers kind

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:50:00

The dry run and the delete's totals count a subtree's objects by kind. With ``kind`` in
the ``(home_group_id, id)`` index that count is an index-only range per group instead of
a heap fetch per object (on PostgreSQL, random reads over the whole table). The new index
replaces the old one, whose every use (ranges on ``home_group_id``, ordered by ``id``) it
serves as well: still one index entry per object, a few bytes wider; ``kind`` never
changes, so updates are unaffected.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_index(
            "ix_objects_home_group_id_id_kind", ["home_group_id", "id", "kind"], unique=False
        )
        batch_op.drop_index("ix_objects_home_group_id_id")


def downgrade() -> None:
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_index("ix_objects_home_group_id_id", ["home_group_id", "id"], unique=False)
        batch_op.drop_index("ix_objects_home_group_id_id_kind")
