"""An investigation that cannot run because the Kubernetes API does not answer is recorded as failed
(issue 11: every investigation ends done, failed or interrupted — none lost, none left running)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.cluster.errors import ClusterUnavailable
from bot.history.models import Investigation
from bot.history.recorder import HistoryRecorder
from bot.investigation import Investigator
from bot.settings import AgentSettings, BotSettings


class SilentApi:
    """A cluster client whose API server does not answer."""

    def resolve(self, *args: Any, **kwargs: Any) -> Any:
        raise ClusterUnavailable("the Kubernetes API at https://127.0.0.1:6443 did not answer (timed out)")

    def close(self) -> None:
        pass


def test_an_api_server_that_does_not_answer_leaves_a_failed_record_not_a_lost_one(tmp_path: Path) -> None:
    history = HistoryRecorder.from_url(f"sqlite:///{tmp_path / 'history.db'}")
    investigator = Investigator(BotSettings(agents=AgentSettings(insecure=True)), history)
    investigator._cluster = SilentApi()  # type: ignore[assignment]
    with pytest.raises(ClusterUnavailable):
        asyncio.run(investigator.investigate("why can't frontend reach api"))
    with history.sessions() as session:
        rows = session.scalars(select(Investigation)).all()
    assert [(r.question, r.status.value) for r in rows] == [("why can't frontend reach api", "failed")]
    assert "did not answer" in (rows[0].error or "")
