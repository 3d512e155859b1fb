"""What a fresh `kubereach ask` process imports before its first request.

`ask` is a process per question, so its imports are most of its start: each library it loads and does
not use costs every question. These run a new interpreter (the only place where "imported" means
something) and look at `sys.modules` after the CLI has loaded the `ask` command, as `kubereach ask`
does before it runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from bot.history.db import HEAD_REVISION, alembic_config

REPO = Path(__file__).resolve().parents[2]
LOAD_ASK = "import bot.cli as cli; cli._register(); cli.cli.get_command(None, 'ask')"
NOT_FOR_ASK_WITHOUT_HISTORY = ("sqlalchemy", "alembic", "prometheus_client", "rich", "cairosvg", "slack_bolt")


def imported_by(code: str) -> set[str]:
    """The names of every module a new interpreter holds after running `code`."""
    report = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True, cwd=REPO, check=True)
    return set(json.loads(proc.stdout.splitlines()[-1]))


def test_loading_ask_imports_neither_the_history_database_nor_metrics_nor_the_terminal_renderer() -> None:
    modules = imported_by(LOAD_ASK)
    assert "bot.ask" in modules and "bot.investigation" in modules
    assert sorted(m for m in NOT_FOR_ASK_WITHOUT_HISTORY if m in modules) == []


def test_the_import_check_sees_the_history_database_when_it_is_loaded() -> None:
    # Negative control: opening the history (what `ask` does without --no-history) does load SQLAlchemy.
    modules = imported_by(f"{LOAD_ASK}\nimport bot.history.recorder")
    assert "sqlalchemy" in modules


def test_the_head_revision_the_bot_knows_is_the_head_of_the_migration_scripts() -> None:
    # A new migration must move HEAD_REVISION, or every process would compare through Alembic again.
    assert ScriptDirectory.from_config(alembic_config()).get_heads() == [HEAD_REVISION]
