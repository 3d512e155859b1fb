"""The use cases behind the Slack app, run after the request was acknowledged.

`answer_question` is the main one: investigate, keep one message in the thread up to date as steps
finish, end with the verdict. The others serve the buttons (re-run, evidence, resolved) and the
`/reach search|resolve|digest|help` commands. All Slack calls go through `SlackPoster`, so a Slack
outage never stops an investigation, and every request is written to the audit log.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from bot.cluster.errors import ClusterUnavailable, NamespaceNotAllowed
from bot.errors import BadInput, KubereachError
from bot.history import service
from bot.history.enums import AuditAction, Origin
from bot.history.errors import HistoryError
from bot.history.ids import new_investigation_id
from bot.history.recorder import Asker, HistoryRecorder
from bot.history.search import SearchFilters, search_investigations
from bot.history.service import Person
from bot.parse import ParseError
from bot.playbook.models import InvestigationResult, StepResult, Verdict
from bot.render import blocks as render
from bot.settings import BotSettings
from bot.slack.access import ChannelAccess, refusal_text
from bot.slack.dedupe import DeliveryDedupe
from bot.slack.groups import GroupAccess, allowed_namespaces
from bot.slack.messaging import EVIDENCE_INLINE_MAX, SlackPoster

log = logging.getLogger("kubereach.slack")
T = TypeVar("T")

PROGRESS_UPDATE_EVERY_S = 0.5
"""Least time between two updates of the progress message (Slack allows about one chat.update a second)."""
KEPT_RESULTS = 500

HELP_TEXT = (
    "*kubereach* finds why one workload cannot reach another, from the nodes' kernel state.\n"
    "• `/reach why can't frontend reach api` (or `@kubereach …` in a channel or thread) — investigate\n"
    "• `/reach search <words>` — past investigations (names, verdicts, evidence)\n"
    "• `/reach resolve <inv_id> <what fixed it>` — record how a problem was resolved\n"
    "• `/reach digest …` — this channel's health digest\n"
    "• `/reach help` — this text\n"
    "Each verdict has buttons: *Re-run* (and what changed), *Show evidence*, *Resolved*."
)


class Investigates(Protocol):
    """What the app needs of `bot.investigate.Investigator` (injected by the composition root, so bot.slack
    never imports the cluster client)."""

    async def investigate(
        self,
        text: str,
        *,
        on_step: Callable[[StepResult], None] | None = None,
        default_namespace: str | None = None,
        allowed_namespaces: frozenset[str] | None = None,
        investigation_id: str | None = None,
        asker: Asker | None = None,
    ) -> InvestigationResult:
        """Run one investigation (see `Investigator.investigate`)."""

    def close(self) -> None:
        """Release the cluster client."""


NewInvestigator = Callable[[BotSettings, HistoryRecorder | None], Investigates]
"""Builds the investigator of a process from its settings and history (`bot.investigate.Investigator`)."""
DigestHandler = Callable[[str, str, Person, Any], Any]
"""`bot.digest.slack.handle(text, channel, person, digest_deps)`."""


class InvestigationLoop:
    """One event loop on its own thread, where every investigation of the process runs."""

    def __init__(self) -> None:
        """Start the loop thread."""
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="kubereach-investigations", daemon=True)
        self._thread.start()

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run `work` on the loop; the future is done when it is."""
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def cancel_all(self, timeout: float = 10.0) -> int:
        """Cancel every investigation still running on the loop (shutdown after the grace); returns how many."""
        if not self.loop.is_running():
            return 0

        async def cancel() -> int:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=timeout)
            return len(tasks)

        try:
            return asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(timeout=timeout + 1)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.error("investigations did not stop when cancelled: %s", exc)
            return 0

    def close(self) -> None:
        """Stop the loop and its thread."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class WorkInFlight:
    """Counts requests being worked on after their ack, so a caller can wait until all are answered."""

    def __init__(self) -> None:
        """Nothing in flight."""
        self._count = 0
        self._done = threading.Condition()

    def begin(self) -> None:
        """One more request is being worked on."""
        with self._done:
            self._count += 1

    def end(self) -> None:
        """One request is answered."""
        with self._done:
            self._count -= 1
            self._done.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is in flight; False if `timeout` seconds passed first."""
        with self._done:
            return self._done.wait_for(lambda: self._count == 0, timeout)


