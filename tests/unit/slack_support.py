"""The real Slack app (bolt, the HTTP front, the history) against the Slack stand-in, with a stand-in
investigator: the Slack side is what these tests exercise, so no cluster is needed.

`StandInInvestigator` answers every question NO_FAULT_FOUND for the namespaces it is given, records
the investigation in the history the way `bot.investigation.Investigator` does, and can be held at a
gate (to keep investigations running while a test looks at acks and queues).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.history.enums import Origin
from bot.history.ids import new_investigation_id
from bot.history.recorder import Asker, HistoryRecorder
from bot.history.service import Person, WorkloadRef
from bot.playbook.models import InvestigationResult, StepResult, StepStatus, Verdict, VerdictCode
from bot.settings import BotSettings
from bot.slack.app import build_app, build_deps
from bot.slack.flows import SlackDeps
from bot.slack.http import HttpLimits, SlackHttpServer
from bot.slack.pictures import WebLinks
from bot.slack.serve import web_ui_for
from lab.slackstub import SlackSender, SlackStub

SECRET = "unit-test-signing-secret"


class StandInInvestigator:
    """Answers NO_FAULT_FOUND about `namespaces`, after `gate` (when given) opens."""

    def __init__(
        self,
        history: HistoryRecorder | None,
        *,
        namespaces: tuple[str, ...] = ("shop",),
        gate: threading.Event | None = None,
        record: bool = True,
        steps: tuple[StepResult, ...] | None = None,
    ) -> None:
        self.history = history
        self.steps = steps
        """The steps every answer carries (default: one passing "resolve names" step)."""
        self.namespaces = namespaces
        self.gate = gate
        self.record = record
        self.started: list[str] = []
        self.traced: list[bool] = []
        self.finished: list[str] = []
        self._lock = threading.Lock()

    async def investigate(
        self,
        text: str,
        *,
        on_step: Callable[[StepResult], None] | None = None,
        default_namespace: str | None = None,
        allowed_namespaces: frozenset[str] | None = None,
        investigation_id: str | None = None,
        asker: Asker | None = None,
        trace: bool = False,
    ) -> InvestigationResult:
        with self._lock:
            self.started.append(text)
            self.traced.append(trace)
        if self.gate is not None:
            opened = await asyncio.to_thread(self.gate.wait, 60)
            assert opened, "the test never opened the gate"
        started = datetime.now(UTC)
        inv_id = new_investigation_id(started)
        recorded: str | None = None
        if self.history is not None and self.record:
            who = asker or Asker(Person("cli", "cli"), Origin.CLI)
            ref = WorkloadRef("deployment", self.namespaces[0] if self.namespaces else None, "frontend", "deploy/frontend")
            recorded = self.history.start(text, who, ref, ref, self.namespaces)
            inv_id = recorded or inv_id
        step = StepResult("resolve names", StepStatus.PASS, f"checked {text[:40]}")
        steps = self.steps or (step,)
        for each in steps:
            if on_step is not None:
                on_step(each)
        result = InvestigationResult(
            id=inv_id,
            question=text,
            source="deploy/frontend",
            target="svc/api",
            verdict=Verdict(VerdictCode.NO_FAULT_FOUND, "nothing wrong found"),
            steps=steps,
            findings=(),
            duration_ms=1.0,
            started_at=started,
            namespaces=self.namespaces,
        )
        if self.history is not None and self.record:
            for order, each in enumerate(steps):
                self.history.step(recorded, each, order)
            self.history.finish(recorded, result)
        with self._lock:
            self.finished.append(text)
        return result

    def close(self) -> None:
        pass


def settings_for(stub: SlackStub, database_url: str, **extra: Any) -> BotSettings:
    return BotSettings(
        database_url=SecretStr(database_url),
        slack_bot_token=SecretStr(stub.state.bot_token),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=stub.base_url,
        **extra,
    )


@dataclass
class Rig:
    """One app process's worth of the Slack side: deps, the HTTP endpoint and a sender."""

    stub: SlackStub
    deps: SlackDeps
    server: SlackHttpServer
    sender: SlackSender
    investigator: StandInInvestigator
    extra: dict[str, Any] = field(default_factory=dict)

    def idle(self, timeout: float = 30) -> None:
        assert self.deps.in_flight.wait_idle(timeout), "the app did not finish answering"


@contextmanager
def app_rig(
    stub: SlackStub,
    database_url: str,
    *,
    limits: HttpLimits | None = None,
    namespaces: tuple[str, ...] = ("shop",),
    gate: threading.Event | None = None,
    record: bool = True,
    web: bool = False,
    steps: tuple[StepResult, ...] | None = None,
    **settings_extra: Any,
) -> Iterator[Rig]:
    """The app served on 127.0.0.1 (port 0) with the stand-in investigator (and the web UI, when `web`)."""
    settings = settings_for(stub, database_url, **settings_extra)
    made: list[StandInInvestigator] = []

    def new_investigator(s: BotSettings, history: HistoryRecorder | None) -> StandInInvestigator:
        made.append(StandInInvestigator(history, namespaces=namespaces, gate=gate, record=record, steps=steps))
        return made[-1]

    deps = build_deps(settings, new_investigator)
    web_ui = web_ui_for(settings, deps.history, SECRET) if web and deps.history is not None else None
    server = SlackHttpServer(build_app(settings, deps), signing_secret=SECRET, limits=limits, web=web_ui)
    if web_ui is not None:
        deps.web_links = WebLinks(server.origin, web_ui.signer)
    url = server.start()
    try:
        yield Rig(stub, deps, server, SlackSender(url, SECRET, stub), made[0])
    finally:
        deps.in_flight.wait_idle(30)
        server.stop()
        deps.close()


def all_text(stub: SlackStub) -> str:
    """Everything the bot showed anyone (public, threads, ephemeral; text and blocks), as one string."""
    import json

    shown = [m for m in stub.state.messages(include_ephemeral=True) if m.bot_id or m.ephemeral]
    return "\n".join(m.text + json.dumps(m.blocks) for m in shown)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"
