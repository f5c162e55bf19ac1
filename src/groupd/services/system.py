"""Installation-wide switches stored in the database, so every process sees them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from groupd.store.db import UnitOfWork
from groupd.store.models import SystemFlag

MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class MaintenanceState:
    enabled: bool
    message: str


def get_maintenance(uow: UnitOfWork) -> MaintenanceState:
    """Whether the API is in maintenance mode, and what it tells callers."""
    flag = uow.session.execute(
        select(SystemFlag).where(SystemFlag.key == MAINTENANCE)
    ).scalar_one_or_none()
    if flag is None:
        return MaintenanceState(False, "")
    return MaintenanceState(bool(flag.value.get("enabled")), str(flag.value.get("message", "")))


def set_maintenance(uow: UnitOfWork, *, enabled: bool, message: str, now: datetime) -> None:
    """Switch maintenance mode on or off for every process of the installation."""
    flag = uow.session.get(SystemFlag, MAINTENANCE)
    value = {"enabled": enabled, "message": message}
    if flag is None:
        uow.session.add(SystemFlag(key=MAINTENANCE, value=value, updated_at=now))
    else:
        flag.value = value
        flag.updated_at = now
