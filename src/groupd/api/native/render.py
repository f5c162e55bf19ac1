"""Service views to native wire types."""

from __future__ import annotations

from datetime import datetime

from groupd.api import wire
from groupd.api.native import schemas as s
from groupd.services.audit import AuditView
from groupd.services.groups import GroupText, GroupView
from groupd.services.licensing import ActivationView, LicenceView
from groupd.services.objects import ObjectView
from groupd.services.operations import OperationView
from groupd.services.recycle_bin import BinEntryView


def timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


def ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def group(view: GroupView) -> s.GroupOut:
    linked = view.linked_entity
    return s.GroupOut(
        id=str(view.uuid),
        parent_id=str(view.parent_uuid) if view.parent_uuid else None,
        name=view.name,
        description=view.description,
        kind=view.kind,
        value_type=view.value_type,
        values=view.values,
        linked_entity=s.LinkedEntity(type=linked.type, ref=linked.ref) if linked else None,
        protected=view.protected,
        agent_id=view.agent_id,
        created_at=ts(view.created_at),
        updated_at=ts(view.updated_at),
    )


def group_text(view: GroupText) -> s.GroupOut:
    """``group`` for a view read as text (``get_group_text``): the same answer."""
    linked = view.linked_type
    return s.GroupOut(
        id=view.uuid,
        parent_id=view.parent_uuid,
        name=view.name,
        description=view.description,
        kind=view.kind,
        value_type=view.value_type,
        values=view.values,
        linked_entity=s.LinkedEntity(type=linked, ref=view.linked_ref) if linked else None,
        protected=view.protected,
        agent_id=view.agent_id,
        created_at=view.created_at,
        updated_at=view.updated_at,
    )


def obj(view: ObjectView) -> s.ObjectOut:
    return s.ObjectOut(
        id=str(view.uuid),
        kind=view.kind,
        name=view.name,
        home_group_id=str(view.home_group_uuid),
        login_name=view.login_name,
        status=view.status,
        attributes=view.attributes,
    )


def licence(view: LicenceView) -> s.LicenseOut:
    return s.LicenseOut(
        id=str(view.uuid),
        product=view.product,
        unit_kind=view.unit_kind,
        total_units=view.total_units,
        used_units=view.used_units,
    )


def activation(view: ActivationView) -> s.ActivationOut:
    return s.ActivationOut(
        id=str(view.uuid),
        license_id=str(view.licence_uuid),
        object_id=str(view.object_uuid),
        object_name=view.object_name,
        units=view.units,
        orphaned=view.orphaned,
        created_at=ts(view.created_at),
    )


def operation(view: OperationView) -> s.OperationOut:
    result = None
    if view.result_status is not None:
        result = s.OperationResult(status=view.result_status, body=view.result_body or {})
    return s.OperationOut(
        id=str(view.uuid),
        kind=view.kind,
        state=view.state,
        target=s.TargetOut(id=str(view.target_uuid), name=view.target_name),
        parameters={"releaseConsumedUnits": view.release_units},
        progress=wire.progress(view.progress),
        result=result,
        created_at=ts(view.created_at),
        started_at=timestamp(view.started_at),
        finished_at=timestamp(view.finished_at),
        expires_at=timestamp(view.expires_at),
    )


def audit_event(view: AuditView) -> s.AuditEventOut:
    return s.AuditEventOut(
        id=view.id,
        actor=view.actor,
        action=view.action,
        target_type=view.target_type,
        target_id=str(view.target_uuid) if view.target_uuid else None,
        target_name=view.target_name,
        request_id=view.request_id,
        source=view.source,
        outcome=view.outcome,
        counts=view.counts,
        detail=view.detail,
        at=ts(view.at),
    )


def deleted_group(view: BinEntryView) -> s.DeletedGroupOut:
    return s.DeletedGroupOut(
        id=str(view.uuid),
        name=view.name,
        kind=view.kind,
        parent_id=str(view.parent_uuid) if view.parent_uuid else None,
        path_names=view.path_names,
        deleted_at=ts(view.deleted_at),
        deleted_by=view.deleted_by,
        purge_at=ts(view.purge_at),
        counts=view.counts,
        release_consumed_units=view.release_units,
        units=[
            s.BinUnitsOut(
                licence_id=str(item.licence_uuid),
                product=item.product,
                unit_kind=item.unit_kind,
                activations=item.activations,
                units=item.units,
            )
            for item in view.units
        ],
        operation_id=str(view.operation_uuid),
        restoring=view.restoring,
    )
