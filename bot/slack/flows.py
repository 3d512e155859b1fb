"""The use cases behind the Slack app, run after the request was acknowledged.

`answer_question` is the main one: investigate, keep one message in the thread up to date as steps
finish, end with the verdict. The others serve the buttons (re-run, evidence, resolved) and the
`/reach search|resolve|digest|help` commands. All Slack calls go through `SlackPoster`, so a Slack
outage never stops an investigation, and every request is written to the audit log.

This module is longer than the project's ~600 lines: it still holds the thread plumbing and the
`SlackDeps` container beside the flows (splitting them out is the next step, not done yet).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from bot.cluster.errors import ClusterUnavailable, NamespaceNotAllowed
from bot.digest.flows import DigestDeps
from bot.errors import BadInput, KubereachError
from bot.history import service
from bot.history.db import history_errors
from bot.history.enums import AuditAction, Origin
from bot.history.errors import HistoryError, HistoryUnavailable, InvestigationNotFound
from bot.history.ids import new_investigation_id
from bot.history.recorder import HistoryRecorder
from bot.history.search import SearchFilters, search_investigations
from bot.history.service import Person
from bot.history.views import Asker
from bot.parse import ParseError
from bot.playbook.models import InvestigationResult, StepResult, Verdict
from bot.render import blocks as render
from bot.settings import BotSettings
from bot.slack.access import ChannelAccess, refusal_text
from bot.slack.dedupe import DeliveryDedupe
from bot.slack.digest_command import DigestReply
from bot.slack.groups import GroupAccess, allowed_namespaces
from bot.slack.ids import ActionId
from bot.slack.messaging import EVIDENCE_INLINE_MAX, SlackPoster
from bot.slack.pictures import WebLinks, link_block, share_picture
from bot.slack.pools import WorkPools

log = logging.getLogger("kubereach.slack")
T = TypeVar("T")

PROGRESS_UPDATE_EVERY_S = 0.5
"""Least time between two updates of the progress message (Slack allows about one chat.update a second)."""
KEPT_RESULTS = 500
UNRECORDED_NOTE = ":warning: The history database did not record this investigation, so it cannot be marked resolved."
INVESTIGATION_ID = re.compile(r"inv_[A-Za-z0-9_-]{1,40}")

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
    """What the app needs of `bot.investigation.Investigator` (injected by the composition root, so bot.slack
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
        trace: bool = False,
    ) -> InvestigationResult:
        """Run one investigation (see `Investigator.investigate`)."""

    def close(self) -> None:
        """Release the cluster client."""


NewInvestigator = Callable[[BotSettings, HistoryRecorder | None], Investigates]
"""Builds the investigator of a process from its settings and history (`bot.investigation.Investigator`)."""
DigestHandler = Callable[[str, str, Person, DigestDeps], DigestReply]
"""`bot.slack.digest_command.handle(text, channel, person, digest_deps)`."""


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
    namespaces: tuple[str, ...] = ()
    """The namespaces the investigation involved: who may act on it (see `visible_run`)."""


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
    pools: WorkPools = field(default_factory=WorkPools)
    digest_handler: DigestHandler | None = None
    """Serves `/reach digest …` when digests are set up (see `app.build_deps`)."""
    digest: DigestDeps | None = None
    """What `digest_handler` needs (`bot.digest.flows.DigestDeps`)."""
    groups: GroupAccess | None = None
    """Access granted by user group (`usergroup_namespaces`), when set."""
    web_links: WebLinks | None = None
    """Signed links to the web UI, when `serve` serves it (set once the server is bound)."""
    recent: OrderedDict[str, PastRun] = field(default_factory=OrderedDict)
    _recent_lock: threading.Lock = field(default_factory=threading.Lock)

    def remember(self, result: InvestigationResult, channel: str, thread_ts: str | None) -> None:
        """Keep a finished run in memory for its buttons (the history has it too)."""
        with self._recent_lock:
            self.recent[result.id] = PastRun(
                result.question, result.verdict, result.steps, channel, thread_ts, tuple(result.namespaces)
            )
            while len(self.recent) > KEPT_RESULTS:
                self.recent.popitem(last=False)

    def past_run(self, investigation_id: str) -> PastRun | None:
        """A run by id: from memory, else from the history; None when neither has it.

        Raises `HistoryUnavailable` when the history database does not answer (that is not "not found").
        """
        with self._recent_lock:
            kept = self.recent.get(investigation_id)
        if kept is not None or self.history is None:
            return kept
        try:
            with history_errors(), self.history.sessions() as session:
                view = service.get_investigation(session, investigation_id)
        except InvestigationNotFound:
            return None
        except HistoryUnavailable as exc:
            log.error("history: cannot read investigation %s: %s", investigation_id, type(exc.__cause__ or exc).__name__)
            raise HistoryUnavailable("the history database did not answer", hint="try again shortly") from exc
        return PastRun(view.question, view.verdict, view.steps, view.channel, view.thread_ts, tuple(view.namespaces))

    def recorded(self, investigation_id: str) -> bool:
        """Whether the history holds `investigation_id` (so its Resolved button can work)."""
        if self.history is None:
            return False
        try:
            with history_errors(), self.history.sessions() as session:
                service.get_investigation(session, investigation_id)
        except (HistoryUnavailable, InvestigationNotFound):
            return False
        return True

    def close(self) -> None:
        """Stop the pools, cancel what still runs (the grace is over), release the investigator (its agent
        channels close on the loop), then stop the loop."""
        self.pools.close()
        self.dedupe.close()
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
    trace: bool = False
    """Follow a marked probe hop by hop (the Trace the packet button)."""


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
    """Write one request to the audit log (an excerpt, see `service.audit`); a database problem is logged, never shown."""
    if deps.history is None:
        return
    try:
        with history_errors(), deps.history.sessions.begin() as session:
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
    except HistoryUnavailable as exc:
        log.error("audit: cannot record a %s request: %s", action.value, exc)


