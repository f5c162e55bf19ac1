"""The schema. Rules that the database can hold live here: keys, uniques, CHECKs.

Internal keys are sequential integers (deletes touch neighbouring pages); the API speaks
the ``uuid`` columns. Every tenant-owned row carries ``tenant_id`` and every reference
between such rows is a composite foreign key on ``(tenant_id, id)``, so the database
itself refuses a link across tenants.

One exception, on SQLite alone: the references to an object. A composite key needs a
unique index on the object's ``(tenant_id, id)`` and another on ``(tenant_id,
member_key)``, and SQLite removes every index entry of a row as it deletes it, where
PostgreSQL leaves them to vacuum. Those two indexes were more than half the cost of
deleting objects on SQLite (measured for migration 0006). There, activations and memberships
reference the object's own key, and triggers (migration 0006, ``SQLITE_TRIGGERS``) refuse
what the composite keys refuse: an object of another tenant, a device as a member, and a
change of an object's tenant or member key while something references it.
"""

from __future__ import annotations

import uuid as uuid_mod
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import (
    DDL,
    Boolean,
    CheckConstraint,
    Constraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    event,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

from groupd.store.types import BigIntKey, JSONDocument, PathString, UTCDateTime, UuidKey

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

GROUP_KINDS = ("static", "user", "policy")
VALUE_TYPES = ("user_id", "string", "action", "ip", "ip_range")
ROLES = ("admin", "editor", "viewer")
OBJECT_KINDS = ("device", "user")
USER_STATUSES = ("active", "inactive")
UNIT_KINDS = ("seat", "user")
CREDENTIAL_KINDS = ("access", "refresh", "api", "session", "service")
OPERATION_STATES = ("accepted", "running", "succeeded", "failed")
# live: shown. deleted: in the recycle bin, hidden, kept whole for a restore.
# deleting: hidden, its rows being removed by an operation (a purge, a permanent delete).
GROUP_STATES = ("live", "deleted", "deleting")

# A live group, compared as a literal in the SQL rather than a bound parameter. SQLite
# prepares a statement again on every run when a parameter is compared with a term of a
# partial index's WHERE (ours say ``state = 'live'``): more than the statement costs. And
# PostgreSQL's generic plan for a prepared statement cannot use a partial index through
# a parameter.
LIVE: ColumnElement[str] = literal_column("'live'", String)


AnyConstraint = TypeVar("AnyConstraint", bound=Constraint | Index)


def only_on(dialect: str, item: AnyConstraint) -> AnyConstraint:
    """A constraint or index that only ``dialect``'s databases have (see the module's
    docstring). The migrations and their comparison with these models skip it elsewhere
    (``created_on``)."""
    item.info["only_on"] = dialect
    item.ddl_if(dialect=dialect)
    return item


def created_on(item: object, dialect: str) -> bool:
    """Whether a database of ``dialect`` has this schema item of the models."""
    info = getattr(item, "info", None) or {}
    return bool(info.get("only_on", dialect) == dialect)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


def table_of(model: type[Base]) -> Table:
    """The Core table of a model, for bulk statements that skip the ORM's bookkeeping."""
    return cast(Table, model.__table__)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The static group SCIM-provisioned users are homed in (None: the default, a protected
    # "Provisioned" group under "All", made on first use; decision 0050).
    provisioning_home_uuid: Mapped[uuid_mod.UUID | None] = mapped_column(UuidKey, nullable=True)


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        CheckConstraint(_in("role", ROLES), name="role"),
        CheckConstraint("failed_logins >= 0", name="failed_logins"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    # Usernames are unique across the installation: a username alone names the tenant.
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Credential(Base):
    """A bearer secret: access/refresh/API tokens, login sessions, service tokens.

    Only the SHA-256 of the secret is stored; the secrets are 256-bit random values, so a
    fast hash is enough (argon2 is for the low-entropy passwords).
    """

    __tablename__ = "credentials"
    __table_args__ = (
        CheckConstraint(_in("kind", CREDENTIAL_KINDS), name="kind"),
        ForeignKeyConstraint(
            ["tenant_id", "account_id"], ["accounts.tenant_id", "accounts.id"], ondelete="CASCADE"
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    account_id: Mapped[int] = mapped_column(BigIntKey, index=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    idle_timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Group(Base):
    """A node of a tenant's forest.

    ``path`` lists the ancestors' ids and the group's own, as ``/1/7/42/``: the subtree of
    a group is ``path >= '/1/7/' AND path < '/1/70'`` (``'0'`` follows ``'/'``), one
    index range scan on both databases. A state other than ``live`` hides a group from
    every read: ``deleted`` while it waits in the recycle bin (``operation_id`` is then the
    delete that put it there), ``deleting`` while an operation removes its rows.
    """

    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        ForeignKeyConstraint(["tenant_id", "parent_id"], ["groups.tenant_id", "groups.id"]),
        CheckConstraint(_in("kind", GROUP_KINDS), name="kind"),
        CheckConstraint(_in("state", GROUP_STATES), name="state"),
        CheckConstraint("depth >= 0", name="depth"),
        CheckConstraint("(kind = 'policy') = (value_type IS NOT NULL)", name="policy_value_type"),
        CheckConstraint(
            "value_type IS NULL OR " + _in("value_type", VALUE_TYPES), name="value_type"
        ),
        CheckConstraint("kind <> 'policy' OR parent_id IS NULL", name="policy_flat"),
        CheckConstraint(
            "linked_entity_ref IS NULL OR linked_entity_type IS NOT NULL", name="linked_entity"
        ),
        CheckConstraint("(parent_id IS NULL) = (depth = 0)", name="root_depth"),
        CheckConstraint("version >= 1", name="version"),
        Index("ix_groups_tenant_path", "tenant_id", "path"),
        Index("ix_groups_parent_id_tenant_id_id", "parent_id", "tenant_id", "id"),
        Index(
            "uq_groups_sibling_name",
            "tenant_id",
            "parent_id",
            "name",
            unique=True,
            sqlite_where=text("state = 'live' AND parent_id IS NOT NULL"),
            postgresql_where=text("state = 'live' AND parent_id IS NOT NULL"),
        ),
        Index(
            "uq_groups_tenant_kind_name",
            "tenant_id",
            "kind",
            "name",
            unique=True,
            sqlite_where=text("state = 'live' AND kind IN ('user', 'policy')"),
            postgresql_where=text("state = 'live' AND kind IN ('user', 'policy')"),
        ),
        Index(
            "uq_groups_static_root",
            "tenant_id",
            unique=True,
            sqlite_where=text("parent_id IS NULL AND kind = 'static'"),
            postgresql_where=text("parent_id IS NULL AND kind = 'static'"),
        ),
        Index(
            "ix_groups_tenant_id_external_id",
            "tenant_id",
            "external_id",
            sqlite_where=text("external_id IS NOT NULL"),
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index(
            "ix_groups_operation_depth",
            "operation_id",
            "depth",
            sqlite_where=text("operation_id IS NOT NULL"),
            postgresql_where=text("operation_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    parent_id: Mapped[int | None] = mapped_column(BigIntKey, nullable=True)
    path: Mapped[str] = mapped_column(PathString)
    depth: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(String(2000), default="")
    value_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    values: Mapped[list[str] | None] = mapped_column(JSONDocument, nullable=True)
    agent_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    linked_entity_type: Mapped[str | None] = mapped_column(String(32), nullable=True)
    linked_entity_ref: Mapped[str | None] = mapped_column(String(255), nullable=True)
    protected: Mapped[bool] = mapped_column(Boolean, default=False)
    # A user group's id in an identity provider (SCIM ``externalId``).
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="live")
    operation_id: Mapped[int | None] = mapped_column(BigIntKey, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class DirectoryObject(Base):
    """A device or a user, homed in exactly one static group.

    ``member_key`` is the object's id when it is a user and NULL for a device: the key
    memberships reference. The database itself then refuses a membership of a device
    (invariant 4), and deleting a device costs no look-up in ``memberships``: PostgreSQL
    fires no foreign-key trigger for a row whose referenced key is NULL, where it
    otherwise runs one query per deleted row (measured for migration 0004).
    """

    __tablename__ = "objects"
    __table_args__ = (
        # The composite keys' targets; SQLite references ``id`` itself (module docstring).
        only_on("postgresql", UniqueConstraint("tenant_id", "id")),
        only_on("postgresql", UniqueConstraint("tenant_id", "member_key")),
        ForeignKeyConstraint(["tenant_id", "home_group_id"], ["groups.tenant_id", "groups.id"]),
        CheckConstraint(_in("kind", OBJECT_KINDS), name="kind"),
        CheckConstraint("(kind = 'user') = (login_name IS NOT NULL)", name="user_login"),
        CheckConstraint("(kind = 'user') = (status IS NOT NULL)", name="user_status"),
        CheckConstraint("status IS NULL OR " + _in("status", USER_STATUSES), name="status"),
        CheckConstraint(
            "(kind = 'user' AND member_key = id) OR (kind <> 'user' AND member_key IS NULL)",
            name="member_key",
        ),
        # kind included: a subtree's objects are counted by kind from the index alone.
        Index(
            "ix_objects_home_group_id_tenant_id_id_kind", "home_group_id", "tenant_id", "id", "kind"
        ),
        Index(
            "uq_objects_login_name",
            "tenant_id",
            "login_name",
            unique=True,
            sqlite_where=text("login_name IS NOT NULL"),
            postgresql_where=text("login_name IS NOT NULL"),
        ),
        # SCIM compares a userName ignoring case (RFC 7643 caseExact false; decision 0051).
        Index(
            "ix_objects_tenant_id_login_folded",
            "tenant_id",
            text("lower(login_name)"),
            sqlite_where=text("login_name IS NOT NULL"),
            postgresql_where=text("login_name IS NOT NULL"),
        ),
        Index(
            "ix_objects_tenant_id_external_id",
            "tenant_id",
            "external_id",
            sqlite_where=text("external_id IS NOT NULL"),
            postgresql_where=text("external_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(255))
    home_group_id: Mapped[int] = mapped_column(BigIntKey)
    login_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    member_key: Mapped[int | None] = mapped_column(BigIntKey, nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    # What an identity provider keeps on a user (SCIM, decision 0051): its own id, the
    # display name, the e-mail values folded and framed by newlines (so that a filter on
    # ``emails.value`` is one portable LIKE), and the rest of its profile as sent.
    external_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    email_keys: Mapped[str | None] = mapped_column(String(4000), nullable=True)
    profile: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Membership(Base):
    """A user's membership of a user group (never its home)."""

    __tablename__ = "memberships"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "group_id"], ["groups.tenant_id", "groups.id"]),
        # A user's member key, which a device lacks: only users are members. On SQLite
        # the object's own key, and a trigger refuses a device or another tenant's object.
        only_on(
            "postgresql",
            ForeignKeyConstraint(
                ["tenant_id", "object_id"], ["objects.tenant_id", "objects.member_key"]
            ),
        ),
        only_on("sqlite", ForeignKeyConstraint(["object_id"], ["objects.id"])),
        Index("ix_memberships_object_id", "object_id"),
    )

    group_id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    object_id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class UserCount(Base):
    """How many users a static group homes, kept by every insert, move and removal of a
    user (``store/user_counts.py``, decision 0055): a tenant's live users are the sum
    over its live homes, so a count of them reads a few rows, not every user.

    No foreign key to the home: a purge removes groups and the delete pays nothing per
    group for this table; a home's row stays after it, read by nothing (only live homes
    are summed) and checked by the invariants while the home exists.
    """

    __tablename__ = "user_counts"
    __table_args__ = (CheckConstraint("users >= 0", name="users"),)

    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    home_group_id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    users: Mapped[int] = mapped_column(Integer)


class Licence(Base):
    """A unit pool. ``used_units`` is kept equal to the sum of its activations."""

    __tablename__ = "licences"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        UniqueConstraint("tenant_id", "product"),
        CheckConstraint(_in("unit_kind", UNIT_KINDS), name="unit_kind"),
        CheckConstraint("total_units >= 0", name="total_units"),
        CheckConstraint("used_units >= 0 AND used_units <= total_units", name="used_units"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    product: Mapped[str] = mapped_column(String(255))
    unit_kind: Mapped[str] = mapped_column(String(16))
    total_units: Mapped[int] = mapped_column(Integer)
    used_units: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Activation(Base):
    """Units of a licence consumed by an object.

    When an object is deleted without releasing its units, the activation stays, orphaned
    (``object_id`` NULL, ``orphaned_at`` set), still counted, until released.

    An activation of an object in the recycle bin is left as it is: when its delete gave
    the units back, its bin entry says so (``BinEntry.released``), and ``units`` is what a
    restore takes again (invariant 3 leaves such activations out).
    """

    __tablename__ = "activations"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "licence_id"], ["licences.tenant_id", "licences.id"]),
        only_on(
            "postgresql",
            ForeignKeyConstraint(["tenant_id", "object_id"], ["objects.tenant_id", "objects.id"]),
        ),
        # On SQLite a trigger refuses an object of another tenant (module docstring).
        only_on("sqlite", ForeignKeyConstraint(["object_id"], ["objects.id"])),
        CheckConstraint("units > 0", name="units"),
        CheckConstraint("(object_id IS NULL) = (orphaned_at IS NOT NULL)", name="orphaned"),
        # An activation is addressed under its licence: this one index finds it by uuid
        # and lists a licence's activations in uuid order (time-ordered, migration 0009).
        Index("uq_activations_licence_id_uuid", "licence_id", "uuid", unique=True),
        # One activation per object and licence; leading with the object, it also serves
        # every lookup by object (a deleted object's foreign-key check among them).
        Index(
            "uq_activations_object_id_licence_id",
            "object_id",
            "licence_id",
            unique=True,
            sqlite_where=text("object_id IS NOT NULL"),
            postgresql_where=text("object_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    licence_id: Mapped[int] = mapped_column(BigIntKey)
    object_id: Mapped[int | None] = mapped_column(BigIntKey, nullable=True)
    object_uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey)
    object_name: Mapped[str] = mapped_column(String(255))
    units: Mapped[int] = mapped_column(Integer)
    orphaned_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Operation(Base):
    """Durable record of accepted long work; its ``uuid`` is the ``response-id``."""

    __tablename__ = "operations"
    __table_args__ = (
        CheckConstraint(_in("state", OPERATION_STATES), name="state"),
        Index("ix_operations_state_lease", "state", "lease_until"),
        Index("ix_operations_tenant_id_id", "tenant_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(32))
    target_uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey)
    target_name: Mapped[str] = mapped_column(String(255))
    params: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    progress: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    result_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    result_body: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument, nullable=True)
    actor: Mapped[str] = mapped_column(String(150))
    request_id: Mapped[str] = mapped_column(String(64))
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_pending_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    collected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BinEntry(Base):
    """A subtree in the recycle bin: one row per deleted root (docs/decisions/0030).

    The subtree's rows stay where they were, hidden (groups ``deleted``, marked with the
    delete's ``operation_id``); this row keeps what the bin shows and what a restore
    needs: who deleted it and when, when it is purged, what it held (``counts``), and the
    units its activations held per licence (``units``). ``released``: those units are
    back in their licences (the delete asked for it and has run); a restore takes them
    again. While ``purging``, ``operation_id`` is the purge's, which marks the groups then.
    """

    __tablename__ = "bin_entries"
    __table_args__ = (
        # No foreign key to the root: the entry outlives its rows by the purge's last
        # step, which removes both (invariant 7 checks that they agree until then).
        Index("ix_bin_entries_tenant_id_id", "tenant_id", "id"),
        Index("ix_bin_entries_purge_at", "purge_at"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    # The deleted root; its uuid is the entry's id on the API.
    group_id: Mapped[int] = mapped_column(BigIntKey, unique=True)
    group_uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    # The delete that put the subtree here: its groups carry this operation_id.
    operation_id: Mapped[int] = mapped_column(BigIntKey)
    operation_uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey)
    path_names: Mapped[list[str]] = mapped_column(JSONDocument, default=list)
    release_units: Mapped[bool] = mapped_column(Boolean)
    released: Mapped[bool] = mapped_column(Boolean, default=False)
    purging: Mapped[bool] = mapped_column(Boolean, default=False)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    units: Mapped[list[dict[str, Any]]] = mapped_column(JSONDocument, default=list)
    # Set while a restore of the entry is accepted and not yet run.
    restore_operation_id: Mapped[int | None] = mapped_column(BigIntKey, nullable=True)
    deleted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    deleted_by: Mapped[str] = mapped_column(String(150))
    purge_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEvent(Base):
    """Append-only record of who did what, from where, and with what outcome."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_tenant_id_id", "tenant_id", "id"),
        Index("ix_audit_events_tenant_id_target_uuid", "tenant_id", "target_uuid"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(64))
    target_type: Mapped[str] = mapped_column(String(32))
    target_uuid: Mapped[uuid_mod.UUID | None] = mapped_column(UuidKey, nullable=True)
    target_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    source: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32))
    counts: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    detail: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


WEBHOOK_FORMATS = ("standard", "cloudevents")
DELIVERY_STATES = ("pending", "succeeded", "failed")


class OutboxEvent(Base):
    """An event of a committed change, written in the change's own transaction (the
    audit trail's seam, services/webhooks/outbox.py). ``relayed`` is false until the relay
    has given it to each matching subscription as a delivery (decision 0060)."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        Index(
            "ix_outbox_events_unrelayed",
            "id",
            sqlite_where=text("NOT relayed"),
            postgresql_where=text("NOT relayed"),
        ),
        # SQLite would give a removed last row's key again, and a subscription is told of
        # the events after the last key it saw (``after_event_id``): keys never repeat.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    relayed: Mapped[bool] = mapped_column(Boolean, default=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WebhookSubscription(Base):
    """A tenant's webhook: where its events go, which ones, signed with which secret.
    When its deliveries are due and who sends them is its ``WebhookSchedule``'s."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        UniqueConstraint("tenant_id", "id"),
        CheckConstraint(_in("format", WEBHOOK_FORMATS), name="format"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(JSONDocument)
    description: Mapped[str] = mapped_column(String(2000), default="")
    format: Mapped[str] = mapped_column(String(16))
    # Sealed with GROUPD_WEBHOOK_SECRET_KEYS when set (docs/security.md).
    secret: Mapped[str] = mapped_column(String(500))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The last outbox event before the subscription: it is told only of later ones.
    after_event_id: Mapped[int] = mapped_column(BigIntKey, default=0)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The delivery queue: the tables only the relay and the delivery threads write, row by
# row as events go out. On PostgreSQL they sit beside the others; on SQLite in a file of
# their own (``groupd.store.queue``), so that their writes never take the lock the API's
# writes wait for (decision 0078). Hence no foreign keys: SQLite keeps none across files,
# and the services remove a subscription's rows with it.
QUEUE_TABLES = ("webhook_schedules", "webhook_deliveries")


class WebhookSchedule(Base):
    """When a subscription's next delivery may be tried (``due_at``; NULL: nothing
    pending), and the delivery thread that holds it (``claimed_by`` until
    ``lease_until``): one subscription's deliveries go out one at a time, in order
    (decision 0061)."""

    __tablename__ = "webhook_schedules"
    __table_args__ = (Index("ix_webhook_schedules_due_at", "due_at"),)

    subscription_id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=False)
    tenant_id: Mapped[int] = mapped_column(BigIntKey)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str | None] = mapped_column(String(100), nullable=True)


class WebhookDelivery(Base):
    """One event for one subscription; sent in ``id`` order, retried until it succeeds
    or its subscription gives up. An event is given to a subscription once: a relay
    that stopped between giving it and marking it relayed gives it again, and the
    second copy is dropped (``uq_webhook_deliveries_subscription_id_event_id``)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(_in("state", DELIVERY_STATES), name="state"),
        CheckConstraint("attempts >= 0", name="attempts"),
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
        Index(
            "ix_webhook_deliveries_pending",
            "subscription_id",
            "id",
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True)
    uuid: Mapped[uuid_mod.UUID] = mapped_column(UuidKey, unique=True)
    tenant_id: Mapped[int] = mapped_column(BigIntKey)
    subscription_id: Mapped[int] = mapped_column(BigIntKey)
    event_id: Mapped[int] = mapped_column(BigIntKey)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class SystemFlag(Base):
    """Installation-wide switches every process reads (maintenance mode)."""

    __tablename__ = "system_flags"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


def _refusal(name: str, timing: str, table: str, when: str, message: str) -> tuple[str, str]:
    return name, (
        f"CREATE TRIGGER {name} {timing} ON {table} WHEN {when}"
        f" BEGIN SELECT RAISE(ABORT, '{message}'); END"
    )


_OBJECT_OF_TENANT = (
    "SELECT 1 FROM objects WHERE objects.id = NEW.object_id AND objects.tenant_id = NEW.tenant_id"
)
_NOT_AN_ACTIVATIONS_OBJECT = f"NEW.object_id IS NOT NULL AND NOT EXISTS ({_OBJECT_OF_TENANT})"
_NOT_A_MEMBER = f"NOT EXISTS ({_OBJECT_OF_TENANT} AND objects.member_key IS NOT NULL)"
_TENANT_CHANGED = "NEW.tenant_id IS NOT OLD.tenant_id"
_ACTIVATED = "EXISTS (SELECT 1 FROM activations WHERE activations.object_id = OLD.id)"
_A_MEMBER = "EXISTS (SELECT 1 FROM memberships WHERE memberships.object_id = OLD.id)"

# SQLite's stand-ins for the composite keys to an object (module docstring): each refuses
# what one of them refuses. Migration 0006 creates them (tests/test_migrations.py checks
# that a migrated database has exactly these).
SQLITE_TRIGGERS: dict[str, str] = dict(
    (
        _refusal(
            "tg_activations_object_of_tenant_on_insert",
            "BEFORE INSERT",
            "activations",
            _NOT_AN_ACTIVATIONS_OBJECT,
            "activations.object_id: no object of the tenant has that id",
        ),
        _refusal(
            "tg_activations_object_of_tenant_on_update",
            "BEFORE UPDATE OF tenant_id, object_id",
            "activations",
            _NOT_AN_ACTIVATIONS_OBJECT,
            "activations.object_id: no object of the tenant has that id",
        ),
        _refusal(
            "tg_memberships_user_of_tenant_on_insert",
            "BEFORE INSERT",
            "memberships",
            _NOT_A_MEMBER,
            "memberships.object_id: no user of the tenant has that id",
        ),
        _refusal(
            "tg_memberships_user_of_tenant_on_update",
            "BEFORE UPDATE OF tenant_id, object_id",
            "memberships",
            _NOT_A_MEMBER,
            "memberships.object_id: no user of the tenant has that id",
        ),
        _refusal(
            "tg_objects_referenced_keys_on_update",
            "BEFORE UPDATE OF tenant_id, member_key",
            "objects",
            f"({_TENANT_CHANGED} AND {_ACTIVATED}) OR (({_TENANT_CHANGED}"
            f" OR NEW.member_key IS NOT OLD.member_key) AND {_A_MEMBER})",
            "objects: the tenant or member key of an object that is referenced",
        ),
    )
)

for _trigger in SQLITE_TRIGGERS.values():
    event.listen(
        Base.metadata,
        "after_create",
        DDL(_trigger).execute_if(dialect="sqlite"),  # type: ignore[no-untyped-call]
    )
