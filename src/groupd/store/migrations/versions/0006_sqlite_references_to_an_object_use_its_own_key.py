"""SQLite: references to an object use its own key, and triggers keep the tenant's rules

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 11:00:00

On SQLite only; PostgreSQL's schema does not change.

Activations referenced an object by ``(tenant_id, id)`` and memberships by ``(tenant_id,
member_key)``: composite keys, so that the database itself refused a link across tenants
and a device as a member. Their targets are two unique indexes on ``objects`` that
nothing else reads, and SQLite removes every index entry of a row as it deletes it: for a
million devices those two indexes cost more than half of the objects' ``DELETE``
(measured then: docs/benchmarks.md in git history). PostgreSQL leaves index entries to
vacuum, and keeps its keys.

On SQLite, both now reference ``objects.id``, the two indexes go, and triggers refuse
what the composite keys refused (``groupd.store.models.SQLITE_TRIGGERS``; the statements
are repeated here as they were when this migration was written):

- an activation or a membership naming an object of another tenant;
- a membership of a device (an object without a member key);
- a change of an object's tenant or member key while something references it.

The tables are copied (batch mode), with foreign keys off and all of them checked before
the commit (``groupd.store.migrate``): 16 s for a million devices with activations on
the benchmark VM (docs/benchmarks.md in git history).
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_OBJECT_OF_TENANT = (
    "SELECT 1 FROM objects WHERE objects.id = NEW.object_id AND objects.tenant_id = NEW.tenant_id"
)
_NOT_AN_ACTIVATIONS_OBJECT = f"NEW.object_id IS NOT NULL AND NOT EXISTS ({_OBJECT_OF_TENANT})"
_NOT_A_MEMBER = f"NOT EXISTS ({_OBJECT_OF_TENANT} AND objects.member_key IS NOT NULL)"
_TENANT_CHANGED = "NEW.tenant_id IS NOT OLD.tenant_id"
_ACTIVATED = "EXISTS (SELECT 1 FROM activations WHERE activations.object_id = OLD.id)"
_A_MEMBER = "EXISTS (SELECT 1 FROM memberships WHERE memberships.object_id = OLD.id)"

# name: (timing, table, when, message)
TRIGGERS = {
    "tg_activations_object_of_tenant_on_insert": (
        "BEFORE INSERT",
        "activations",
        _NOT_AN_ACTIVATIONS_OBJECT,
        "activations.object_id: no object of the tenant has that id",
    ),
    "tg_activations_object_of_tenant_on_update": (
        "BEFORE UPDATE OF tenant_id, object_id",
        "activations",
        _NOT_AN_ACTIVATIONS_OBJECT,
        "activations.object_id: no object of the tenant has that id",
    ),
    "tg_memberships_user_of_tenant_on_insert": (
        "BEFORE INSERT",
        "memberships",
        _NOT_A_MEMBER,
        "memberships.object_id: no user of the tenant has that id",
    ),
    "tg_memberships_user_of_tenant_on_update": (
        "BEFORE UPDATE OF tenant_id, object_id",
        "memberships",
        _NOT_A_MEMBER,
        "memberships.object_id: no user of the tenant has that id",
    ),
    "tg_objects_referenced_keys_on_update": (
        "BEFORE UPDATE OF tenant_id, member_key",
        "objects",
        f"({_TENANT_CHANGED} AND {_ACTIVATED}) OR (({_TENANT_CHANGED}"
        f" OR NEW.member_key IS NOT OLD.member_key) AND {_A_MEMBER})",
        "objects: the tenant or member key of an object that is referenced",
    ),
}

# table: (the composite key's name, the columns of objects it references)
COMPOSITE_KEYS = {
    "activations": ("fk_activations_tenant_id_object_id_objects", ["tenant_id", "id"]),
    "memberships": ("fk_memberships_tenant_id_object_id_objects", ["tenant_id", "member_key"]),
}


def _on_sqlite() -> bool:
    return op.get_context().dialect.name == "sqlite"


def upgrade() -> None:
    if not _on_sqlite():
        return
    for table, (composite, _) in COMPOSITE_KEYS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(composite, type_="foreignkey")
            batch_op.create_foreign_key(
                f"fk_{table}_object_id_objects", "objects", ["object_id"], ["id"]
            )
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.drop_constraint("uq_objects_tenant_id_id", type_="unique")
        batch_op.drop_constraint("uq_objects_tenant_id_member_key", type_="unique")
    # After the copies: copying a table drops its triggers.
    for name, (timing, table, when, message) in TRIGGERS.items():
        op.execute(
            f"CREATE TRIGGER {name} {timing} ON {table} WHEN {when}"
            f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )


def downgrade() -> None:
    if not _on_sqlite():
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    with op.batch_alter_table("objects", schema=None) as batch_op:
        batch_op.create_unique_constraint("uq_objects_tenant_id_id", ["tenant_id", "id"])
        batch_op.create_unique_constraint(
            "uq_objects_tenant_id_member_key", ["tenant_id", "member_key"]
        )
    for table, (composite, target) in COMPOSITE_KEYS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"fk_{table}_object_id_objects", type_="foreignkey")
            batch_op.create_foreign_key(composite, "objects", ["tenant_id", "object_id"], target)
