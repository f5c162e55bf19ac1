"""The page size of SQLite databases groupd creates (``sqlite_page_size``).

SQLite fixes a database's page size when it writes the file's first page. groupd asks
for the configured size (by default SQLite's own, 4 KiB; larger pages trade faster bulk
deletes for slower small writes: docs/benchmarks.md, "Measured and left as they are");
a database that already exists keeps its own.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from conftest import make_settings
from groupd.settings import Settings
from groupd.store.db import Database
from groupd.store.migrate import upgrade


def _page_size(path: Path) -> int:
    connection = sqlite3.connect(path)
    try:
        return int(connection.execute("PRAGMA page_size").fetchone()[0])
    finally:
        connection.close()


@pytest.mark.parametrize("page_size", [None, 8192, 16384])
def test_a_new_database_has_the_configured_page_size(tmp_path: Path, page_size: int | None) -> None:
    target = tmp_path / "groupd.db"
    overrides = {} if page_size is None else {"sqlite_page_size": page_size}
    db = Database.from_settings(make_settings(f"sqlite:///{target}", **overrides))
    try:
        upgrade(db.engine)
        with db.unit_of_work() as uow:
            assert uow.session.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
    finally:
        db.dispose()
    assert _page_size(target) == (page_size or 4096)


def test_an_existing_database_keeps_its_page_size(tmp_path: Path) -> None:
    target = tmp_path / "groupd.db"
    connection = sqlite3.connect(target)
    connection.execute("PRAGMA page_size=8192")
    connection.execute("CREATE TABLE kept (id INTEGER PRIMARY KEY)")
    connection.commit()
    connection.close()
    db = Database.from_settings(make_settings(f"sqlite:///{target}", sqlite_page_size=16384))
    try:
        upgrade(db.engine)
        with db.unit_of_work() as uow:
            assert uow.session.execute(text("PRAGMA page_size")).scalar_one() == 8192
            assert uow.session.execute(text("SELECT count(*) FROM tenants")).scalar_one() == 0
    finally:
        db.dispose()
    assert _page_size(target) == 8192


@pytest.mark.parametrize("value", ["1000", "256", "131072", "eight"])
def test_a_page_size_sqlite_cannot_have_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("GROUPD_SQLITE_PAGE_SIZE", value)
    with pytest.raises(ValidationError, match="sqlite_page_size"):
        Settings()
