"""A writer that finds SQLite's lock held by another process polls for it itself, in
fine steps, before SQLite's busy handler (whose sleeps grow to tens of milliseconds)
takes over (``store.sqlite.begin_immediate``, decision 0076)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from conftest import make_settings
from groupd.store import sqlite as sqlite_store
from groupd.store.db import Database, transaction
from groupd.store.queue import copy_database


@pytest.fixture
def db(sqlite_template: Path, tmp_path: Path) -> Database:
    target = tmp_path / "groupd.db"
    copy_database(sqlite_template, target)
    database = Database.from_settings(make_settings(f"sqlite:///{target}"))
    yield database  # type: ignore[misc]
    database.dispose()


@contextlib.contextmanager
def lock_held_elsewhere(db: Database, seconds: float) -> Iterator[None]:
    """Another process's writer, as SQLite sees it (a connection of its own), holds the
    write lock for ``seconds`` from the moment the block begins."""
    path = db.engine.url.database
    assert path is not None
    held = threading.Event()

    def hold() -> None:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            held.set()
            time.sleep(seconds)
            other.execute("COMMIT")
        finally:
            other.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        yield
    finally:
        holder.join()


def test_a_writer_polls_for_another_connections_lock_in_fine_steps(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []

    class CountingTime:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            pauses.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(sqlite_store, "time", CountingTime)
    with lock_held_elsewhere(db, 0.03):
        began = time.monotonic()
        with transaction(db) as uow:
            uow.session.execute(text("SELECT 1"))
        waited = time.monotonic() - began
    assert waited >= 0.01, "the lock was not held while the writer began"
    # Polled by groupd from 50 µs up to every millisecond, not slept on by SQLite's handler.
    assert len(pauses) >= 10, pauses
    assert pauses[0] == sqlite_store.FINE_POLL_SECONDS[0]
    assert max(pauses) == sqlite_store.FINE_POLL_SECONDS[1]


def test_past_the_fine_wait_the_busy_handler_waits_and_then_refuses(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "SQLITE_BUSY_TIMEOUT_MS", 50)
    monkeypatch.setattr(sqlite_store, "FINE_WAIT_SECONDS", 0.05)
    with (
        lock_held_elsewhere(db, 1.0),
        pytest.raises(Exception, match="locked|busy"),
        transaction(db) as uow,
    ):
        uow.session.execute(text("SELECT 1"))
    with transaction(db) as uow:  # the lock is free again: a writer gets it at once
        uow.session.execute(text("SELECT 1"))
