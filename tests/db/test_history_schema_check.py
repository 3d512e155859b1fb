"""Opening the history checks its schema with one read; Alembic only when the database is not at head."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bot.history.db import (
    HEAD_REVISION,
    create_history_engine,
    downgrade,
    schema_is_current,
    session_factory,
    stamped_revisions,
    upgrade,
)
from bot.history.recorder import HistoryRecorder

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def history_engine(database_url: str) -> Iterator[Engine]:
    """An engine on the module's database, dropped back to an empty database after the test."""
    engine = create_history_engine(database_url)
    try:
        yield engine
    finally:
        downgrade(engine, "base")
        engine.dispose()


def _stamped(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return stamped_revisions(connection)


def test_an_up_to_date_history_opens_in_a_new_process_without_importing_alembic(
    history_engine: Engine, database_url: str
) -> None:
    upgrade(history_engine)
    code = (
        "import sys\n"
        "from bot.history.recorder import HistoryRecorder\n"
        f"recorder = HistoryRecorder.from_url({database_url!r})\n"
        "assert recorder.available, recorder.problem\n"
        "print('alembic' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.split() == ["False"], proc.stderr


def test_a_new_and_an_older_history_are_not_current_and_opening_them_upgrades_to_head(history_engine: Engine) -> None:
    assert _stamped(history_engine) == set()
    assert not schema_is_current(history_engine)
    upgrade(history_engine, "0004_sqlite_search_facets")
    assert not schema_is_current(history_engine)

    recorder = HistoryRecorder(session_factory(history_engine), engine=history_engine, migrate=True)
    assert recorder.available, recorder.problem
    assert _stamped(history_engine) == {HEAD_REVISION}
    assert schema_is_current(history_engine)
