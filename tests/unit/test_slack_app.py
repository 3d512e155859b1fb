"""The Slack app without a cluster: signature checks, retries, access and Slack's limits in the blocks."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from rich.console import Console
from slack_bolt.request import BoltRequest
from slack_sdk.signature import Clock, SignatureVerifier

from bot.investigation import Investigator
from bot.playbook.models import (
    Evidence,
    Finding,
    Hop,
    InvestigationResult,
    NameChoice,
    Person,
    ResolutionView,
    SeenBefore,
    StepResult,
    StepStatus,
    Verdict,
    VerdictCode,
)
from bot.render import blocks as render
from bot.render.document import investigation_document
from bot.render.terminal import investigation_view
from bot.settings import BotSettings
from bot.slack.access import ChannelAccess, refusal_text
from bot.slack.app import build_app, build_deps
from bot.slack.dedupe import DeliveryDedupe, delivery_key
from bot.slack.ids import ActionId, BlockId
from bot.slack.serve import SlackHttpServer
from lab.slackstub import SlackSender, SlackStub
from lab.slackstub.blocks import validate_blocks

# Slack's "Verifying requests from Slack" worked example.
DOC_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
DOC_TIMESTAMP = 1531420618
DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    "&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
DOC_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
SECRET = "unit-test-signing-secret"


class FixedClock(Clock):
    """A clock that says it is `now`."""

    def __init__(self, now: float) -> None:
        self.current = now

    def now(self) -> float:
        return self.current


def _settings(stub: SlackStub, tmp_path: Path, **extra: object) -> BotSettings:
    return BotSettings(
        database_url=SecretStr(f"sqlite:///{tmp_path / 'history.db'}"),
        slack_bot_token=SecretStr(stub.state.bot_token),
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=stub.base_url,
        kubeconfig=tmp_path / "no-kubeconfig",
        **extra,  # type: ignore[arg-type]
    )


def _doc_request() -> BoltRequest:
    return BoltRequest(
        body=DOC_BODY,
        headers={
            "x-slack-request-timestamp": str(DOC_TIMESTAMP),
            "x-slack-signature": DOC_SIGNATURE,
            "content-type": "application/x-www-form-urlencoded",
        },
    )


def test_slacks_documented_example_verifies_with_an_injected_clock() -> None:
    verifier = SignatureVerifier(DOC_SECRET, FixedClock(DOC_TIMESTAMP + 10))
    assert verifier.is_valid(DOC_BODY, str(DOC_TIMESTAMP), DOC_SIGNATURE)
    assert not SignatureVerifier(DOC_SECRET, FixedClock(DOC_TIMESTAMP + 301)).is_valid(
        DOC_BODY, str(DOC_TIMESTAMP), DOC_SIGNATURE
    )


def test_app_accepts_the_documented_example_within_five_minutes_and_rejects_it_after(tmp_path: Path) -> None:
    with SlackStub() as stub:
        settings = _settings(stub, tmp_path).model_copy(update={"slack_signing_secret": SecretStr(DOC_SECRET)})
        deps = build_deps(settings, Investigator)
        try:
            fresh = build_app(settings, deps, clock=FixedClock(DOC_TIMESTAMP + 299))
            stale = build_app(settings, deps, clock=FixedClock(DOC_TIMESTAMP + 301))
            # /webhook-collect is not our command: a verified request gets past the check (bolt: unhandled, 404).
            assert fresh.dispatch(_doc_request()).status != 401
            assert stale.dispatch(_doc_request()).status == 401
        finally:
            deps.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[SlackStub, SlackSender, object]]:
    """The app on 127.0.0.1 with the stand-in as Slack (no cluster: nothing here may reach one)."""
    with SlackStub() as stub:
        stub.state.add_channel("incidents", channel_id="C1")
        stub.state.add_user("ana", user_id="U1")
        settings = _settings(stub, tmp_path)
        deps = build_deps(settings, Investigator)
        server = SlackHttpServer(build_app(settings, deps), signing_secret=SECRET)
        try:
            yield stub, SlackSender(server.start(), SECRET, stub), deps
        finally:
            server.stop()
            deps.close()


@pytest.mark.parametrize(
    "options",
    [
        {"forge": True},
        {"timestamp": 1531420618},
        {"omit_headers": ["X-Slack-Signature"]},
        {"omit_headers": ["X-Slack-Request-Timestamp"]},
    ],
    ids=["forged", "stale", "no-signature", "no-timestamp"],
)
def test_unsigned_or_stale_requests_get_401_and_start_nothing(
    served: tuple[SlackStub, SlackSender, object], options: dict[str, object]
) -> None:
    stub, sender, deps = served
    delivery = sender.slash_command("/reach", "why can't frontend reach api", channel="C1", user="U1", **options)
    assert delivery.status == 401
    assert deps.in_flight.wait_idle(5)  # type: ignore[attr-defined]
    assert [c.method for c in stub.calls() if c.method.startswith("chat.")] == []
    assert len(deps.dedupe) == 0  # type: ignore[attr-defined]


def test_help_is_answered_privately(served: tuple[SlackStub, SlackSender, object]) -> None:
    stub, sender, deps = served
    assert sender.slash_command("/reach", "help", channel="C1", user="U1").status == 200
    assert deps.in_flight.wait_idle(10)  # type: ignore[attr-defined]
    [help_message] = stub.state.ephemeral_messages("C1", "U1")
    assert "/reach search" in help_message.text
    assert stub.messages("C1") == []


def test_digest_without_a_digest_handler_says_digests_are_not_set_up(served: tuple[SlackStub, SlackSender, object]) -> None:
    stub, sender, deps = served
    sender.slash_command("/reach", "digest daily 09:00", channel="C1", user="U1")
    assert deps.in_flight.wait_idle(10)  # type: ignore[attr-defined]
    [answer] = stub.state.ephemeral_messages("C1", "U1")
    assert answer.text
    assert "not set up" in answer.text  # no digest handler was given to build_deps


def test_a_repeated_command_delivery_is_acknowledged_but_worked_on_once(served: tuple[SlackStub, SlackSender, object]) -> None:
    stub, sender, deps = served
    first = sender.slash_command("/reach", "help", channel="C1", user="U1")
    again = sender.retry(first, retry_num=1)
    assert (first.status, again.status) == (200, 200)
    assert deps.in_flight.wait_idle(10)  # type: ignore[attr-defined]
    assert len(stub.state.ephemeral_messages("C1", "U1")) == 1


def test_dedupe_forgets_keys_after_the_retention_window() -> None:
    now = [0.0]
    dedupe = DeliveryDedupe(retention_s=60, clock=lambda: now[0])
    assert dedupe.first_delivery("event:Ev1")
    assert not dedupe.first_delivery("event:Ev1")
    now[0] = 61.0
    assert dedupe.first_delivery("event:Ev1")


def test_delivery_key_prefers_the_event_id_then_the_trigger_id() -> None:
    assert delivery_key({"event_id": "Ev1", "trigger_id": "t"}) == "event:Ev1"
    assert delivery_key({"trigger_id": "t1"}) == "trigger:t1"
    assert delivery_key({"type": "url_verification"}) is None


def test_access_map_allows_listed_namespaces_wildcards_and_nothing_for_unlisted_channels() -> None:
    assert ChannelAccess({}).namespaces_for("C1") is None
    access = ChannelAccess({"C1": ["shop"], "C2": ["*"]})
    assert access.namespaces_for("C1") == frozenset({"shop"})
    assert access.namespaces_for("C2") is None
    assert access.namespaces_for("C3") == frozenset()
    assert ChannelAccess({"*": ["shop", "payments"]}).namespaces_for("C9") == frozenset({"shop", "payments"})
    assert access.default_namespace("C1", None) == "shop"
    assert "`shop`" in refusal_text(frozenset({"shop"}), "The question involves namespace `payments`")


def _result(
    steps: int = 3,
    summary: str = "no route",
    remediation: tuple[str, ...] = ("ip route add 10.244.2.0/24",),
    findings: int = 0,
    status: StepStatus = StepStatus.PASS,
) -> InvestigationResult:
    return InvestigationResult(
        id="inv_test",
        question="why can't frontend reach api",
        source="deploy/frontend in shop",
        target="svc/api in shop",
        verdict=Verdict(VerdictCode.NODE_ROUTE_MISSING, summary, "node-1", None, remediation),
        steps=tuple(StepResult(f"step {i}", status, "fine " * 20) for i in range(steps)),
        findings=tuple(Finding(VerdictCode.MTU_MISMATCH, "mtu " * 50, "node-2") for _ in range(findings)),
        duration_ms=12.0,
        started_at=datetime.now(UTC),
        seen_before=SEEN_TWICE,
    )


SEEN_TWICE = SeenBefore(
    count=2,
    within=timedelta(days=30),
    first_at=datetime(2026, 10, 30, 9, 0, tzinfo=UTC),
    last_at=datetime(2026, 11, 2, 9, 0, tzinfo=UTC),
    last_id="inv_earlier",
    last_asked_by=Person("U1", "ana"),
    last_channel="C0INCIDENT",
    last_thread_ts="1.1",
    last_resolution=ResolutionView(Person("U2", "bo"), datetime(2026, 11, 2, 10, 0, tzinfo=UTC), "restarted kube-proxy"),
)
SEEN_TWICE_LINE = "seen 2 times in 30 days, last on 2026-11-02 by @ana, resolved: restarted kube-proxy (@bo)"


def _block(blocks: list[dict[str, object]], block_id: BlockId) -> dict[str, Any]:
    [found] = [b for b in blocks if b.get("block_id") == block_id.value]
    return found


def test_verdict_blocks_carry_headline_fix_history_and_the_four_buttons() -> None:
    blocks = render.verdict_blocks(_result())
    assert validate_blocks(blocks) == []
    assert blocks[0]["text"]["text"].endswith("NODE_ROUTE_MISSING")
    assert "```" in _block(blocks, BlockId.REMEDIATION)["text"]["text"]
    assert _block(blocks, BlockId.SEEN_BEFORE)["elements"][0]["text"] == f":repeat: {SEEN_TWICE_LINE}"
    actions = blocks[-1]
    assert [e["action_id"] for e in actions["elements"]] == [
        ActionId.RERUN,
        ActionId.SHOW_EVIDENCE,
        ActionId.TRACE,
        ActionId.RESOLVED,
    ]
    assert {e["value"] for e in actions["elements"]} == {"inv_test"}


def test_verdict_leads_with_where_why_and_fix_and_lists_only_failing_and_warning_steps() -> None:
    ip_forward = Evidence("node", "node-2: ip_forward=0", "node-2")
    probe = Evidence("probe", "shop/web-1 → 10.96.0.5:8080/TCP: timed_out", "node-1")
    result = dataclasses.replace(
        _result(),
        verdict=Verdict(
            VerdictCode.IP_FORWARDING_DISABLED,
            "ip_forward is 0 on node-2",
            "node-2",
            Hop.DESTINATION_NODE,
            ("sysctl -w net.ipv4.ip_forward=1",),
        ),
        steps=(
            *(StepResult(f"passing check {i}", StepStatus.PASS, "fine") for i in range(19)),
            StepResult("source web-1: probes", StepStatus.FAIL, "cannot reach 1 of 3 endpoints", (probe,)),
            StepResult("path web-1 → api-2", StepStatus.FAIL, "ip_forward is 0 on node-2", (ip_forward,)),
            StepResult("source web-1: DNS", StepStatus.WARN, "slow answers"),
            StepResult("skipped check", StepStatus.SKIP, "not needed"),
        ),
    )
    blocks = render.verdict_blocks(result)
    assert validate_blocks(blocks) == []
    order = [b.get("block_id") for b in blocks]
    assert (
        order.index(BlockId.WHERE) < order.index(BlockId.WHY) < order.index(BlockId.REMEDIATION) < order.index(BlockId.CHECKLIST)
    )
    assert "node `node-2`" in _block(blocks, BlockId.WHERE)["elements"][0]["text"]
    why = _block(blocks, BlockId.WHY)["text"]["text"]
    assert why.splitlines()[1:] == ["• node-2: ip_forward=0", "• shop/web-1 → 10.96.0.5:8080/TCP: timed_out (on node-1)"]
    checklist = _block(blocks, BlockId.CHECKLIST)["text"]["text"]
    assert "passing check" not in checklist
    assert ":x: *source web-1: probes*" in checklist and ":x: *path web-1 → api-2*" in checklist
    assert ":warning: *source web-1: DNS*" in checklist
    assert checklist.splitlines()[-1] == ":white_check_mark: 19 checks passed, 1 skipped · Show evidence"
    # The full checklist is still there behind Show evidence.
    evidence = render.evidence_text(result.id, result.question, result.steps)
    assert all(f"] {step.name}" in evidence for step in result.steps)


def test_an_ambiguous_name_gets_a_button_per_candidate_that_asks_the_precise_question() -> None:
    choices = (
        NameChoice("svc/cache in monitoring", "frontend → monitoring/svc/cache"),
        NameChoice("svc/cache in shop", "frontend → shop/svc/cache"),
    )
    result = dataclasses.replace(
        _result(steps=0),
        verdict=Verdict(
            VerdictCode.AMBIGUOUS_NAME, "'cache' matches several objects", None, Hop.API, tuple(c.question for c in choices)
        ),
        choices=choices,
    )
    blocks = render.verdict_blocks(result)
    assert validate_blocks(blocks) == []
    buttons = _block(blocks, BlockId.CHOICES)["elements"]
    assert [(b["text"]["text"], b["value"]) for b in buttons] == [(c.label, c.question) for c in choices]
    assert len({b["action_id"] for b in buttons}) == len(buttons)
    assert all(b["action_id"].startswith(ActionId.ASK_INSTEAD.value + "_") for b in buttons)
    assert not any(b.get("block_id") == BlockId.ACTIONS.value for b in blocks), "nothing to re-run or show yet"


def test_the_progress_message_counts_passed_steps_and_lists_failing_ones_while_it_works() -> None:
    steps = [StepResult(f"check {i}", StepStatus.PASS, "fine") for i in range(4)]
    steps.append(StepResult("source web: policy", StepStatus.FAIL, "denied"))
    text = json.dumps(render.progress_blocks("web -> api", steps))
    assert "4 checks passed so far" in text and "source web: policy" in text and "check 0" not in text
    assert "investigating" in text


def test_verdict_blocks_stay_within_slacks_limits_and_say_where_the_rest_is() -> None:
    huge = _result(
        steps=400,
        summary="x" * 10_000,
        remediation=tuple("kubectl " + "y" * 200 for _ in range(40)),
        findings=60,
        status=StepStatus.FAIL,
    )
    blocks = render.verdict_blocks(huge)
    assert validate_blocks(blocks) == []
    assert len(blocks) <= render.MAX_BLOCKS
    texts = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(t) <= render.SECTION_TEXT_MAX for t in texts)
    checklist = _block(blocks, BlockId.CHECKLIST)["text"]["text"]
    assert "more (the rest: click Show evidence)" in checklist
    assert blocks[-1]["type"] == "actions"
    assert len(render.header("h" * 500)["text"]["text"]) <= render.HEADER_TEXT_MAX
    assert len(render.message_text("z" * 50_000)) <= render.MESSAGE_TEXT_MAX


def test_many_findings_are_cut_to_fifty_blocks_keeping_the_buttons() -> None:
    blocks = render.fit_blocks([render.section(f"part {i}") for i in range(80)] + [render.verdict_actions("inv_x")])
    assert len(blocks) == render.MAX_BLOCKS
    assert blocks[-1]["type"] == "actions"
    assert "more parts not shown" in json.dumps(blocks[-2])


def test_changes_since_names_the_verdict_and_the_steps_that_changed() -> None:
    before = _result()
    after_steps = (StepResult("step 0", StepStatus.FAIL, "now failing"), *before.steps[1:])
    changes = render.changes_since(before.verdict, before.steps, Verdict(VerdictCode.NO_FAULT_FOUND, "ok"), after_steps)
    assert "verdict: NODE_ROUTE_MISSING → NO_FAULT_FOUND" in changes
    assert "node: node-1 → –" in changes
    assert "step step 0: pass → fail" in changes
    assert render.changes_since(before.verdict, before.steps, before.verdict, before.steps) == ()


def test_evidence_blocks_split_long_evidence_into_valid_sections() -> None:
    text = "\n".join(f"line {i} " + "e" * 100 for i in range(200))
    blocks = render.evidence_blocks(text, where_rest="elsewhere")
    assert validate_blocks(blocks) == []
    assert all(len(b["text"]["text"]) <= render.SECTION_TEXT_MAX for b in blocks if b["type"] == "section")


def test_on_shutdown_work_that_does_not_finish_in_time_is_marked_interrupted_and_its_thread_told(tmp_path: Path) -> None:
    from bot.history.enums import InvestigationStatus, Origin
    from bot.history.recorder import Asker
    from bot.history.service import Person, get_investigation
    from bot.slack.app import drain

    with SlackStub() as stub:
        settings = _settings(stub, tmp_path)
        deps = build_deps(settings, Investigator)
        try:
            assert deps.history is not None
            channel = stub.state.add_channel("incidents").id
            user = stub.state.add_user("ana").id
            ts = stub.post_user_message(channel, user, "why can't web reach api")
            running = deps.history.start(
                "why can't web reach api", Asker(Person("U1", "ana"), Origin.SLACK, channel, ts), None, None, ()
            )
            assert running is not None
            deps.in_flight.begin()  # an investigation still working when SIGTERM arrives
            assert drain(deps, grace_seconds=0.05) == 1
            with deps.history.sessions() as session:
                assert get_investigation(session, running).status == InvestigationStatus.INTERRUPTED
            notes = [m.text for m in stub.state.thread(channel, ts) if m.bot_id]
            assert any("stopped before" in text and running in text for text in notes)
            deps.in_flight.end()
            assert drain(deps, grace_seconds=0.05) == 0  # nothing in flight: nothing to close
        finally:
            deps.close()


def test_the_structured_seen_before_is_worded_the_same_in_the_terminal_and_the_json_document() -> None:
    result = _result()
    console = Console(width=400, record=True)
    console.print(investigation_view(result))
    assert SEEN_TWICE_LINE in console.export_text()
    assert investigation_document(result)["seen_before"] == SEEN_TWICE_LINE
    never = dataclasses.replace(result, seen_before=dataclasses.replace(SEEN_TWICE, count=0))
    assert investigation_document(never)["seen_before"] is None
    assert not any(b.get("block_id") == BlockId.SEEN_BEFORE.value for b in render.verdict_blocks(never))
