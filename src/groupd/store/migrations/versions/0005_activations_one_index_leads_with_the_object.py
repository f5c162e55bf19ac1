"""activations: one index leads with the object

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 08:10:00

Activations had two indexes over ``object_id``: a plain one, for the lookups by object
(the foreign-key check of a deleted object, an object's activations), and the partial
unique ``(licence_id, object_id)``, which keeps one activation per object and licence.
The unique index now leads with the object, ``(object_id, licence_id)``, and serves both;
the plain one goes. The same rule, one index entry fewer per activation: every insert
and every SQLite delete writes one entry less (docs/benchmarks.md in git history). The
``WHERE object_id IS NOT NULL`` is implied by every lookup by object (``object_id = ?``),
so the partial index answers them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

LIVE_ONLY = "object_id IS NOT NULL"


def upgrade() -> None:
    op.create_index(
        "uq_activations_object_id_licence_id",
        "activations",
        ["object_id", "licence_id"],
        unique=True,
        sqlite_where=sa.text(LIVE_ONLY),
        postgresql_where=sa.text(LIVE_ONLY),
    )
    op.drop_index("uq_activations_licence_object", table_name="activations")
    op.drop_index("ix_activations_object_id", table_name="activations")


def downgrade() -> None:
    op.create_index("ix_activations_object_id", "activations", ["object_id"], unique=False)
    op.create_index(
        "uq_activations_licence_object",
        "activations",
        ["licence_id", "object_id"],
        unique=True,
        sqlite_where=sa.text(LIVE_ONLY),
        postgresql_where=sa.text(LIVE_ONLY),
    )
    op.drop_index("uq_activations_object_id_licence_id", table_name="activations")
