"""An installation on SQLite needs neither psycopg nor redis (they are the ``postgresql``
and ``redis`` extras); configuring a URL that needs one says what to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from groupd.settings import Settings


@pytest.mark.parametrize(
    ("module", "setting", "extra"),
    [
        ("psycopg", {"database_url": "postgresql://groupd@127.0.0.1/groupd"}, "postgresql"),
        ("psycopg", {"database_url": "postgresql+psycopg://127.0.0.1/groupd"}, "postgresql"),
        ("redis", {"redis_url": "redis://127.0.0.1:6379/0"}, "redis"),
    ],
)
def test_a_url_whose_driver_is_missing_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, module: str, setting: dict[str, str], extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if it were not installed
    with pytest.raises(ValidationError) as refused:
        Settings(**setting)  # type: ignore[arg-type]
    assert f"pip install 'groupd[{extra}]'" in str(refused.value)


def test_sqlite_serves_without_psycopg_or_redis(tmp_path: Path) -> None:
    """In a fresh interpreter where importing either fails: the app starts on SQLite,
    creates a tenant and answers an authenticated request."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["psycopg"] = None
        sys.modules["redis"] = None
        from starlette.testclient import TestClient
        import groupd.cli
        from groupd.api.app import create_app
        from groupd.api.context import AppContext
        from groupd.bootstrap import prepare_database
        from groupd.settings import Settings
        from groupd.store.db import Database

        settings = Settings(database_url="sqlite:///{tmp_path / "groupd.db"}")
        db = Database.from_settings(settings)
        created = prepare_database(db)
        app = create_app(context=AppContext.create(settings, db=db))
        with TestClient(app) as client:
            answer = client.get(
                "/api/v1/groups", headers={{"Authorization": f"Bearer {{created.token}}"}}
            )
        assert answer.status_code == 200, answer.text
        print("served", len(answer.json()["items"]), "groups")
        """
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("served"), done.stdout
