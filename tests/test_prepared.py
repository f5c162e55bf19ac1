"""Prepared statements (``groupd.store.prepared``): the hot statements run on the DB-API
cursor must give exactly what SQLAlchemy's own execution gives, raise the same errors,
and keep the request's deadline."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, create_engine, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, OperationalError

import groupd.services  # noqa: F401  (imports every service: their statements are made)
from conftest import TenantFixture
from groupd.errors import Unavailable
from groupd.services import accounts, audit, common, group_views, groups
from groupd.store.db import Database, create_db_engine, request_deadline, transaction
from groupd.store.models import AuditEvent, Group, table_of
from groupd.store.prepared import Prepared
from invariants import assert_invariants


def test_every_prepared_statement_compiles_on_both_databases() -> None:
    for module in (accounts, audit, common, groups):
        assert module.__name__  # imported: their module-level statements exist
    assert len(Prepared.made) >= 5
    for prepared in Prepared.made:
        for dialect in (sqlite.dialect(), postgresql.psycopg.dialect()):  # type: ignore[attr-defined]
            compiled = prepared.compiled_for(dialect)
            assert compiled.sql
            assert len(compiled.names) == len(compiled.binds)


def test_an_expanding_in_cannot_be_prepared() -> None:
    statement = select(Group.id).where(Group.id.in_(bindparam("ids", expanding=True)))
    with pytest.raises(TypeError, match="expanding IN"):
        Prepared(statement).compiled_for(sqlite.dialect())


def test_rows_are_what_sqlalchemy_gives(db: Database, acme: TenantFixture) -> None:
    """Same values and same Python types (uuids, aware datetimes, booleans, JSON)."""
    now = datetime.now(UTC)
    actor = accounts.account_actor(_account(db, acme, now), request_id="t", source=None)
    with transaction(db) as uow:
        policy = groups.create_group(
            uow,
            actor=actor,
            spec=groups.GroupSpec(
                name="limits",
                parent_uuid=None,
                kind="policy",
                value_type="ip_range",
                values=["10.0.0.0/8", "192.168.1.0/24"],
            ),
            now=now,
        )
    for prepared, params in (
        (group_views._GET_LIVE_GROUP, {"group_uuid": policy.uuid, "tenant_id": acme.id}),
        (
            group_views._GET_LIVE_GROUP,
            {"group_uuid": uuid.UUID(acme.root_id), "tenant_id": acme.id},
        ),
        (accounts._TOKEN_LOOKUP, {"token_hash": accounts.hash_secret(acme.admin.token)}),
    ):
        with db.unit_of_work(write=False) as uow:
            ours = prepared.one_or_none(uow, params)
            theirs = uow.connection.execute(prepared.statement, params).one()
        assert ours == tuple(theirs)
        assert [type(value) for value in ours] == [type(value) for value in theirs]
    with db.unit_of_work(write=False) as uow:
        got = groups.get_group(uow, actor=actor, group_id=policy.uuid)
    assert got.values == ["10.0.0.0/8", "192.168.1.0/24"]
    assert got.created_at.tzinfo is not None
    assert abs(got.created_at - now) < timedelta(seconds=1)
    with db.unit_of_work(write=False) as uow:
        missing = group_views._GET_LIVE_GROUP.one_or_none(
            uow, {"group_uuid": uuid.uuid4(), "tenant_id": acme.id}
        )
    assert missing is None
    assert_invariants(db)


def test_rows_read_as_text_are_the_objects_as_the_apis_write_them(
    db: Database, acme: TenantFixture
) -> None:
    """``as_text`` (decision 0075): the group GET and the children page give the uuids
    and times as ``str`` and ``isoformat`` (with ``Z``) give them, every other column as
    the object path gives it; a moment with no microseconds and one before 1970 too."""
    now = datetime.now(UTC)
    actor = accounts.account_actor(_account(db, acme, now), request_id="t", source=None)
    moments = [now, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), datetime(1969, 7, 20, tzinfo=UTC)]
    with transaction(db) as uow:
        made = [
            groups.create_group(
                uow,
                actor=actor,
                spec=groups.GroupSpec(name=f"t{n}", parent_uuid=uuid.UUID(acme.root_id)),
                now=moment,
            )
            for n, moment in enumerate(moments)
        ]
    with db.unit_of_work(write=False) as uow:
        root = groups.get_group(uow, actor=actor, group_id=acme.root_id)
        for view in made:
            params = {"group_uuid": view.uuid, "tenant_id": acme.id}
            objects = group_views._GET_LIVE_GROUP.one_or_none(uow, params)
            texts = group_views._GET_LIVE_GROUP_TEXT.one_or_none(uow, params)
            assert objects is not None and texts is not None
            assert texts == _as_text(objects)
        page = {"tenant_id": acme.id, "after": 0, "parent": root.id, "limit": 100}
        objects_page = group_views._CHILDREN_PAGE.all(uow, page)
        texts_page = group_views._CHILDREN_PAGE_TEXT.all(uow, page)
    assert len(objects_page) >= 3
    assert texts_page == [_as_text(row) for row in objects_page]
    with db.unit_of_work(write=False) as uow:
        listed = groups.list_groups(uow, actor=actor, parent_id=acme.root_id, as_text=True)
    assert {item.name for item in listed.items} >= {"t0", "t1", "t2"}
    assert all(isinstance(item, group_views.GroupText) for item in listed.items)


def _as_text(row: tuple[object, ...]) -> tuple[object, ...]:
    def text_of(value: object) -> object:
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, datetime):
            return value.isoformat().replace("+00:00", "Z")
        return value

    return tuple(text_of(value) for value in row)


def _account(db: Database, acme: TenantFixture, now: datetime) -> accounts.AccountView:
    with db.unit_of_work(write=False) as uow:
        return accounts.resolve_token(uow, secret=acme.admin.token, kinds=("api",), now=now)


def test_an_insert_writes_what_a_core_insert_writes(db: Database, acme: TenantFixture) -> None:
    now = datetime.now(UTC)
    actor = accounts.account_actor(_account(db, acme, now), request_id="req-1", source="test")
    with transaction(db) as uow:
        audit.record_event(
            uow,
            actor=actor,
            action="probe",
            target_type="group",
            target_uuid=uuid.UUID(acme.root_id),
            target_name="All",
            outcome="succeeded",
            counts={"groups": 2, "nested": {"a": [1, 2]}},
            now=now,
        )
    with db.engine.connect() as connection:
        row = connection.execute(
            select(table_of(AuditEvent)).where(table_of(AuditEvent).c.action == "probe")
        ).one()
    assert row.counts == {"groups": 2, "nested": {"a": [1, 2]}}
    assert row.target_uuid == uuid.UUID(acme.root_id)
    assert row.request_id == "req-1" and row.source == "test"
    assert row.tenant_id == acme.id
    stored = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
    assert abs(stored - now) < timedelta(seconds=1)
    assert_invariants(db)


def test_a_constraint_violation_is_sqlalchemys_integrity_error(
    db: Database, acme: TenantFixture
) -> None:
    now = datetime.now(UTC)
    actor = accounts.account_actor(_account(db, acme, now), request_id="r", source=None)
    with transaction(db) as uow:
        audit.record_event(
            uow,
            actor=actor,
            action="probe",
            target_type="group",
            target_uuid=None,
            target_name=None,
            outcome="succeeded",
            now=now,
        )
    duplicate = Prepared(
        insert(table_of(AuditEvent)),
        column_keys=["id", "tenant_id", "actor", "action", "target_type", "outcome", "at"],
    )
    with pytest.raises(TypeError, match="'counts'"), transaction(db) as uow:
        # Column defaults are not applied: every value must be given.
        duplicate.execute(uow, {"id": 10**9, "tenant_id": acme.id})
    duplicate = Prepared(
        insert(table_of(AuditEvent)),
        column_keys=[
            "id",
            "tenant_id",
            "actor",
            "action",
            "target_type",
            "outcome",
            "at",
            "counts",
        ],
    )
    with db.engine.connect() as connection:
        existing = connection.execute(text("SELECT min(id) FROM audit_events")).scalar_one()
    assert existing is not None
    with pytest.raises(IntegrityError), transaction(db) as uow:
        duplicate.execute(
            uow,
            {
                "id": existing,
                "tenant_id": acme.id,
                "actor": "a",
                "action": "probe",
                "target_type": "group",
                "outcome": "succeeded",
                "at": now,
                "counts": {},
            },
        )
    assert_invariants(db)


def _runaway(db: Database) -> Prepared:
    if db.is_sqlite:
        return Prepared(
            text(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
                " SELECT count(*) FROM c"
            )
        )
    return Prepared(text("SELECT pg_sleep(30)"))


def test_a_prepared_statement_ends_at_the_deadline(db: Database) -> None:
    started = time.monotonic()
    with (
        pytest.raises(Unavailable) as refused,
        request_deadline(started + 0.5, 0.5),
        db.unit_of_work(write=False) as uow,
    ):
        uow.connection  # noqa: B018  (the transaction begins with the whole budget left)
        time.sleep(0.2)
        _runaway(db).all(uow, {})
    assert refused.value.code == "time_budget_exceeded"
    assert time.monotonic() - started < 3


def test_no_prepared_statement_starts_after_the_deadline(db: Database) -> None:
    select_one = Prepared(text("SELECT 1"))
    with db.unit_of_work(write=False) as uow:
        assert select_one.all(uow, {}) == [(1,)]
        with pytest.raises(Unavailable), request_deadline(time.monotonic() - 1, 5):
            select_one.all(uow, {})


def test_a_lost_connection_is_invalidated_for_a_retry(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("an embedded database has no connection to lose")
    backend_pid = Prepared(text("SELECT pg_backend_pid()"))
    killer = create_engine(db.engine.url)
    try:
        with pytest.raises(OperationalError) as lost, db.unit_of_work(write=False) as uow:
            ((pid,),) = backend_pid.all(uow, {})
            with killer.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            time.sleep(0.2)
            backend_pid.all(uow, {})
        assert lost.value.connection_invalidated
    finally:
        killer.dispose()
    with db.unit_of_work(write=False) as uow:  # the pool hands out a live connection
        assert backend_pid.all(uow, {})


def test_a_read_unit_leaves_no_statement_timeout_behind(database_url: str) -> None:
    """On PostgreSQL, read units run in autocommit: a deadline tighter than the session's
    default is set for the whole database session, and undone when the unit ends."""
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite has no statement timeout")
    db = Database(create_db_engine(database_url, pool_size=1, request_budget_seconds=30))
    show = Prepared(text("SHOW statement_timeout"))

    def timeout_in_a_request(budget: float = 30) -> str:
        with (
            request_deadline(time.monotonic() + budget, budget),
            db.unit_of_work(write=False) as uow,
        ):
            ((value,),) = show.all(uow, {})
            return str(value)

    try:
        assert timeout_in_a_request() == "30s"  # the session default: no statement
        tight = timeout_in_a_request(0.5)
        assert tight.endswith("ms") and int(tight[:-2]) <= 500, tight
        assert timeout_in_a_request() == "30s"  # the one pooled connection, reset
        with db.unit_of_work(write=False) as uow:  # work without a deadline: none
            assert show.all(uow, {}) == [("0",)]
        assert timeout_in_a_request() == "30s"
        with db.unit_of_work(write=True) as uow:  # in a transaction: SET LOCAL
            assert show.all(uow, {}) == [("0",)]
        assert timeout_in_a_request() == "30s"
    finally:
        db.dispose()
