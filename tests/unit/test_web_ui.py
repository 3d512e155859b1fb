"""The picture and the link in the Slack thread, and the web UI over HTTP, without a cluster: the real
slack-bolt app behind `serve`'s HTTP server (with the web UI mounted) and the Slack stand-in.

A verdict's thread gets the path picture through files v2 and a signed link; a failing upload costs the
picture, never the verdict. The link opens the page with the security headers; a token for another
channel's namespaces, a forged or a missing token show nothing; text from people is escaped; the log
carries no token."""

from __future__ import annotations

import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.history import service
from bot.history.service import Person
from lab.slackstub import SlackStub
from tests.unit.slack_support import Rig, app_rig, sqlite_url
from tests.unit.test_path_picture import recorded

CHANNELS = {"CSHOP": ["shop"], "CPAY": ["payments"]}


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    with SlackStub() as stub:
        stub.state.add_channel("shop-only", channel_id="CSHOP")
        stub.state.add_channel("payments-only", channel_id="CPAY")
        stub.state.add_user("ana", user_id="U1")
        yield stub


@pytest.fixture
def rig(stub: SlackStub, tmp_path: Path) -> Iterator[Rig]:
    # The steps of a recorded lab investigation with no fault, so the answer has a path to draw.
    steps = recorded("ok").steps
    with app_rig(stub, sqlite_url(tmp_path), web=True, steps=steps, channel_namespaces=CHANNELS) as rig:
        yield rig


def _ask(rig: Rig, text: str, channel: str = "CSHOP") -> str:
    """Ask in `channel`; the link the verdict message carries."""
    assert rig.sender.slash_command("/reach", text, channel=channel, user="U1").status == 200
    rig.idle()
    verdict = [m for m in rig.stub.messages(channel) if any(b.get("type") == "actions" for b in m.blocks)][-1]
    links = [
        e["text"]
        for b in verdict.blocks
        if b.get("type") == "context"
        for e in b.get("elements", [])
        if "/ui/i/" in e.get("text", "")
    ]
    assert len(links) == 1, verdict.blocks
    return links[0].split("<", 1)[1].split("|", 1)[0]


def _get(url: str) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read().decode()


def test_the_verdict_thread_gets_the_picture_through_files_v2_and_a_signed_link(rig: Rig) -> None:
    link = _ask(rig, "why can't frontend reach api")
    methods = [c.method for c in rig.stub.calls() if c.method.startswith("files.")]
    assert methods == ["files.getUploadURLExternal", "files.completeUploadExternal"]
    [picture] = [f for f in rig.stub.state.files() if f.name.endswith("-path.png")]
    assert picture.completed and picture.channels == ("CSHOP",)
    assert (picture.content or b"")[:8] == b"\x89PNG\r\n\x1a\n"
    shared = [m for m in rig.stub.messages("CSHOP") if picture.id in m.files]
    assert len(shared) == 1 and shared[0].thread_ts is not None  # in the verdict's thread
    status, headers, page = _get(link)
    assert status == 200 and "NO_FAULT_FOUND" in page and 'id="picture"' in page and 'data-key="nat"' in page
    assert (
        "frame-ancestors 'none'" in headers["content-security-policy"] and "script-src" not in headers["content-security-policy"]
    )
    assert headers["x-content-type-options"] == "nosniff" and headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"


def test_a_failing_upload_costs_the_picture_not_the_verdict(rig: Rig) -> None:
    rig.stub.fail("files.getUploadURLExternal", "internal_error")
    link = _ask(rig, "why can't frontend reach api")
    assert "/ui/i/" in link
    assert not [f for f in rig.stub.state.files() if f.completed]
    assert any(failure.startswith("files_upload_v2") for failure in rig.deps.poster.failures)


def test_without_a_valid_token_for_its_namespaces_a_page_shows_nothing(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    link = _ask(rig, "why can't frontend reach api <script>alert(1)</script>")
    status, _, page = _get(link)
    assert status == 200 and "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>" not in page
    parts = urllib.parse.urlsplit(link)
    token = urllib.parse.parse_qs(parts.query)["t"][0]
    assert rig.deps.web_links is not None
    payments = rig.deps.web_links.signer.issue("CPAY", frozenset({"payments"}))
    head, mac = token.split(".")
    forged = f"{head}.{'A' * len(mac)}"
    for bad in (payments, forged):
        status, _, page = _get(f"{parts.scheme}://{parts.netloc}{parts.path}?t={urllib.parse.quote(bad)}")
        assert status == 403 and 'id="nothing"' in page and "frontend" not in page
    origin = f"{parts.scheme}://{parts.netloc}"
    for path in ("/ui/search?q=frontend", "/ui/digest", parts.path):
        status, _, page = _get(origin + path)
        assert status == 403 and 'id="nothing"' in page and "inv_" not in page
    status, _, page = _get(f"{origin}/ui/search?" + urllib.parse.urlencode({"t": token, "q": "frontend"}))
    assert status == 200 and parts.path.rsplit("/", 1)[-1] in page
    status, _, page = _get(f"{origin}/ui/search?" + urllib.parse.urlencode({"t": payments, "q": "frontend"}))
    assert status == 200 and "0 investigation(s)" in page
    assert token not in caplog.text and payments not in caplog.text
    assert "web: GET /ui/search 200" in caplog.text


def test_a_verdict_without_a_probed_path_gets_the_link_but_no_picture(stub: SlackStub, tmp_path: Path) -> None:
    with app_rig(stub, sqlite_url(tmp_path), web=True, channel_namespaces=CHANNELS) as rig:
        link = _ask(rig, "why can't frontend reach api")
        assert "/ui/i/" in link
        assert [c.method for c in rig.stub.calls() if c.method.startswith("files.")] == []


def test_the_page_says_who_resolved_it_and_how_and_lists_the_runs(rig: Rig) -> None:
    link = _ask(rig, "why can't frontend reach api")
    again = _ask(rig, "why can't frontend reach api")
    investigation_id = urllib.parse.urlsplit(link).path.rsplit("/", 1)[-1]
    assert rig.deps.history is not None
    with rig.deps.history.sessions.begin() as session:
        service.resolve(session, investigation_id, Person("U1", "ana"), "restarted <the> api pods")
    status, _, page = _get(link)
    assert status == 200 and "ana" in page and "restarted &lt;the&gt; api pods" in page
    runs = page.split('id="runs"', 1)[1].split("</table>", 1)[0]
    assert investigation_id in runs and urllib.parse.urlsplit(again).path.rsplit("/", 1)[-1] in runs
