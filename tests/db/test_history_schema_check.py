"""Opening the history checks its schema with one read; Alembic only when the database is not at head."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine

from bot.history.db import (
    HEAD_REVISION,
    schema_is_current,
    session_factory,
    stamped_revisions,
    upgrade,
)
from bot.history.recorder import HistoryRecorder

REPO = Path(__file__).resolve().parents[2]


def _stamped(engine: Engine) -> set[str]:
    with engine.connect() as connection:
        return stamped_revisions(connection)


def test_an_up_to_date_history_opens_in_a_new_process_without_importing_alembic(empty_engine: Engine, database_url: str) -> None:
    upgrade(empty_engine)
    code = (
        "import sys\n"
        "from bot.history.recorder import HistoryRecorder\n"
        f"recorder = HistoryRecorder.from_url({database_url!r})\n"
        "assert recorder.available, recorder.problem\n"
        "print('alembic' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert proc.stdout.split() == ["False"], proc.stderr


def test_a_new_and_an_older_history_are_not_current_and_opening_them_upgrades_to_head(empty_engine: Engine) -> None:
    assert _stamped(empty_engine) == set()
    assert not schema_is_current(empty_engine)
    upgrade(empty_engine, "0004_sqlite_search_facets")
    assert not schema_is_current(empty_engine)

    recorder = HistoryRecorder(session_factory(empty_engine), engine=empty_engine, migrate=True)
    assert recorder.available, recorder.problem
    assert _stamped(empty_engine) == {HEAD_REVISION}
    assert schema_is_current(empty_engine)