@dataclass(frozen=True)
class PastRun:
    """What a re-run compares with and what Show evidence shows."""

    question: str
    verdict: Verdict | None
    steps: tuple[StepResult, ...]
    channel: str | None
    thread_ts: str | None


@dataclass
class SlackDeps:
    """What the Slack app's handlers need; built once per process (see `app.build_deps`)."""

    settings: BotSettings
    investigator: Investigates
    history: HistoryRecorder | None
    poster: SlackPoster
    access: ChannelAccess
    loop: InvestigationLoop
    dedupe: DeliveryDedupe = field(default_factory=DeliveryDedupe)
    in_flight: WorkInFlight = field(default_factory=WorkInFlight)
    digest_handler: DigestHandler | None = None
    """Serves `/reach digest …` when digests are set up (see `app.build_deps`)."""
    digest: Any = None
    """What `digest_handler` needs (`bot.digest.flows.DigestDeps`)."""
    groups: GroupAccess | None = None
    """Access granted by user group (`usergroup_namespaces`), when set."""
    recent: OrderedDict[str, PastRun] = field(default_factory=OrderedDict)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, result: InvestigationResult, channel: str, thread_ts: str | None) -> None:
        """Keep a finished run in memory for its buttons (the history has it too)."""
        with self._recent_lock:
            self.recent[result.id] = PastRun(result.question, result.verdict, result.steps, channel, thread_ts)
            while len(self.recent) > KEPT_RESULTS:
                self.recent.popitem(last=False)

    def past_run(self, investigation_id: str) -> PastRun | None:
        """A run by id: from memory, else from the history."""
        with self._recent_lock:
            kept = self.recent.get(investigation_id)
        if kept is not None or self.history is None:
            return kept
        try:
            with self.history.sessions() as session:
                view = service.get_investigation(session, investigation_id)
        except (SQLAlchemyError, HistoryError):
            return None
        return PastRun(view.question, view.verdict, view.steps, view.channel, view.thread_ts)

    def close(self) -> None:
        """Cancel what still runs (the grace is over), release the investigator (its agent channels close
        on the loop), then stop the loop."""
        self.loop.cancel_all()
        self.investigator.close()
        self.loop.close()


@dataclass(frozen=True)
class SlackAsk:
    """A question as it arrived: the text, who asked, where, and where to answer."""

    text: str
    channel: str
    user_id: str
    user_name: str
    thread_ts: str | None
    """The mention's thread (or the mention itself); None for a slash command (a new thread is made)."""
    echo: bool
    """Post a message echoing the question as the new thread's parent (slash commands)."""


def audit(
    deps: SlackDeps,
    who: Person,
    action: AuditAction,
    text: str,
    *,
    allowed: bool,
    channel: str | None,
    reason: str | None = None,
    investigation_id: str | None = None,
) -> None:
    """Write one request to the audit log; a database problem is logged, never shown."""
    if deps.history is None:
        return
    try:
        with deps.history.sessions.begin() as session:
            service.audit(
                session,
                who=who,
                action=action,
                text=text,
                allowed=allowed,
                channel=channel,
                reason=reason,
                investigation_id=investigation_id,
            )
    except SQLAlchemyError as exc:
        log.error("audit: cannot record a %s request: %s", action.value, exc)