def esc(text: str) -> str:
    """Text from a person or the cluster, safe inside a Slack message: no mention, broadcast or link can ride on it."""
    return render.escape(text)


def _set_thread(deps: SlackDeps, investigation_id: str, channel: str, thread_ts: str) -> None:
    if deps.history is None:
        return
    try:
        with history_errors(), deps.history.sessions.begin() as session:
            service.set_thread(session, investigation_id, channel, thread_ts)
    except (HistoryError, InvestigationNotFound) as exc:
        log.error("history: cannot attach the thread of %s: %s", investigation_id, type(exc.__cause__ or exc).__name__)


def _problem_text(exc: KubereachError) -> str:
    """A failure in words a person can act on (our errors carry a hint; never a traceback); their text escaped."""
    if isinstance(exc, ParseError):
        return f":thinking_face: {esc(exc.message)}\nTry: `{esc(exc.closest_form)}` — for example `{esc(exc.example)}`"
    hint = f"\n{esc(exc.hint)}" if exc.hint else ""
    if isinstance(exc, ClusterUnavailable):
        return f":warning: I could not ask the cluster: {esc(exc.message)}{hint}"
    return f":warning: {esc(exc.message)}{hint}"


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
                render.message_text(f"<@{esc(ask.user_id)}> asked: {esc(ask.text)}"),
                render.notice_blocks(f":speech_balloon: <@{esc(ask.user_id)}> asked: *{esc(render.clip(ask.text, 2500, ''))}*"),
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
            trace=ask.trace,
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
        thread.show(esc(render.progress_text(ask.text, steps)), render.progress_blocks(ask.text, steps, note=note))
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
        reason = f"The question involves namespace `{esc(exc.namespace)}`"
        deps.poster.ephemeral(ask.channel, ask.user_id, refusal_text(exc.allowed, reason), thread_ts=ask.thread_ts)
        audit(deps, who, AuditAction.ASK, ask.text, allowed=False, channel=ask.channel, reason=exc.message)
        return None
    except BadInput as exc:
        # An unreadable question: tell the asker privately (a mention gets the answer in its thread).
        if ask.echo:
            deps.poster.ephemeral(ask.channel, ask.user_id, _problem_text(exc))
        else:
            deps.poster.post(
                ask.channel,
                render.message_text(esc(exc.message)),
                render.notice_blocks(_problem_text(exc)),
                thread_ts=ask.thread_ts,
            )
        audit(deps, who, AuditAction.ASK, ask.text, allowed=True, channel=ask.channel, reason=f"unreadable: {exc.message}")
        return None
    except KubereachError as exc:
        thread.show(render.message_text(esc(exc.message)), render.notice_blocks(_problem_text(exc)), final=True)
        audit(deps, who, AuditAction.ASK, ask.text, allowed=True, channel=ask.channel, reason=f"failed: {exc.message}")
        return None
    changes = None
    if previous is not None:
        changes = render.changes_since(previous.verdict, previous.steps, result.verdict, result.steps)
    blocks = render.verdict_blocks(result, changes=changes, asked_by=f"<@{esc(ask.user_id)}>")
    recorded = deps.recorded(result.id)
    if not recorded:
        blocks = _unrecorded(blocks)
    elif deps.web_links is not None and len(blocks) < render.MAX_BLOCKS:
        blocks.append(link_block(deps.web_links.investigation(result.id, ask.channel, deps.access.namespaces_for(ask.channel))))
    thread.show(esc(render.verdict_text(result)), blocks, final=True)
    if deps.settings.slack_pictures and thread.thread_ts is not None and (result.steps or result.verdict.hop):
        share_picture(deps.poster, result, ask.channel, thread.thread_ts)
    if recorded and thread.thread_ts is not None:
        _set_thread(deps, result.id, ask.channel, thread.thread_ts)
    deps.remember(result, ask.channel, thread.thread_ts)
    audit(deps, who, AuditAction.ASK, ask.text, allowed=True, channel=ask.channel, investigation_id=result.id)
    return result


