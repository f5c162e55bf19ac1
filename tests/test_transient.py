"""A unit of work PostgreSQL undid to settle a conflict (a deadlock's victim, a
serialization failure) runs again whole (``retry_transient``); when every try is undone,
the caller hears ``Unavailable`` (a 503 to try again), never an internal error, and
nothing of the tries is left behind."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from conftest import TenantFixture
from groupd.errors import Unavailable
from groupd.services import accounts, groups
from groupd.store import db as store_db
from groupd.store.db import Database, UnitOfWork, retry_transient
from groupd.store.models import Group
from invariants import assert_invariants

pytestmark = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


def _raise_sqlstate(uow: UnitOfWork, sqlstate: str) -> None:
    """Have PostgreSQL itself fail the statement with ``sqlstate``."""
    uow.session.execute(
        text(
            "DO $$ BEGIN RAISE EXCEPTION 'undone for the test' "
            f"USING ERRCODE = '{sqlstate}'; END $$"
        )
    )


def _create(db: Database, acme: TenantFixture, name: str, fail_first: int, sqlstate: str) -> Any:
    with db.unit_of_work() as uow:
        account = accounts.get_account(uow, username=acme.admin.username)
    actor = accounts.account_actor(account, request_id="transient", source=None)
    tries: list[int] = []

    def unit() -> str:
        with db.unit_of_work() as uow:
            spec = groups.GroupSpec(name=name, parent_uuid=uuid.UUID(acme.root_id))
            view = groups.create_group(uow, actor=actor, spec=spec, now=datetime.now(UTC))
            tries.append(1)
            if len(tries) <= fail_first:
                _raise_sqlstate(uow, sqlstate)
            uow.commit()
            return str(view.uuid)

    return retry_transient(unit), tries


def _count_named(db: Database, name: str) -> int:
    with db.engine.connect() as connection:
        return int(connection.execute(select(func.count()).where(Group.name == name)).scalar_one())


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])
def test_a_unit_undone_twice_runs_again_and_commits_once(
    db: Database, acme: TenantFixture, sqlstate: str
) -> None:
    created, tries = _create(db, acme, "third time", fail_first=2, sqlstate=sqlstate)
    assert len(tries) == 3
    assert _count_named(db, "third time") == 1
    assert created
    assert_invariants(db)


def test_a_unit_undone_on_every_try_is_unavailable_and_leaves_nothing(
    db: Database, acme: TenantFixture
) -> None:
    with pytest.raises(Unavailable) as raised:
        _create(db, acme, "never", fail_first=store_db.TRANSIENT_ATTEMPTS, sqlstate="40P01")
    assert raised.value.code == "contention"
    assert f"{store_db.TRANSIENT_ATTEMPTS} times" in raised.value.detail
    assert _count_named(db, "never") == 0
    assert_invariants(db)


def test_other_database_errors_are_not_tried_again(db: Database, acme: TenantFixture) -> None:
    tries: list[int] = []

    def unit() -> None:
        with db.unit_of_work() as uow:
            tries.append(1)
            _raise_sqlstate(uow, "57P01")  # admin_shutdown: not a conflict between writers

    with pytest.raises(OperationalError, match="undone for the test"):
        retry_transient(unit)
    assert len(tries) == 1


def test_a_real_deadlock_between_two_units_ends_with_both_committed(
    db: Database, acme: TenantFixture
) -> None:
    """Two units lock the same two groups in opposite orders; PostgreSQL undoes one, and
    its retry commits after the other."""
    first_locked = threading.Barrier(2, timeout=10)
    with db.unit_of_work() as uow:
        account = accounts.get_account(uow, username=acme.admin.username)
        actor = accounts.account_actor(account, request_id="deadlock", source=None)
        made = [
            groups.create_group(
                uow,
                actor=actor,
                spec=groups.GroupSpec(name=name, parent_uuid=uuid.UUID(acme.root_id)),
                now=datetime.now(UTC),
            ).uuid
            for name in ("left", "right")
        ]
        uow.commit()
    tries = {"forward": 0, "backward": 0}
    errors: list[BaseException] = []

    def rename_both(label: str, order: list[Any]) -> None:
        def unit() -> None:
            tries[label] += 1
            with db.unit_of_work() as uow:
                for index, group_uuid in enumerate(order):
                    uow.session.execute(
                        Group.__table__.update()
                        .where(Group.uuid == group_uuid)
                        .values(description=f"{label} {tries[label]}")
                    )
                    if index == 0 and tries[label] == 1:
                        first_locked.wait()  # both hold their first row before the second
                uow.commit()

        try:
            retry_transient(unit)
        except BaseException as error:  # reported by the test
            errors.append(error)

    threads = [
        threading.Thread(target=rename_both, args=("forward", made)),
        threading.Thread(target=rename_both, args=("backward", made[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sorted(tries.values()) == [1, 2], tries  # exactly one was undone and ran again
    assert_invariants(db)
