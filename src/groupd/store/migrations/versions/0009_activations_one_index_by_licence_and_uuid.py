"""activations: one unique index, (licence_id, uuid), serves lookups and listings

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25 16:30:00

An activation is only ever addressed under its licence
(``/api/v1/licenses/{id}/activations/{activationId}``), and a licence's activations are
listed page by page. That took two indexes besides the object's: the unique ``uuid`` and
``(licence_id, id)``. One unique index on ``(licence_id, uuid)`` now does both: the
lookups by licence and uuid, and the listing, in uuid order. Uuids are time-ordered
(version 7, and increasing within a process), so that order is creation order. Each
activation written or deleted touches one index fewer
(docs/decisions/0001-sequential-keys-uuids-on-the-wire.md).

A uuid is now unique within its licence, which is how the API names it; groupd makes
every uuid itself, so none repeats anyway.

On SQLite the ``uuid`` column's own ``UNIQUE`` is part of the table's definition: the
table is copied without it (batch mode). Copying a table drops its triggers, and a
trigger of another table that names it stops the copy's rename, so every trigger is
kept aside and made again after the copy, as it was.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def _set_aside_triggers() -> list[tuple[str, str]]:
    triggers = [
        (str(name), str(sql))
        for name, sql in op.get_bind().execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY name")
        )
    ]
    for name, _ in triggers:
        op.execute(f"DROP TRIGGER {name}")
    return triggers


def _make_again(triggers: list[tuple[str, str]]) -> None:
    for _, sql in triggers:
        op.execute(sql)


def upgrade() -> None:
    op.create_index(
        "uq_activations_licence_id_uuid", "activations", ["licence_id", "uuid"], unique=True
    )
    op.drop_index("ix_activations_licence_id_id", table_name="activations")
    if _on_sqlite():
        triggers = _set_aside_triggers()
        with op.batch_alter_table("activations", schema=None) as batch_op:
            batch_op.drop_constraint("uq_activations_uuid", type_="unique")
        _make_again(triggers)
    else:
        op.drop_constraint("uq_activations_uuid", "activations", type_="unique")


def downgrade() -> None:
    if _on_sqlite():
        triggers = _set_aside_triggers()
        with op.batch_alter_table("activations", schema=None) as batch_op:
            batch_op.create_unique_constraint("uq_activations_uuid", ["uuid"])
        _make_again(triggers)
    else:
        op.create_unique_constraint("uq_activations_uuid", "activations", ["uuid"])
    op.create_index("ix_activations_licence_id_id", "activations", ["licence_id", "id"])
    op.drop_index("uq_activations_licence_id_uuid", table_name="activations")