def _denied_text(investigation_id: str) -> str:
    shown = investigation_id if INVESTIGATION_ID.fullmatch(investigation_id) else "inv_…"
    return f":warning: There is no investigation `{esc(shown)}` in this channel."


def _unrecorded(blocks: list[render.Block]) -> list[render.Block]:
    """A verdict the history did not take: no Resolved button (it could not work), and say why."""
    kept: list[render.Block] = []
    for block in blocks:
        if block.get("type") != "actions":
            kept.append(block)
            continue
        elements = [e for e in block.get("elements", []) if e.get("action_id") != ActionId.RESOLVED.value]
        kept.append(render.context(UNRECORDED_NOTE))
        kept.append({**block, "elements": elements})
    return render.fit_blocks(kept)


def may_see(access: ChannelAccess, channel: str, past: PastRun) -> str | None:
    """Why `channel` may not act on `past` (None when it may): every namespace it involved must be
    one the channel may ask about; one that involved none belongs to its own channel only."""
    allowed = access.namespaces_for(channel)
    if allowed is None:
        return None
    if past.namespaces:
        hidden = sorted(set(past.namespaces) - allowed)
        return f"involves namespace {', '.join(hidden)} not allowed here" if hidden else None
    return None if past.channel == channel else "from another channel and involves no namespace"


def visible_run(
    deps: SlackDeps, action: AuditAction, investigation_id: str, channel: str, user_id: str, user_name: str, text: str
) -> PastRun | None:
    """The investigation `investigation_id` if this channel may act on it; otherwise tell the person
    privately and at once (unknown and not-allowed read the same, so no other channel's ids leak), and
    audit the refusal. Allowed actions are audited by the caller once done."""
    who = Person(user_id, user_name)
    past: PastRun | None = None
    reason = "not an investigation id"
    if INVESTIGATION_ID.fullmatch(investigation_id):
        try:
            past = deps.past_run(investigation_id)
        except HistoryUnavailable:
            deps.poster.ephemeral(channel, user_id, ":warning: The history database did not answer; try again shortly.")
            audit(deps, who, action, text, allowed=False, channel=channel, reason="history unavailable")
            return None
        reason = "no such investigation"
    if past is not None:
        refused = may_see(deps.access, channel, past)
        if refused is None:
            return past
        reason = refused
    deps.poster.ephemeral(channel, user_id, _denied_text(investigation_id))
    known = investigation_id if past is not None else None
    audit(deps, who, action, text, allowed=False, channel=channel, reason=reason, investigation_id=known)
    return None


def _thread_here(channel: str, thread_ts: str | None, past: PastRun) -> str | None:
    """Where to answer: the clicked thread, else the investigation's own thread when it is in this channel."""
    return thread_ts or (past.thread_ts if past.channel == channel else None)


def investigate_later(deps: SlackDeps, ask: SlackAsk, *, previous: PastRun | None = None) -> None:
    """Hand `ask` to the investigation pool; when the pool is full, say "queued" in its thread first."""
    allowed = deps.access.namespaces_for(ask.channel)
    ahead = deps.pools.reserve()
    if ahead and (allowed is None or allowed):
        thread = _Thread(deps, ask)
        thread.ensure()
        ask = dataclasses.replace(ask, thread_ts=thread.thread_ts)
        plural = "s" if ahead != 1 else ""
        text = f":hourglass_flowing_sand: Queued: {ahead} investigation{plural} ahead; this one starts when a place frees up."
        deps.poster.post(ask.channel, render.message_text(text), render.notice_blocks(text), thread_ts=ask.thread_ts)
    deps.in_flight.begin()

    def job() -> None:
        try:
            run_investigation(deps, ask, previous=previous)
        except Exception:  # the pool's boundary: logged with its traceback through the structured logger
            log.exception("slack: an investigation failed unexpectedly")
            deps.poster.ephemeral(ask.channel, ask.user_id, ":warning: kubereach hit an unexpected problem; it is logged.")
        finally:
            deps.in_flight.end()

    def dropped() -> None:
        try:
            text = ":warning: The bot was stopped before this question's turn came. Ask again to get a verdict."
            if ask.thread_ts:
                deps.poster.post(ask.channel, render.message_text(text), render.notice_blocks(text), thread_ts=ask.thread_ts)
            else:
                deps.poster.ephemeral(ask.channel, ask.user_id, text)
        finally:
            deps.in_flight.end()

    deps.pools.run_reserved(job, dropped)


