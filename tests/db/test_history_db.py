"""Choosing the database, opening SQLite the way the history needs it, and reading `--since`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text

from bot.errors import BadInput
from bot.history.cli import parse_since
from bot.history.db import alembic_config, create_history_engine, default_database_path, resolve_database_url, upgrade
from bot.history.errors import HistoryUnavailable


def test_explicit_url_beats_database_url_which_beats_the_default_file() -> None:
    env = {"DATABASE_URL": "postgresql+psycopg://bot@db:5432/kubereach", "XDG_DATA_HOME": "/data"}
    assert resolve_database_url("sqlite:////tmp/x.db", env) == "sqlite:////tmp/x.db"
    assert resolve_database_url(None, env) == "postgresql+psycopg://bot@db:5432/kubereach"
    assert resolve_database_url(None, {"XDG_DATA_HOME": "/data"}) == "sqlite:////data/kubereach/history.db"


def test_default_file_lives_under_the_user_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_database_path({}) == tmp_path / ".local" / "share" / "kubereach" / "history.db"
    assert default_database_path({"XDG_DATA_HOME": "/xdg"}) == Path("/xdg/kubereach/history.db")


def test_plain_postgres_urls_use_psycopg3() -> None:
    assert resolve_database_url("postgres://u:p@h/db", {}) == "postgresql+psycopg://u:p@h/db"
    assert resolve_database_url(None, {"DATABASE_URL": "postgresql://h/db"}) == "postgresql+psycopg://h/db"


def test_sqlite_file_is_created_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "history.db"
    engine = create_history_engine(f"sqlite:///{path}")
    try:
        upgrade(engine)
        upgrade(engine)  # a second upgrade at head changes nothing
        with engine.connect() as connection:
            assert connection.execute(text("PRAGMA journal_mode")).scalar_one() == "wal"
            assert connection.execute(text("PRAGMA foreign_keys")).scalar_one() == 1
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
        assert path.exists()
    finally:
        engine.dispose()


def test_an_unreadable_url_is_reported_as_bad_input() -> None:
    with pytest.raises(HistoryUnavailable, match="cannot be read") as raised:
        create_history_engine("not a url")
    assert raised.value.exit_code == 2


def test_since_reads_durations_and_dates() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2026-11-02", now) == datetime(2026, 11, 2, tzinfo=UTC)
    with pytest.raises(BadInput, match="neither a duration nor a date"):
        parse_since("last tuesday", now)
