"""Memberships named by the thousand: ids bound as one parameter, rows inserted from keys.

An identity provider's PATCH may name a thousand users (decision 0053). An expanding
``IN`` binds a parameter per id, and SQLAlchemy writes the statement's SQL again at every
execution; on PostgreSQL the ids go as one array (``= ANY``) instead, and the
memberships are inserted from the member keys already resolved (one array, ``unnest``;
a JSON array on SQLite) rather than by joining the users again (decision 0058).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from uuid import UUID

from sqlalchemy import Uuid, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import aliased

from groupd.store.db import UnitOfWork
from groupd.store.keys import KeyList
from groupd.store.models import LIVE, DirectoryObject, Group, Membership

Home = aliased(Group)


def _on_postgresql(uow: UnitOfWork) -> bool:
    return uow.session.get_bind().dialect.name == "postgresql"


def live_member_keys(
    uow: UnitOfWork, *, tenant_id: int, uuids: Collection[UUID]
) -> dict[UUID, int]:
    """The member keys of those of ``uuids`` that are live users of the tenant."""
    if _on_postgresql(uow):
        named = DirectoryObject.uuid == any_(bindparam("uuids", list(uuids), type_=ARRAY(Uuid())))
    else:
        named = DirectoryObject.uuid.in_(uuids)
    live_homes = select(Home.id).where(
        Home.tenant_id == tenant_id, Home.kind == "static", Home.state == LIVE
    )
    rows = uow.session.execute(
        select(DirectoryObject.uuid, DirectoryObject.member_key).where(
            DirectoryObject.tenant_id == tenant_id,
            named,
            DirectoryObject.member_key.is_not(None),
            DirectoryObject.home_group_id.in_(live_homes),
        )
    )
    return {user_uuid: int(key) for user_uuid, key in rows if key is not None}


_ADD = {
    "postgresql": "SELECT :group_key, key, :tenant_id, :now FROM unnest(:keys) AS key",
    # "WHERE true": SQLite's parser would read ON CONFLICT as a join's ON without it.
    "sqlite": "SELECT :group_key, value, :tenant_id, :now FROM json_each(:keys) WHERE true",
}


def add_memberships(
    uow: UnitOfWork, *, tenant_id: int, group_key: int, member_keys: Collection[int], now: datetime
) -> int:
    """Make the users with ``member_keys`` members of the group, those not members
    already: one statement. Returns how many memberships are new."""
    if not member_keys:
        return 0
    rows = _ADD["postgresql" if _on_postgresql(uow) else "sqlite"]
    statement = text(
        "INSERT INTO memberships (group_id, object_id, tenant_id, created_at) "
        f"{rows} ON CONFLICT (group_id, object_id) DO NOTHING"
    ).bindparams(
        bindparam("keys", type_=KeyList()),
        bindparam("now", type_=Membership.created_at.type),
    )
    result = uow.session.execute(
        statement,
        {
            "group_key": group_key,
            "tenant_id": tenant_id,
            "now": now,
            "keys": sorted(set(member_keys)),
        },
    )
    return int(getattr(result, "rowcount", 0) or 0)
