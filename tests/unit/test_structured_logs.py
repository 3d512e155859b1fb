"""`kubereach ask` writes its log lines in the format KUBEREACH_LOG_FORMAT asks for (JSON: one object a line)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.ask import ask
from bot.settings import BotSettings
from tests.unit.slack_support import StandInInvestigator


class _WarningInvestigator(StandInInvestigator):
    """The stand-in investigator, built like `bot.investigation.Investigator`, that logs one warning."""

    def __init__(self, settings: BotSettings, history: Any = None, metrics: Any = None) -> None:
        super().__init__(None)

    async def investigate(self, text: str, **options: Any) -> Any:
        logging.getLogger("kubereach.investigate").warning("agent node-1 did not answer: %s", "deadline exceeded")
        return await super().investigate(text, **options)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def root_handlers() -> Iterator[None]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_ask_writes_json_log_lines_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, root_handlers: None) -> None:
    monkeypatch.setattr("bot.investigation.Investigator", _WarningInvestigator)
    monkeypatch.setenv("KUBEREACH_LOG_FORMAT", "json")
    result = CliRunner().invoke(ask, ["--json", "--no-history", "why can't frontend reach api"], obj={})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verdict"]["code"] == "NO_FAULT_FOUND"
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert [(x["level"], x["logger"], x["message"]) for x in lines] == [
        ("WARNING", "kubereach.investigate", "agent node-1 did not answer: deadline exceeded")
    ]
