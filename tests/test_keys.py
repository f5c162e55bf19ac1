"""``in_keys``: a list of keys bound as one parameter (a JSON array on SQLite, an array
on PostgreSQL) selects exactly what ``IN`` with the same keys selects, run through
SQLAlchemy or as a prepared statement on the driver's cursor."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from conftest import TenantFixture
from groupd.store.db import Database
from groupd.store.keys import in_keys
from groupd.store.models import Group
from groupd.store.prepared import Prepared
from invariants import assert_invariants

_GROUPS_IN = Prepared(select(Group.id).where(in_keys(Group.id, "keys")).order_by(Group.id))


def _group_ids(db: Database) -> list[int]:
    with db.unit_of_work(write=False) as uow:
        return list(uow.session.execute(select(Group.id).order_by(Group.id)).scalars())


@pytest.mark.parametrize("pick", ["none", "one", "some", "all", "unknown", "repeated", "many"])
def test_in_keys_selects_what_in_selects(db: Database, acme: TenantFixture, pick: str) -> None:
    ids = _group_ids(db)
    assert len(ids) >= 3
    keys = {
        "none": [],
        "one": ids[:1],
        "some": ids[::2],
        "all": ids,
        "unknown": [max(ids) + 1, -5, 0],
        "repeated": [ids[0], ids[0], ids[-1]],
        # far more than SQLite's limit of bound parameters in one statement
        "many": list(range(-40_000, 0)) + ids,
    }[pick]
    with db.unit_of_work(write=False) as uow:
        expected = sorted(set(keys) & set(ids))
        through_sqlalchemy = list(
            uow.session.execute(
                select(Group.id).where(in_keys(Group.id, "keys")).order_by(Group.id),
                {"keys": keys},
            ).scalars()
        )
        prepared = [row[0] for row in _GROUPS_IN.all(uow, {"keys": keys})]
    assert through_sqlalchemy == expected
    assert prepared == expected
    assert_invariants(db)
