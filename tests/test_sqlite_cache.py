"""The page cache of SQLite connections (``sqlite_cache_mib``).

The default is SQLite's own, 2 MiB a connection; an operator with memory to spare can
give each connection more (docs/configuration.md). Every connection groupd opens gets
the configured size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from conftest import make_settings
from groupd.settings import Settings
from groupd.store.db import Database
from groupd.store.queue import copy_database


def _cache_sizes(db: Database) -> set[int]:
    sizes = set()
    with db.unit_of_work() as uow:
        sizes.add(uow.session.execute(text("PRAGMA cache_size")).scalar_one())
    with db.unit_of_work(write=False) as uow:
        sizes.add(uow.session.execute(text("PRAGMA cache_size")).scalar_one())
    with db.snapshot() as uow:
        sizes.add(uow.session.execute(text("PRAGMA cache_size")).scalar_one())
    return sizes


@pytest.mark.parametrize("mib", [None, 24])
def test_every_sqlite_connection_has_the_configured_cache(
    sqlite_template: Path, tmp_path: Path, mib: int | None
) -> None:
    target = tmp_path / "groupd.db"
    copy_database(sqlite_template, target)
    overrides = {} if mib is None else {"sqlite_cache_mib": mib}
    settings = make_settings(f"sqlite:///{target}", **overrides)
    db = Database.from_settings(settings)
    try:
        # Negative: a size in KiB, not in pages.
        assert _cache_sizes(db) == {-(mib or 2) * 1024}
    finally:
        db.dispose()


def test_a_cache_size_below_one_mib_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROUPD_SQLITE_CACHE_MIB", "0")
    with pytest.raises(ValidationError, match="sqlite_cache_mib"):
        Settings()
