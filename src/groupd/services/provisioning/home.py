"""Where provisioned users live: one static group per tenant (decision 0050).

A tenant may name the group (``set_provisioning_home``). Otherwise the first provisioned
user makes a protected "Provisioned" group under "All", so that no delete of a static
subtree takes an identity provider's users along by accident.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import select, update

from groupd.errors import Conflict, InvalidInput, NotFound
from groupd.services import groups
from groupd.services.common import Actor, parse_uuid, system_actor
from groupd.store.db import UnitOfWork
from groupd.store.models import LIVE, Group, Tenant

PROVISIONED_NAME = "Provisioned"


def provisioning_home(uow: UnitOfWork, *, actor: Actor, now: datetime) -> UUID:
    """The uuid of the live static group new provisioned users are homed in, made on
    first use when the tenant names none."""
    chosen = uow.session.execute(
        select(Tenant.provisioning_home_uuid).where(Tenant.id == actor.tenant_id)
    ).scalar_one()
    if chosen is not None:
        live = uow.session.execute(
            select(Group.uuid).where(
                Group.uuid == chosen,
                Group.tenant_id == actor.tenant_id,
                Group.kind == "static",
                Group.state == LIVE,
            )
        ).scalar_one_or_none()
        if live is None:
            raise Conflict(
                "the provisioning home group was deleted; an admin names another",
                code="provisioning_home_gone",
            )
        return chosen
    root, root_uuid = uow.session.execute(
        select(Group.id, Group.uuid).where(
            Group.tenant_id == actor.tenant_id, Group.parent_id.is_(None), Group.kind == "static"
        )
    ).one()
    found = uow.session.execute(
        select(Group.uuid).where(
            Group.tenant_id == actor.tenant_id,
            Group.parent_id == root,
            Group.name == PROVISIONED_NAME,
            Group.state == LIVE,
        )
    ).scalar_one_or_none()
    if found is not None:
        return found
    made = groups.create_group(
        uow,
        actor=system_actor(actor.tenant_id),
        spec=groups.GroupSpec(
            name=PROVISIONED_NAME,
            parent_uuid=root_uuid,
            kind="static",
            description="Users an identity provider provisions (SCIM)",
            protected=True,
        ),
        now=now,
    )
    return made.uuid


def set_provisioning_home(uow: UnitOfWork, *, actor: Actor, group_id: str | None) -> UUID | None:
    """Name the static group new provisioned users are homed in (admin); None goes back
    to the default "Provisioned" group. Users already provisioned stay where they are."""
    actor.require("admin")
    if group_id is None:
        key = None
    else:
        key = parse_uuid(group_id, what="group")
        kind = uow.session.execute(
            select(Group.kind).where(
                Group.uuid == key, Group.tenant_id == actor.tenant_id, Group.state == LIVE
            )
        ).scalar_one_or_none()
        if kind is None:
            raise NotFound(f"no group '{group_id}'")
        if kind != "static":
            raise InvalidInput(f"users live in static groups; '{group_id}' is a {kind} group")
    uow.session.execute(
        update(Tenant).where(Tenant.id == actor.tenant_id).values(provisioning_home_uuid=key)
    )
    return key
