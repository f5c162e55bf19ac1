"""Licences (unit pools) and activations. ``used_units`` always equals the sum of the
licence's activations: every change to one is made with the other, in one transaction,
and the database CHECK keeps ``0 <= used <= total``."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from groupd.errors import Conflict, InsufficientUnits, InvalidInput, NotFound
from groupd.services import audit
from groupd.services.common import (
    Actor,
    Page,
    check_limit,
    decode_cursor,
    decode_uuid_cursor,
    encode_cursor,
    encode_uuid_cursor,
    new_uuid,
    parse_uuid,
)
from groupd.store.db import UnitOfWork
from groupd.store.models import (
    LIVE,
    UNIT_KINDS,
    Activation,
    DirectoryObject,
    Group,
    Licence,
    table_of,
)
from groupd.store.tree import subtree_bounds
from groupd.values import clean_name

if TYPE_CHECKING:
    from groupd.services.objects import ActivationSpec

UNITS_MAX = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LicenceView:
    id: int
    uuid: UUID
    product: str
    unit_kind: str
    total_units: int
    used_units: int

    @property
    def free_units(self) -> int:
        return self.total_units - self.used_units


@dataclass(frozen=True, slots=True)
class ActivationView:
    id: int
    uuid: UUID
    licence_uuid: UUID
    object_uuid: UUID
    object_name: str
    units: int
    orphaned: bool
    created_at: datetime


def _licence_view(licence: Licence) -> LicenceView:
    return LicenceView(
        licence.id,
        licence.uuid,
        licence.product,
        licence.unit_kind,
        licence.total_units,
        licence.used_units,
    )


def create_licence(
    uow: UnitOfWork,
    *,
    actor: Actor,
    product: str,
    unit_kind: str,
    total_units: int,
    now: datetime,
) -> LicenceView:
    """A new unit pool; ``product`` is unique in the tenant (vendor APIs name pools).
    Recorded as ``license.create``."""
    product = clean_name(product, field="product")
    if unit_kind not in UNIT_KINDS:
        raise InvalidInput(f"unitKind must be one of {', '.join(UNIT_KINDS)}", field="unitKind")
    if not 0 <= total_units <= UNITS_MAX:
        raise InvalidInput(f"totalUnits must be between 0 and {UNITS_MAX}", field="totalUnits")
    licence = Licence(
        uuid=uuid.uuid4(),
        tenant_id=actor.tenant_id,
        product=product,
        unit_kind=unit_kind,
        total_units=total_units,
        used_units=0,
        created_at=now,
    )
    uow.session.add(licence)
    try:
        with uow.session.begin_nested():
            uow.session.flush()
    except IntegrityError:
        raise Conflict(f"a licence for '{product}' already exists", code="name_taken") from None
    view = _licence_view(licence)
    audit.record_event(
        uow,
        actor=actor,
        action="license.create",
        target_type="license",
        target_uuid=view.uuid,
        target_name=view.product,
        outcome="succeeded",
        now=now,
    )
    return view


def _find_licence(
    uow: UnitOfWork, *, actor: Actor, licence_id: str | UUID, lock: bool = False
) -> Licence:
    key = licence_id if isinstance(licence_id, UUID) else parse_uuid(licence_id, what="licence")
    query = select(Licence).where(Licence.uuid == key, Licence.tenant_id == actor.tenant_id)
    if lock:
        query = query.with_for_update()
    licence = uow.session.execute(query).scalar_one_or_none()
    if licence is None:
        raise NotFound(f"no licence '{licence_id}'")
    return licence


def get_licence(uow: UnitOfWork, *, actor: Actor, licence_id: str | UUID) -> LicenceView:
    """A licence with its used and total units."""
    return _licence_view(_find_licence(uow, actor=actor, licence_id=licence_id))


def list_licences(
    uow: UnitOfWork, *, actor: Actor, limit: int = 50, cursor: str | None = None
) -> Page:
    check_limit(limit)
    rows = (
        uow.session.execute(
            select(Licence)
            .where(Licence.tenant_id == actor.tenant_id, Licence.id > decode_cursor(cursor))
            .order_by(Licence.id)
            .limit(limit + 1)
        )
        .scalars()
        .all()
    )
    items = [_licence_view(row) for row in rows[:limit]]
    return Page(items, encode_cursor(items[-1].id) if len(rows) > limit else None)


def activate_many(
    uow: UnitOfWork,
    *,
    actor: Actor,
    wanted: list[tuple[int, UUID, str, ActivationSpec]],
    now: datetime,
) -> list[ActivationView]:
    """Charge licences for ``(object id, object uuid, object name, spec)`` in bulk.

    Each licence is locked and charged once with the batch's total; a licence without
    enough free units refuses the whole batch.
    """
    session = uow.session
    by_uuid = {spec.licence_uuid for *_, spec in wanted if spec.licence_uuid is not None}
    by_product = {spec.product for *_, spec in wanted if spec.licence_uuid is None}
    if None in by_product:
        raise InvalidInput("an activation names a licence or a product", field="licenceId")
    conditions = []
    if by_uuid:
        conditions.append(Licence.uuid.in_(by_uuid))
    if by_product:
        conditions.append(Licence.product.in_(by_product))
    from sqlalchemy import or_

    licences = (
        session.execute(
            select(Licence)
            .where(Licence.tenant_id == actor.tenant_id, or_(*conditions))
            .order_by(Licence.id)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    uuid_map = {licence.uuid: licence for licence in licences}
    product_map = {licence.product: licence for licence in licences}
    demand: dict[int, int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    views: list[ActivationView] = []
    seen: set[tuple[int, int]] = set()
    for object_id, object_uuid, object_name, spec in wanted:
        licence = (
            uuid_map.get(spec.licence_uuid)
            if spec.licence_uuid is not None
            else product_map.get(spec.product or "")
        )
        if licence is None:
            raise NotFound(f"no licence '{spec.licence_uuid or spec.product}'")
        if (licence.id, object_id) in seen:
            raise Conflict(
                f"object '{object_uuid}' is already activated on '{licence.product}'",
                code="already_activated",
            )
        seen.add((licence.id, object_id))
        if not 1 <= spec.units <= UNITS_MAX:
            raise InvalidInput("units must be a positive number", field="units")
        demand[licence.id] += spec.units
        activation_uuid = new_uuid()
        rows.append(
            {
                "uuid": activation_uuid,
                "tenant_id": actor.tenant_id,
                "licence_id": licence.id,
                "object_id": object_id,
                "object_uuid": object_uuid,
                "object_name": object_name,
                "units": spec.units,
                "orphaned_at": None,
                "created_at": now,
            }
        )
        views.append(
            ActivationView(
                0, activation_uuid, licence.uuid, object_uuid, object_name, spec.units, False, now
            )
        )
    for licence in licences:
        needed = demand.get(licence.id, 0)
        if needed and licence.used_units + needed > licence.total_units:
            raise InsufficientUnits(
                f"licence '{licence.product}' has {licence.total_units - licence.used_units} "
                f"free units; {needed} are needed",
                licence=str(licence.uuid),
            )
    try:
        with session.begin_nested():
            session.connection().execute(insert(table_of(Activation)), rows)
            for licence_id, needed in demand.items():
                session.execute(
                    update(Licence)
                    .where(Licence.id == licence_id)
                    .values(used_units=Licence.used_units + needed)
                )
    except IntegrityError:
        raise Conflict(
            "the object is already activated on that licence", code="already_activated"
        ) from None
    return views


def activate(
    uow: UnitOfWork, *, actor: Actor, licence_id: str, object_id: str, units: int, now: datetime
) -> ActivationView:
    """Consume ``units`` of a licence for a live object; recorded as ``license.activate``.

    (Activations made by an object import are part of that import's event.)
    """
    from groupd.services.objects import ActivationSpec, get_object

    licence = _find_licence(uow, actor=actor, licence_id=licence_id)
    obj = get_object(uow, actor=actor, object_id=object_id)
    (view,) = activate_many(
        uow,
        actor=actor,
        wanted=[
            (obj.id, obj.uuid, obj.name, ActivationSpec(units=units, licence_uuid=licence.uuid))
        ],
        now=now,
    )
    activation = get_activation(
        uow, actor=actor, licence_id=str(licence.uuid), activation_id=str(view.uuid)
    )
    audit.record_event(
        uow,
        actor=actor,
        action="license.activate",
        target_type="license",
        target_uuid=activation.licence_uuid,
        target_name=None,
        outcome="succeeded",
        counts={"units": activation.units},
        detail=f"object {activation.object_uuid}",
        now=now,
    )
    return activation


def _activation_query(tenant_id: int) -> Any:
    return (
        select(Activation, Licence.uuid.label("licence_uuid"))
        .join(Licence, Licence.id == Activation.licence_id)
        .outerjoin(DirectoryObject, DirectoryObject.id == Activation.object_id)
        .outerjoin(Group, Group.id == DirectoryObject.home_group_id)
        # An orphan (its object gone), or an object's in a live home: an activation of an
        # object in the recycle bin is hidden with it.
        .where(
            Activation.tenant_id == tenant_id,
            or_(Activation.object_id.is_(None), Group.state == LIVE),
        )
    )


def _activation_view(activation: Activation, licence_uuid: UUID) -> ActivationView:
    return ActivationView(
        activation.id,
        activation.uuid,
        licence_uuid,
        activation.object_uuid,
        activation.object_name,
        activation.units,
        activation.object_id is None,
        activation.created_at,
    )


def get_activation(
    uow: UnitOfWork, *, actor: Actor, licence_id: str, activation_id: str
) -> ActivationView:
    licence = _find_licence(uow, actor=actor, licence_id=licence_id)
    key = parse_uuid(activation_id, what="activation")
    row = uow.session.execute(
        _activation_query(actor.tenant_id).where(
            Activation.uuid == key, Activation.licence_id == licence.id
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"no activation '{activation_id}'")
    return _activation_view(row[0], row[1])


def list_activations(
    uow: UnitOfWork,
    *,
    actor: Actor,
    licence_id: str,
    orphaned: bool | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page:
    """A licence's activations; ``orphaned=True`` lists those of deleted objects, kept
    consumed because their delete did not release units."""
    check_limit(limit)
    licence = _find_licence(uow, actor=actor, licence_id=licence_id)
    # In uuid order, which is creation order (time-ordered uuids), along the licence's
    # one index: (licence_id, uuid).
    query = _activation_query(actor.tenant_id).where(Activation.licence_id == licence.id)
    after = decode_uuid_cursor(cursor)
    if after is not None:
        query = query.where(Activation.uuid > after)
    if orphaned is True:
        query = query.where(Activation.object_id.is_(None))
    elif orphaned is False:
        query = query.where(Activation.object_id.is_not(None))
    rows = uow.session.execute(query.order_by(Activation.uuid).limit(limit + 1)).all()
    items = [_activation_view(row[0], row[1]) for row in rows[:limit]]
    return Page(items, encode_uuid_cursor(items[-1].uuid) if len(rows) > limit else None)


def release_activation(
    uow: UnitOfWork, *, actor: Actor, licence_id: str, activation_id: str, now: datetime
) -> LicenceView:
    """Remove an activation and return its units to the licence, in one transaction;
    recorded as ``license.release``."""
    licence = _find_licence(uow, actor=actor, licence_id=licence_id, lock=True)
    key = parse_uuid(activation_id, what="activation")
    found = uow.session.execute(
        _activation_query(actor.tenant_id).where(
            Activation.uuid == key, Activation.licence_id == licence.id
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"no activation '{activation_id}'")
    activation = found[0]
    uow.session.execute(delete(Activation).where(Activation.id == activation.id))
    uow.session.execute(
        update(Licence)
        .where(Licence.id == licence.id)
        .values(used_units=Licence.used_units - activation.units)
    )
    uow.session.refresh(licence)
    view = _licence_view(licence)
    audit.record_event(
        uow,
        actor=actor,
        action="license.release",
        target_type="license",
        target_uuid=view.uuid,
        target_name=view.product,
        outcome="succeeded",
        detail=f"activation {activation_id}",
        now=now,
        event_data={
            "licenceId": str(view.uuid),
            "product": view.product,
            "units": activation.units,
        },
    )
    return view


@dataclass(frozen=True, slots=True)
class ObjectProduct:
    """One licence an object consumes: the pool's product name and the units taken."""

    product: str
    unit_kind: str
    units: int


def products_by_object(
    uow: UnitOfWork, *, actor: Actor, object_ids: list[int]
) -> dict[int, list[ObjectProduct]]:
    """The licences each of ``object_ids`` (keys of live objects) consumes, in one query;
    objects without activations are absent from the answer."""
    if not object_ids:
        return {}
    rows = uow.session.execute(
        select(Activation.object_id, Licence.product, Licence.unit_kind, Activation.units)
        .join(Licence, Licence.id == Activation.licence_id)
        .where(Activation.tenant_id == actor.tenant_id, Activation.object_id.in_(object_ids))
        .order_by(Activation.object_id, Licence.product)
    ).all()
    products: dict[int, list[ObjectProduct]] = {}
    for object_id, product, unit_kind, units in rows:
        if object_id is not None:  # the IN list never matches NULL; this tells mypy so
            products.setdefault(object_id, []).append(ObjectProduct(product, unit_kind, units))
    return products


@dataclass(frozen=True, slots=True)
class LicenceUse:
    """What the objects of a subtree consume of one licence."""

    licence_uuid: UUID
    product: str
    unit_kind: str
    activations: int
    units: int


def subtree_licence_use(uow: UnitOfWork, *, actor: Actor, group_id: str | UUID) -> list[LicenceUse]:
    """Units consumed per licence by the objects homed anywhere in a live group's subtree:
    one aggregate over the subtree's path range."""

    key = group_id if isinstance(group_id, UUID) else parse_uuid(group_id, what="group")
    found = uow.session.execute(
        select(Group.path).where(
            Group.uuid == key, Group.tenant_id == actor.tenant_id, Group.state == LIVE
        )
    ).one_or_none()
    if found is None:
        raise NotFound(f"no group '{group_id}'")
    # The subtree's objects as ``home_group_id IN (its group ids)``: SQLite lists the ids
    # once and seeks the objects' index for each; PostgreSQL hashes them (decision 0043).
    low, high = subtree_bounds(found.path)
    subtree_ids = select(Group.id).where(
        Group.tenant_id == actor.tenant_id,
        Group.path >= low,
        Group.path < high,
        Group.state == LIVE,
    )
    charged = (
        select(
            Activation.licence_id,
            func.count().label("activations"),
            func.coalesce(func.sum(Activation.units), 0).label("units"),
        )
        .join(DirectoryObject, DirectoryObject.id == Activation.object_id)
        .where(DirectoryObject.home_group_id.in_(subtree_ids))
        .group_by(Activation.licence_id)
        .subquery("charged")
    )
    rows = uow.session.execute(
        select(
            Licence.uuid,
            Licence.product,
            Licence.unit_kind,
            charged.c.activations,
            charged.c.units,
        )
        .join(charged, charged.c.licence_id == Licence.id)
        .order_by(Licence.product)
    ).all()
    return [LicenceUse(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]
