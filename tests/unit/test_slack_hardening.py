"""The Slack side under attack and load (issue 11, items 4–6, 8–11): the real bolt app behind the real
HTTP front, signed and unsigned requests over HTTP, the Slack stand-in recording what the bot posted."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from slack_bolt.request import BoltRequest
from sqlalchemy import select

from bot.history.enums import AuditAction
from bot.history.models import AuditEntry, Resolution
from bot.history.service import AUDIT_TEXT_MAX
from bot.slack.app import build_app
from bot.slack.http import HttpLimits
from bot.slack.ids import ActionId
from lab.slackstub import SlackStub, sign
from tests.polling import eventually
from tests.unit.slack_support import SECRET, Rig, all_text, app_rig, sqlite_url

STALLED_HEAD = b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
BROADCASTS = ("<!channel>", "<!here>", "<!everyone>", "<@U999>", "<http://evil.example|click>")


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    with SlackStub() as stub:
        stub.state.add_channel("incidents", channel_id="C1")
        stub.state.add_channel("shop-only", channel_id="CSHOP")
        stub.state.add_channel("payments-only", channel_id="CPAY")
        stub.state.add_user("ana", user_id="U1")
        yield stub


@pytest.fixture
def rig(stub: SlackStub, tmp_path: Path) -> Iterator[Rig]:
    with app_rig(stub, sqlite_url(tmp_path)) as rig:
        yield rig


def _raw(rig: Rig, body: bytes, headers: dict[str, str], *, method: str = "POST") -> tuple[int, str]:
    parts = urllib.parse.urlsplit(rig.sender.app_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        connection.putrequest(method, parts.path, skip_accept_encoding=True)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders()
        if body:
            connection.send(body)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def _posted(stub: SlackStub) -> list[str]:
    return [c.method for c in stub.calls() if c.method.startswith(("chat.", "files."))]


UNSIGNED_COMMAND = urllib.parse.urlencode(
    {"command": "/reach", "text": "why can't frontend reach api", "channel_id": "C1", "user_id": "U1", "trigger_id": "t1"}
).encode()


def _headers(content_type: str, timestamp: str | None, signature: str | None) -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if timestamp is not None:
        headers["X-Slack-Request-Timestamp"] = timestamp
    if signature is not None:
        headers["X-Slack-Signature"] = signature
    return headers


def _odd_requests() -> list[tuple[str, bytes, dict[str, str]]]:
    now = str(int(time.time()))
    form, js = "application/x-www-form-urlencoded", "application/json"
    fake = "v0=" + "0" * 64
    return [
        ("non-numeric-timestamp", UNSIGNED_COMMAND, _headers(form, "soon", fake)),
        ("missing-timestamp", UNSIGNED_COMMAND, _headers(form, None, sign(SECRET, now, UNSIGNED_COMMAND))),
        ("missing-signature", UNSIGNED_COMMAND, _headers(form, now, None)),
        ("invalid-json", b'{"type": "event_callback", "event": {', _headers(js, now, fake)),
        ("non-utf8", b"\xff\xfe\xfa payload=\xc3\x28", _headers(form, now, fake)),
        ("deep-nesting", b"[" * 20_000 + b"]" * 20_000, _headers(js, now, fake)),
        ("huge-timestamp", UNSIGNED_COMMAND, _headers(form, "9" * 400, fake)),
    ]


@pytest.mark.parametrize(("name", "body", "headers"), _odd_requests(), ids=[r[0] for r in _odd_requests()])
def test_unverified_odd_requests_get_401_and_cause_nothing(rig: Rig, name: str, body: bytes, headers: dict[str, str]) -> None:
    status, text = _raw(rig, body, {**headers, "Content-Length": str(len(body))})
    assert status == 401, (name, status, text)
    assert "Traceback" not in text
    rig.idle()
    assert _posted(rig.stub) == []
    assert len(rig.deps.dedupe) == 0
    assert rig.investigator.started == []


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", "99999999999999999999"])
def test_a_bad_content_length_is_refused_at_once(rig: Rig, length: str) -> None:
    status, _ = _raw(rig, b"", {"Content-Type": "application/json", "Content-Length": length})
    assert 400 <= status < 500
    assert _posted(rig.stub) == []


def test_a_non_numeric_timestamp_dispatched_to_the_app_directly_is_401_and_posts_nothing(rig: Rig) -> None:
    # The original defect: the timestamp raised before the signature check and the error handler
    # posted "unexpected problem" to the channel and user the unsigned body named.
    app = build_app(rig.deps.settings, rig.deps)
    request = BoltRequest(
        body=UNSIGNED_COMMAND.decode(),
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "x-slack-request-timestamp": "soon",
            "x-slack-signature": "v0=x",
        },
    )
    assert app.dispatch(request).status == 401
    rig.idle()
    assert _posted(rig.stub) == []


@pytest.mark.parametrize(
    "body",
    [b'{"type": "event_callback", "event": {', b"[" * 20_000 + b"]" * 20_000, b"\xff\xfe not utf-8"],
    ids=["invalid-json", "deep-nesting", "non-utf8"],
)
def test_signed_but_unreadable_bodies_get_400_without_a_traceback(rig: Rig, body: bytes) -> None:
    now = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": sign(SECRET, now, body),
        "Content-Length": str(len(body)),
    }
    status, text = _raw(rig, body, headers)
    assert status == 400
    assert "Traceback" not in text
    assert _posted(rig.stub) == []


def test_a_body_over_the_limit_is_refused_and_a_large_accepted_one_is_audited_as_an_excerpt(rig: Rig) -> None:
    over = HttpLimits().max_body_bytes + 1
    # Refused on the headers alone, before any of the body is read (so none is sent here: a server that
    # answers early may reset a client still writing, which would only test the kernel's timing).
    status, _ = _raw(rig, b"", {"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(over)})
    assert status == 413
    # A signed command just under the limit is answered ("too long") and only an excerpt is audited.
    delivery = rig.sender.slash_command("/reach", "why " * 12_000, channel="C1", user="U1")
    assert delivery.status == 200
    rig.idle()
    [answer] = rig.stub.state.ephemeral_messages("C1", "U1")
    assert "characters long" in answer.text
    assert rig.investigator.started == []
    assert rig.deps.history is not None
    with rig.deps.history.sessions() as session:
        stored = list(session.scalars(select(AuditEntry)))
    assert stored
    assert max(len(entry.text) for entry in stored) <= AUDIT_TEXT_MAX + 40


def test_a_stalled_upload_is_closed_and_holds_no_worker(stub: SlackStub, tmp_path: Path) -> None:
    limits = HttpLimits(idle_timeout_s=1, threads=2)
    with app_rig(stub, sqlite_url(tmp_path), limits=limits) as rig:
        parts = urllib.parse.urlsplit(rig.sender.app_url)
        stalled = []
        for _ in range(limits.threads * 10):
            conn = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), timeout=60)
            conn.sendall(
                b"POST /slack/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"
            )
            stalled.append(conn)
        # While twenty uploads stall on two worker threads, a signed request is still answered.
        assert rig.sender.slash_command("/reach", "help", channel="C1", user="U1").status == 200
        rig.idle()
        assert rig.stub.state.ephemeral_messages("C1", "U1")
        for conn in stalled:  # the server closes each stalled upload (recv returns b"" or the reset)
            try:
                answer = conn.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer[:80]
            conn.close()
        assert len(rig.stub.state.ephemeral_messages("C1", "U1")) == 1


def test_acks_never_wait_for_investigations_and_the_one_beyond_the_pool_is_queued(stub: SlackStub, tmp_path: Path) -> None:
    gate = threading.Event()
    pool = 2
    with app_rig(stub, sqlite_url(tmp_path), gate=gate, slack_investigation_workers=pool) as rig:
        try:
            deliveries = [
                rig.sender.slash_command("/reach", f"why can't frontend{i} reach api", channel="C1", user="U1")
                for i in range(pool + 1)
            ]
            assert [d.status for d in deliveries] == [200] * (pool + 1)  # every one acknowledged while all are held
            # /reach help is answered while the investigation pool is full.
            assert rig.sender.slash_command("/reach", "help", channel="C1", user="U1").status == 200
            eventually(
                lambda: rig.stub.state.ephemeral_messages("C1", "U1"),
                deadline_s=30,
                what="help answered while investigations ran",
            )
            eventually(
                lambda: [m for m in rig.stub.messages("C1") if "Queued" in m.text], deadline_s=30, what="the queued notice"
            )
            queued = [m for m in rig.stub.messages("C1") if "Queued" in m.text]
            assert len(queued) == 1 and queued[0].thread_ts is not None
            assert len(rig.investigator.started) <= pool
        finally:
            gate.set()
        rig.idle()
        assert len(rig.investigator.finished) == pool + 1
        queued_thread = rig.stub.thread("C1", queued[0].thread_ts)
        assert any("NO_FAULT_FOUND" in json.dumps(m.blocks) for m in queued_thread), "the queued one completed in its thread"


def test_a_39000_character_mention_is_refused_by_size_and_help_is_answered(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.parse import slack_text

    seen: list[int] = []
    original = slack_text.clean_slack_text

    def counting(text: str) -> str:
        seen.append(len(text))
        return original(text)

    monkeypatch.setattr("bot.slack.handlers.clean_slack_text", counting)
    long_text = " ".join([":" + "a" * 30] * 1250)[:39_000]
    mention = rig.sender.app_mention("C1", "U1", long_text)
    helped = rig.sender.slash_command("/reach", "help", channel="C1", user="U1")
    assert (mention.status, helped.status) == (200, 200)
    rig.idle()
    texts = [m.text for m in rig.stub.state.ephemeral_messages("C1", "U1")]
    assert any("/reach search" in t for t in texts)
    assert any("characters long" in t for t in texts)
    assert all(n <= slack_text.MAX_TEXT_LENGTH for n in seen)  # the cleaner never saw the long text
    assert rig.investigator.started == []


# ---- investigations across channels (item 5), not-found (item 11), escaping (item 6) --------------


@pytest.fixture
def restricted(stub: SlackStub, tmp_path: Path) -> Iterator[Rig]:
    with app_rig(
        stub, sqlite_url(tmp_path), namespaces=("payments",), channel_namespaces={"CSHOP": ["shop"], "CPAY": ["payments"]}
    ) as rig:
        yield rig


def _payments_investigation(rig: Rig) -> tuple[str, str]:
    """Ask in CPAY (the stand-in answers about `payments`); the id and the thread of the verdict."""
    assert rig.sender.slash_command("/reach", "why can't checkout reach ledger", channel="CPAY", user="U1").status == 200
    rig.idle()
    verdict = [m for m in rig.stub.messages("CPAY") if any(b.get("type") == "actions" for b in m.blocks)][-1]
    actions = next(b for b in verdict.blocks if b.get("type") == "actions")
    return str(actions["elements"][0]["value"]), str(verdict.thread_ts)


def _audit(rig: Rig) -> list[AuditEntry]:
    assert rig.deps.history is not None
    with rig.deps.history.sessions() as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


@pytest.mark.parametrize("action", [ActionId.SHOW_EVIDENCE, ActionId.RERUN, ActionId.TRACE, ActionId.RESOLVED])
def test_a_button_carrying_another_channels_investigation_is_refused_privately_and_audited(
    restricted: Rig, action: ActionId
) -> None:
    rig = restricted
    inv_id, _ = _payments_investigation(rig)
    started = len(rig.investigator.started)
    public_before = {c: len(rig.stub.messages(c)) for c in ("CSHOP", "CPAY")}
    files_before = [c for c in rig.stub.calls() if c.method.startswith("files.")]  # the verdict's path picture
    anchor = rig.stub.post_user_message("CSHOP", "U1", "something in shop")
    assert rig.sender.block_action("CSHOP", "U1", anchor, action.value, value=inv_id, block_id="forged").status == 200
    rig.idle()
    [refusal] = rig.stub.state.ephemeral_messages("CSHOP", "U1")
    assert f"no investigation `{inv_id}` in this channel" in refusal.text
    assert len(rig.stub.messages("CSHOP")) == public_before["CSHOP"] + 1  # only the anchor message
    assert len(rig.stub.messages("CPAY")) == public_before["CPAY"]
    assert [c for c in rig.stub.calls() if c.method.startswith("files.")] == files_before
    assert len(rig.investigator.started) == started
    denied = [e for e in _audit(rig) if not e.allowed and e.channel == "CSHOP"]
    assert len(denied) == 1 and denied[0].investigation_id == inv_id and "payments" in (denied[0].reason or "")


def test_reach_resolve_of_another_channels_investigation_is_refused_and_nothing_is_recorded(restricted: Rig) -> None:
    rig = restricted
    inv_id, thread = _payments_investigation(rig)
    thread_before = len(rig.stub.thread("CPAY", thread))
    rig.sender.slash_command("/reach", f"resolve {inv_id} fixed it", channel="CSHOP", user="U1")
    rig.idle()
    [refusal] = rig.stub.state.ephemeral_messages("CSHOP", "U1")
    assert "no investigation" in refusal.text
    assert len(rig.stub.thread("CPAY", thread)) == thread_before
    assert rig.deps.history is not None
    with rig.deps.history.sessions() as session:
        assert list(session.scalars(select(Resolution))) == []
    assert any(e.action == AuditAction.RESOLVE and not e.allowed for e in _audit(rig))


def test_trace_the_packet_asks_the_same_question_again_with_a_trace_in_its_thread(restricted: Rig) -> None:
    rig = restricted
    inv_id, thread = _payments_investigation(rig)
    assert rig.investigator.traced == [False]
    assert rig.sender.block_action("CPAY", "U1", thread, ActionId.TRACE.value, value=inv_id, block_id="b").status == 200
    rig.idle()
    assert rig.investigator.started == ["why can't checkout reach ledger"] * 2
    assert rig.investigator.traced == [False, True]


def test_the_owning_channel_may_act_on_its_investigation_and_it_is_audited(restricted: Rig) -> None:
    rig = restricted
    inv_id, thread = _payments_investigation(rig)
    rig.sender.slash_command("/reach", f"resolve {inv_id} restarted the pod", channel="CPAY", user="U1")
    rig.idle()
    assert "Resolved by" in rig.stub.thread("CPAY", thread)[-1].text
    allowed = [e for e in _audit(rig) if e.allowed and e.action == AuditAction.RESOLVE]
    assert allowed and allowed[-1].investigation_id == inv_id


@pytest.mark.parametrize("how", ["button", "command"])
def test_an_unknown_investigation_id_is_answered_at_once(rig: Rig, how: str) -> None:
    unknown = "inv_01ZZZZZZZZZZZZZZZZZZZZZZZZ"
    if how == "button":
        anchor = rig.stub.post_user_message("C1", "U1", "hi")
        delivery = rig.sender.block_action("C1", "U1", anchor, ActionId.RESOLVED.value, value=unknown, block_id="b")
    else:
        delivery = rig.sender.slash_command("/reach", f"resolve {unknown} fixed", channel="C1", user="U1")
    assert (delivery.status, delivery.body) == (200, "")
    rig.idle()
    [answer] = rig.stub.state.ephemeral_messages("C1", "U1")
    assert f"no investigation `{unknown}` in this channel" in answer.text


def test_a_verdict_the_history_did_not_record_shows_no_resolved_button(stub: SlackStub, tmp_path: Path) -> None:
    with app_rig(stub, sqlite_url(tmp_path), record=False) as rig:
        rig.sender.slash_command("/reach", "why can't frontend reach api", channel="C1", user="U1")
        rig.idle()
        verdict = [m for m in rig.stub.messages("C1") if any(b.get("type") == "actions" for b in m.blocks)][-1]
        buttons = [e["action_id"] for b in verdict.blocks if b.get("type") == "actions" for e in b["elements"]]
        assert ActionId.RESOLVED.value not in buttons
        assert ActionId.SHOW_EVIDENCE.value in buttons
        assert "did not record" in json.dumps(verdict.blocks)
        # Show evidence still works from this process's memory.
        rig.sender.block_action("C1", "U1", verdict.ts, ActionId.SHOW_EVIDENCE.value)
        rig.idle()
        assert any("Evidence of" in m.text for m in rig.stub.thread("C1", str(verdict.thread_ts)))


def test_user_text_is_escaped_in_everything_the_bot_posts(rig: Rig) -> None:
    smuggled = " ".join(BROADCASTS)
    rig.sender.slash_command("/reach", f"why can't frontend reach api {smuggled}", channel="C1", user="U1")
    rig.idle()
    inv_id = next(
        str(e["value"]) for m in rig.stub.messages("C1") for b in m.blocks if b.get("type") == "actions" for e in b["elements"]
    )
    rig.sender.slash_command("/reach", f"resolve {inv_id} {smuggled}", channel="C1", user="U1")
    rig.sender.slash_command("/reach", f"search frontend {smuggled}", channel="C1", user="U1")
    rig.sender.slash_command("/reach", "search frontend", channel="C1", user="U1")
    rig.sender.app_mention("C1", "U1", f"why can't {smuggled} reach")
    rig.idle()
    shown = all_text(rig.stub)
    assert "&lt;!channel&gt;" in shown  # the text was shown, escaped
    for markup in BROADCASTS:
        assert markup not in shown, markup
    assert "Resolved by" in shown


def test_on_shutdown_a_queued_question_that_never_started_is_told_so_in_its_thread(stub: SlackStub, tmp_path: Path) -> None:
    from bot.slack.app import drain

    gate = threading.Event()
    with app_rig(stub, sqlite_url(tmp_path), gate=gate, slack_investigation_workers=1) as rig:
        try:
            rig.sender.slash_command("/reach", "why can't frontend reach api", channel="C1", user="U1")
            rig.sender.slash_command("/reach", "why can't web reach db", channel="C1", user="U1")
            eventually(
                lambda: [m for m in rig.stub.messages("C1") if "Queued" in m.text], deadline_s=30, what="the queued notice"
            )
            drain(rig.deps, grace_seconds=0.05)
            [queued] = [m for m in rig.stub.messages("C1") if "Queued" in m.text]
            told = [m.text for m in rig.stub.thread("C1", str(queued.thread_ts))]
            assert any("stopped before this question's turn" in t for t in told)
        finally:
            gate.set()
        rig.idle()
        assert rig.investigator.started == ["why can't frontend reach api"]


def test_a_mention_is_counted_in_flight_before_its_ack_though_bolt_acks_events_first(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.slack import handlers

    listener_may_run = threading.Event()
    original = handlers.on_app_mention

    def busy_listener(*args: object, **kwargs: object) -> None:  # bolt's listener thread starts late
        assert listener_may_run.wait(30)
        original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(handlers, "on_app_mention", busy_listener)
    delivery = rig.sender.app_mention("C1", "U1", "help")
    assert delivery.status == 200
    assert not rig.deps.in_flight.wait_idle(0), "the mention was not counted when Slack got its ack"
    listener_may_run.set()
    rig.idle()
    assert rig.stub.state.ephemeral_messages("C1", "U1")