def rerun(
    deps: SlackDeps,
    investigation_id: str,
    channel: str,
    user_id: str,
    user_name: str,
    thread_ts: str | None,
    *,
    trace: bool = False,
) -> None:
    """Ask the same question again in the same thread (queued on the investigation pool), and say what
    changed; with `trace` (the Trace the packet button) the probe is followed hop by hop."""
    past = visible_run(deps, AuditAction.RERUN, investigation_id, channel, user_id, user_name, investigation_id)
    if past is None:
        return
    who = Person(user_id, user_name)
    audit(deps, who, AuditAction.RERUN, investigation_id, allowed=True, channel=channel, investigation_id=investigation_id)
    ask = SlackAsk(past.question, channel, user_id, user_name, _thread_here(channel, thread_ts, past), echo=False, trace=trace)
    investigate_later(deps, ask, previous=past)


def show_evidence(
    deps: SlackDeps, investigation_id: str, channel: str, user_id: str, thread_ts: str | None, user_name: str = ""
) -> None:
    """Post the evidence of every step in the thread; long evidence as a file."""
    name = user_name or user_id
    past = visible_run(deps, AuditAction.EVIDENCE, investigation_id, channel, user_id, name, investigation_id)
    if past is None:
        return
    who = Person(user_id, name)
    audit(deps, who, AuditAction.EVIDENCE, investigation_id, allowed=True, channel=channel, investigation_id=investigation_id)
    text = render.evidence_text(investigation_id, past.question, past.steps)
    where = _thread_here(channel, thread_ts, past)
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
    said_text = f"{investigation_id} {note}"
    if deps.history is None:
        deps.poster.ephemeral(channel, user_id, ":warning: No history database is configured, so resolutions cannot be kept.")
        return False
    past = visible_run(deps, AuditAction.RESOLVE, investigation_id, channel, user_id, user_name, said_text)
    if past is None:
        return False
    try:
        with history_errors(), deps.history.sessions.begin() as session:
            service.resolve(session, investigation_id, who, note)
    except InvestigationNotFound:
        deps.poster.ephemeral(channel, user_id, _denied_text(investigation_id))
        audit(deps, who, AuditAction.RESOLVE, said_text, allowed=False, channel=channel, reason="not in the history")
        return False
    except HistoryError as exc:
        deps.poster.ephemeral(channel, user_id, f":warning: {esc(exc.message)}")
        audit(deps, who, AuditAction.RESOLVE, said_text, allowed=True, channel=channel, reason=exc.message)
        return False
    except HistoryUnavailable as exc:
        log.error("history: cannot record the resolution of %s: %s", investigation_id, exc)
        deps.poster.ephemeral(channel, user_id, ":warning: The history database did not take the resolution; try again shortly.")
        return False
    audit(deps, who, AuditAction.RESOLVE, said_text, allowed=True, channel=channel, investigation_id=investigation_id)
    said = f" — “{esc(render.clip(note, 1500, ''))}”" if note else ""
    hint = "" if note else f"\nAdd what fixed it: `/reach resolve {investigation_id} <what fixed it>`"
    deps.poster.post(
        channel,
        render.message_text(f"Resolved by {esc(user_name)}"),
        render.notice_blocks(f":white_check_mark: Resolved by <@{esc(user_id)}>{said}{hint}"),
        thread_ts=_thread_here(channel, thread_ts, past),
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
        with history_errors(), deps.history.sessions() as session:
            hits = search_investigations(session, words, filters, limit=10)
    except HistoryUnavailable as exc:
        log.error("history: search failed: %s", exc)
        deps.poster.ephemeral(channel, user_id, ":warning: The history database could not be searched; try again shortly.")
        return
    audit(deps, who, AuditAction.SEARCH, words, allowed=True, channel=channel)
    if not hits:
        deps.poster.ephemeral(channel, user_id, f"No past investigation matches `{esc(render.clip(words, 200, ''))}`.")
        return
    lines = []
    for hit in hits:
        verdict = hit.verdict_code.value if hit.verdict_code else hit.status
        node = f" on `{esc(hit.node)}`" if hit.node else ""
        question = esc(render.clip(hit.question, 200, ""))
        lines.append(
            f"• `{esc(hit.id)}` {hit.started_at:%Y-%m-%d %H:%M} *{esc(str(verdict))}*{node} — {question}"
            f" (asked by {esc(hit.asked_by_name)})"
        )
    title = f"*{len(hits)} past investigation{'s' if len(hits) != 1 else ''}* for `{esc(render.clip(words, 200, ''))}`"
    text = title + "\n" + "\n".join(lines)
    deps.poster.ephemeral(channel, user_id, render.message_text(text), [render.section(text)])


def help_text() -> str:
    """What `/reach help` answers."""
    return HELP_TEXT