def _set_thread(deps: SlackDeps, investigation_id: str, channel: str, thread_ts: str) -> None:
    if deps.history is None:
        return
    try:
        with deps.history.sessions.begin() as session:
            service.set_thread(session, investigation_id, channel, thread_ts)
    except (SQLAlchemyError, HistoryError) as exc:
        log.error("history: cannot attach the thread of %s: %s", investigation_id, exc)


def _problem_text(exc: KubereachError) -> str:
    """A failure in words a person can act on (our errors carry a hint; never a traceback)."""
    if isinstance(exc, ParseError):
        return f":thinking_face: {exc.message}\nTry: `{exc.closest_form}` — for example `{exc.example}`"
    if isinstance(exc, ClusterUnavailable):
        return f":warning: I could not ask the cluster: {exc.message}" + (f"\n{exc.hint}" if exc.hint else "")
    return f":warning: {exc.message}" + (f"\n{exc.hint}" if exc.hint else "")


@dataclass
class _Thread:
    """Where the answer goes, created on first use (so a refused question leaves no public trace)."""

    deps: SlackDeps
    ask: SlackAsk
    ts: str | None = None
    thread_ts: str | None = None
    last_update: float = 0.0

    def __post_init__(self) -> None:
        self.thread_ts = self.ask.thread_ts

    def ensure(self) -> None:
        poster, ask = self.deps.poster, self.ask
        if self.thread_ts is None and ask.echo:
            self.thread_ts = poster.post(
                ask.channel,
                render.message_text(f"<@{ask.user_id}> asked: {ask.text}"),
                render.notice_blocks(f":speech_balloon: <@{ask.user_id}> asked: *{render.clip(ask.text, 2500, '')}*"),
            )

    def show(self, text: str, blocks: list[render.Block], *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and self.ts is not None and now - self.last_update < PROGRESS_UPDATE_EVERY_S:
            return
        self.ensure()
        self.ts = self.deps.poster.update_or_post(self.ask.channel, self.ts, text, blocks, thread_ts=self.thread_ts)
        self.last_update = now


_DONE = object()


def run_investigation(deps: SlackDeps, ask: SlackAsk, *, previous: PastRun | None = None) -> InvestigationResult | None:
    """Investigate `ask` and answer in its thread; `previous` makes it a re-run that says what changed.

    Returns the result, or None when the question was refused or could not be read (the person was told).
    """
    who = Person(ask.user_id, ask.user_name)
    allowed = allowed_namespaces(deps.access, deps.groups, ask.channel, ask.user_id)
    if allowed is not None and not allowed:
        deps.poster.ephemeral(ask.channel, ask.user_id, refusal_text(allowed), thread_ts=ask.thread_ts)
        reason = "channel may ask about no namespace"
        audit(deps, who, AuditAction.ASK, ask.text, allowed=False, channel=ask.channel, reason=reason)
        return None
    events: queue.Queue[object] = queue.Queue()
    asker = Asker(who, Origin.SLACK, ask.channel, ask.thread_ts)
    investigation_id = new_investigation_id(datetime.now(UTC))
    future = deps.loop.submit(
        deps.investigator.investigate(
            ask.text,
            on_step=events.put,
            default_namespace=deps.access.default_namespace(ask.channel, deps.settings.default_namespace),
            allowed_namespaces=allowed,
            investigation_id=investigation_id,
            asker=asker,
        )
    )
    future.add_done_callback(lambda _: events.put(_DONE))
    thread = _Thread(deps, ask)
    note = "re-run" if previous is not None else None
    steps: list[StepResult] = []
    while True:
        item = events.get()
        if item is _DONE:
            break
        assert isinstance(item, StepResult)
        steps.append(item)
        had_thread = thread.thread_ts is not None
        thread.show(render.progress_text(ask.text, steps), render.progress_blocks(ask.text, steps, note=note))
        if not had_thread and thread.thread_ts is not None:
            # A slash command's thread exists from its first step on: the history knows it at once, so
            # a bot stopped mid-investigation can say so in that thread. Written on the investigation's
            # loop, between its step writes (SQLite takes one writer at a time).
            thread_ts = thread.thread_ts
            deps.loop.loop.call_soon_threadsafe(_set_thread, deps, investigation_id, ask.channel, thread_ts)
    try:
        result = future.result()
    except concurrent.futures.CancelledError:
        # The process is stopping and its grace is over: the thread was told (`app.drain`).
        log.info("slack: an investigation was cancelled by shutdown")
        return None
    except NamespaceNotAllowed as exc:
        reason = f"The question involves namespace `{exc.namespace}`"
        deps.poster.ephemeral(ask.channel, ask.user_id, refusal_text(exc.allowed, reason), thread_ts=ask.thread_ts)
        audit(deps, who, AuditAction.ASK, ask.text, allowed=False, channel=ask.channel, reason=exc.message)
        return None
    except BadInput as exc:
        # An unreadable question: tell the asker privately (a mention gets the answer in its thread).
        if ask.echo:
            deps.poster.ephemeral(ask.channel, ask.user_id, _problem_text(exc))
        else:
            deps.poster.post(
                ask.channel, render.message_text(exc.message), render.notice_blocks(_problem_text(exc)), thread_ts=ask.thread_ts
            )
        audit(deps, who, AuditAction.ASK, ask.text, allowed=True, channel=ask.channel, reason=f"unreadable: {exc.message}")
        return None
    except KubereachError as exc:
        thread.show(render.message_text(exc.message), render.notice_blocks(_problem_text(exc)), final=True)
        audit(deps, who, AuditAction.ASK, ask.text, allowed=True, channel=ask.channel, reason=f"failed: {exc.message}")
        return None
    changes = None
    if previous is not None:
        changes = render.changes_since(previous.verdict, previous.steps, result.verdict, result.steps)
    thread.show(
        render.verdict_text(result), render.verdict_blocks(result, changes=changes, asked_by=f"<@{ask.user_id}>"), final=True
    )
    if thread.thread_ts is not None:
        _set_thread(deps, result.id, ask.channel, thread.thread_ts)
    deps.remember(result, ask.channel, thread.thread_ts)
    audit(deps, who, AuditAction.ASK, ask.text, allowed=True, channel=ask.channel, investigation_id=result.id)
    return result


def rerun(
    deps: SlackDeps, investigation_id: str, channel: str, user_id: str, user_name: str, thread_ts: str | None
) -> InvestigationResult | None:
    """Ask the same question again in the same thread, and say what changed since that run."""
    past = deps.past_run(investigation_id)
    if past is None:
        gone = f":warning: I no longer have investigation `{investigation_id}`; ask the question again."
        deps.poster.ephemeral(channel, user_id, gone)
        return None
    ask = SlackAsk(past.question, channel, user_id, user_name, thread_ts or past.thread_ts, echo=False)
    return run_investigation(deps, ask, previous=past)


def show_evidence(deps: SlackDeps, investigation_id: str, channel: str, user_id: str, thread_ts: str | None) -> None:
    """Post the evidence of every step in the thread; long evidence as a file."""
    past = deps.past_run(investigation_id)
    if past is None:
        deps.poster.ephemeral(channel, user_id, f":warning: I no longer have the evidence of `{investigation_id}`.")
        return
    text = render.evidence_text(investigation_id, past.question, past.steps)
    where = thread_ts or past.thread_ts
    if len(text) <= EVIDENCE_INLINE_MAX:
        deps.poster.post(
            channel,
            render.message_text(f"Evidence of {investigation_id}"),
            render.evidence_blocks(text, where_rest=f"`kubereach search {investigation_id}`"),
            thread_ts=where,
        )
        return
    uploaded = deps.poster.upload(
        channel,
        where,
        f"{investigation_id}-evidence.txt",
        text,
        f"Evidence of {investigation_id}",
        f"Evidence of `{investigation_id}` ({len(past.steps)} steps)",
    )
    if not uploaded:
        head = render.evidence_blocks(
            text[:EVIDENCE_INLINE_MAX], where_rest=f"the full evidence is in the history as {investigation_id}"
        )
        deps.poster.post(channel, render.message_text(f"Evidence of {investigation_id}"), head, thread_ts=where)


def resolve(
    deps: SlackDeps, investigation_id: str, channel: str, user_id: str, user_name: str, note: str, thread_ts: str | None
) -> bool:
    """Record that `user` resolved the problem (with `note`) and say so in the thread."""
    who = Person(user_id, user_name)
    if deps.history is None:
        deps.poster.ephemeral(channel, user_id, ":warning: No history database is configured, so resolutions cannot be kept.")
        return False
    try:
        with deps.history.sessions.begin() as session:
            service.resolve(session, investigation_id, who, note)
    except HistoryError as exc:
        deps.poster.ephemeral(channel, user_id, f":warning: {exc.message}")
        audit(deps, who, AuditAction.RESOLVE, f"{investigation_id} {note}", allowed=True, channel=channel, reason=exc.message)
        return False
    except SQLAlchemyError as exc:
        log.error("history: cannot record the resolution of %s: %s", investigation_id, exc)
        deps.poster.ephemeral(channel, user_id, ":warning: The history database did not take the resolution; try again shortly.")
        return False
    audit(
        deps,
        who,
        AuditAction.RESOLVE,
        f"{investigation_id} {note}",
        allowed=True,
        channel=channel,
        investigation_id=investigation_id,
    )
    past = deps.past_run(investigation_id)
    where = thread_ts or (past.thread_ts if past else None)
    said = f" — “{render.clip(note, 1500, '')}”" if note else ""
    hint = "" if note else f"\nAdd what fixed it: `/reach resolve {investigation_id} <what fixed it>`"
    deps.poster.post(
        channel,
        render.message_text(f"Resolved by {user_name}"),
        render.notice_blocks(f":white_check_mark: Resolved by <@{user_id}>{said}{hint}"),
        thread_ts=where,
    )
    return True


def search(deps: SlackDeps, words: str, channel: str, user_id: str, user_name: str) -> None:
    """`/reach search …`: past investigations, privately; a restricted channel sees only its own."""
    who = Person(user_id, user_name)
    if deps.history is None:
        deps.poster.ephemeral(channel, user_id, ":warning: No history database is configured.")
        return
    filters = SearchFilters(channel=channel) if deps.access.namespaces_for(channel) is not None else SearchFilters()
    try:
        with deps.history.sessions() as session:
            hits = search_investigations(session, words, filters, limit=10)
    except SQLAlchemyError as exc:
        log.error("history: search failed: %s", exc)
        deps.poster.ephemeral(channel, user_id, ":warning: The history database could not be searched; try again shortly.")
        return
    audit(deps, who, AuditAction.SEARCH, words, allowed=True, channel=channel)
    if not hits:
        deps.poster.ephemeral(channel, user_id, f"No past investigation matches `{render.clip(words, 200, '')}`.")
        return
    lines = []
    for hit in hits:
        verdict = hit.verdict_code.value if hit.verdict_code else hit.status
        node = f" on `{hit.node}`" if hit.node else ""
        lines.append(
            f"• `{hit.id}` {hit.started_at:%Y-%m-%d %H:%M} *{verdict}*{node} — {render.clip(hit.question, 200, '')}"
            f" (asked by {hit.asked_by_name})"
        )
    title = f"*{len(hits)} past investigation{'s' if len(hits) != 1 else ''}* for `{render.clip(words, 200, '')}`"
    text = title + "\n" + "\n".join(lines)
    deps.poster.ephemeral(channel, user_id, render.message_text(text), [render.section(text)])


def help_text() -> str:
    """What `/reach help` answers."""
    return HELP_TEXT
