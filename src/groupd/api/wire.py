"""The wire forms of a delete that several surfaces share: its blockers, its impact, and
an operation's progress (camelCase JSON, as every surface writes them)."""

from __future__ import annotations

from typing import Any

from groupd.services.deletion import Blocker, Impact
from groupd.services.progress import KINDS, Progress


def blocker(item: Blocker) -> dict[str, Any]:
    out: dict[str, Any] = {
        "rule": item.rule,
        "groupId": str(item.group_uuid),
        "groupName": item.group_name,
    }
    if item.linked_entity_type is not None:
        out["linkedEntityType"] = item.linked_entity_type
    if item.active_members is not None:
        out["activeMembers"] = item.active_members
    return out


def error_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """An error's extra fields for the wire: a refused delete's blockers in wire form."""
    if "blockers" not in extra:
        return extra
    return {**extra, "blockers": [blocker(item) for item in extra["blockers"]]}


def impact(value: Impact) -> dict[str, Any]:
    release = value.release_units
    return {
        "groups": {"total": value.group_total, **value.groups},
        "objects": {"devices": value.devices, "users": value.users},
        "memberships": value.memberships,
        "activations": value.activations,
        "releaseConsumedUnits": release,
        "units": {
            "released" if release else "keptConsumed": value.units,
            "byLicence": [
                {
                    "licenceId": str(item.licence_uuid),
                    "product": item.product,
                    "unitKind": item.unit_kind,
                    "activations": item.activations,
                    "units": item.units,
                    "action": "release" if release else "keep",
                }
                for item in value.licences
            ],
        },
        "blockers": [blocker(item) for item in value.blockers],
    }


def progress(value: Progress) -> dict[str, Any]:
    return {
        **{
            kind: {"done": value.tally(kind).done, "total": value.tally(kind).total}
            for kind in KINDS
        },
        "unitsReleased": value.units_released,
        "unitsKeptConsumed": value.units_kept_consumed,
        "chunks": value.chunks,
        "adopted": value.adopted,
    }
