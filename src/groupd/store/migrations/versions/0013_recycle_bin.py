"""the recycle bin: groups kept ``deleted``, bin entries

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 02:40:00

A delete now puts its subtree in the recycle bin (docs/decisions/0030): the rows stay,
hidden, until their purge. Groups gain the state ``deleted`` (in the bin) beside
``live`` and ``deleting`` (being removed), and ``bin_entries`` holds one row per deleted
root, with the units its activations held per licence and whether they were given back.

On SQLite a CHECK is part of the table's definition: ``groups`` is copied with the new
one (batch mode), its triggers' neighbours kept aside and made again as in 0009.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

import groupd.store.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STATES = "state IN ('live', 'deleted', 'deleting')"
OLD_STATES = "state IN ('live', 'deleting')"


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _set_aside_triggers() -> list[str]:
    triggers = [
        (str(name), str(sql))
        for name, sql in op.get_bind().execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        )
    ]
    for name, _ in triggers:
        op.execute(f"DROP TRIGGER {name}")
    return [sql for _, sql in triggers]


def _replace_state_check(states: str) -> None:
    if _on_sqlite():
        triggers = _set_aside_triggers()
        with op.batch_alter_table("groups", schema=None) as batch_op:
            batch_op.drop_constraint(op.f("ck_groups_state"), type_="check")
            batch_op.create_check_constraint(op.f("ck_groups_state"), states)
        for sql in triggers:
            op.execute(sql)
    else:
        op.drop_constraint(op.f("ck_groups_state"), "groups", type_="check")
        op.create_check_constraint(op.f("ck_groups_state"), "groups", states)


def upgrade() -> None:
    _replace_state_check(STATES)
    op.create_table(
        "bin_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "tenant_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("group_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("group_uuid", groupd.store.types.UuidKey(), nullable=False),
        sa.Column(
            "operation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("operation_uuid", groupd.store.types.UuidKey(), nullable=False),
        sa.Column(
            "path_names",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("release_units", sa.Boolean(), nullable=False),
        sa.Column("released", sa.Boolean(), nullable=False),
        sa.Column("purging", sa.Boolean(), nullable=False),
        sa.Column(
            "counts",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "units",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "restore_operation_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=True,
        ),
        sa.Column("deleted_at", groupd.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("deleted_by", sa.String(length=150), nullable=False),
        sa.Column("purge_at", groupd.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_bin_entries_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bin_entries")),
        sa.UniqueConstraint("group_id", name=op.f("uq_bin_entries_group_id")),
        sa.UniqueConstraint("group_uuid", name=op.f("uq_bin_entries_group_uuid")),
    )
    op.create_index("ix_bin_entries_tenant_id_id", "bin_entries", ["tenant_id", "id"])
    op.create_index("ix_bin_entries_purge_at", "bin_entries", ["purge_at"])


def downgrade() -> None:
    # The older schema cannot hold what the bin holds: purge it first (groupd bin purge).
    held = op.get_bind().execute(sa.text("SELECT count(*) FROM bin_entries")).scalar_one()
    if held:
        raise RuntimeError(f"the recycle bin holds {held} subtree(s): purge them first")
    op.drop_index("ix_bin_entries_purge_at", table_name="bin_entries")
    op.drop_index("ix_bin_entries_tenant_id_id", table_name="bin_entries")
    op.drop_table("bin_entries")
    _replace_state_check(OLD_STATES)
