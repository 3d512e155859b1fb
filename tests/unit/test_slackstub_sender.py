"""The sender delivers what Slack delivers, signed as Slack signs it, to a minimal real slack_bolt App
served over HTTP on 127.0.0.1; the App talks back to the stand-in through a real WebClient."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient

from lab.errors import LabError
from lab.slackstub import SlackSender, SlackStub
from lab.slackstub.state import Channel, Message, User

SECRET = "lab-signing-secret-for-tests"


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class BoltUnderTest:
    app: App
    url: str
    seen_retries: list[tuple[str, str | None]] = field(default_factory=list)
    commands: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    stand_in = SlackStub()
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def channel(stub: SlackStub) -> Channel:
    return stub.state.add_channel("incidents")


@pytest.fixture
def alice(stub: SlackStub) -> User:
    return stub.state.add_user("alice")


@pytest.fixture
def bolt(stub: SlackStub) -> Iterator[BoltUnderTest]:
    # Bolt ignores `token=` when a client is given: the token goes into the client.
    app = App(signing_secret=SECRET, client=WebClient(token=stub.state.bot_token, base_url=stub.base_url))
    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), server_class=_ThreadingWSGIServer,
                         handler_class=_QuietHandler)
    under_test = BoltUnderTest(app=app, url=f"http://127.0.0.1:{server.server_port}/slack/events")

    @app.command("/reach")
    def reach(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        ack()
        under_test.commands.append(command)
        respond(text=f"checking {command['text']}", response_type="in_channel")

    @app.event("app_mention")
    def mention(event: dict[str, Any], say: Any, body: dict[str, Any], request: Any) -> None:
        under_test.seen_retries.append((body["event_id"], request.headers.get("x-slack-retry-num", [None])[0]))
        say(text="on it", thread_ts=event.get("thread_ts") or event["ts"])

    @app.action("rerun")
    def rerun(ack: Any, respond: Any, body: dict[str, Any]) -> None:
        ack()
        under_test.actions.append(body)
        respond(text="re-running", replace_original=True)

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield under_test
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def sender(stub: SlackStub, bolt: BoltUnderTest) -> SlackSender:
    return SlackSender(bolt.url, SECRET, stub)


def test_bolt_app_construction_calls_auth_test_on_the_stub(stub: SlackStub, bolt: BoltUnderTest) -> None:
    [call] = stub.calls("auth.test")
    assert call.response["user_id"] == "UBOT"


def test_signed_slash_command_is_acked_and_its_response_url_lands_in_the_channel(
    stub: SlackStub, sender: SlackSender, bolt: BoltUnderTest, channel: Channel, alice: User
) -> None:
    status, _body, elapsed = sender.slash_command("/reach", "web -> api:8080", channel=channel.id, user=alice.id)
    assert status == 200
    assert elapsed > 0
    posted = stub.wait_for(stub.state.response_posts)
    assert posted[0].response_type == "in_channel" and posted[0].target.kind == "command"
    [message] = stub.wait_for(lambda: stub.messages(channel.id))
    assert message.text == "checking web -> api:8080" and message.via == "response_url"
    command = bolt.commands[0]
    assert (command["channel_name"], command["user_name"], command["team_domain"]) == ("incidents", "alice", "kubereach-lab")
    assert command["api_app_id"] == stub.state.app_id and command["trigger_id"]


def test_forged_stale_and_unsigned_requests_get_401_and_reach_no_listener(
    sender: SlackSender, bolt: BoltUnderTest, channel: Channel, alice: User
) -> None:
    forged = sender.slash_command("/reach", "x", channel=channel.id, user=alice.id, forge=True)
    stale = sender.slash_command("/reach", "x", channel=channel.id, user=alice.id, timestamp=int(time.time()) - 600)
    unsigned = sender.slash_command("/reach", "x", channel=channel.id, user=alice.id,
                                    omit_headers={"X-Slack-Signature", "X-Slack-Request-Timestamp"})
    assert (forged.status, stale.status, unsigned.status) == (401, 401, 401)
    assert bolt.commands == []


def test_app_mention_posts_the_users_message_and_the_app_replies_in_its_thread(
    stub: SlackStub, sender: SlackSender, channel: Channel, alice: User
) -> None:
    delivery = sender.app_mention(channel.id, alice.id, "why can't web reach api?")
    assert delivery.status == 200
    question_ts = delivery.request.message_ts
    assert question_ts is not None
    thread = stub.state.wait_for_thread(channel.id, question_ts, replies=1)
    assert thread[0].text == "<@UBOT> why can't web reach api?" and thread[0].user == alice.id
    assert thread[1].text == "on it" and thread[1].user == "UBOT"
    envelope = json.loads(delivery.request.body)
    assert envelope["type"] == "event_callback" and envelope["event"]["type"] == "app_mention"
    assert envelope["event_id"] == delivery.request.event_id and isinstance(envelope["event_time"], int)


def test_retry_resends_the_same_event_with_retry_headers(
    sender: SlackSender, bolt: BoltUnderTest, channel: Channel, alice: User, stub: SlackStub
) -> None:
    first = sender.app_mention(channel.id, alice.id, "ping")
    again = sender.retry(first, retry_num=1, retry_reason="http_timeout")
    assert again.status == 200
    assert again.request.body == first.request.body
    seen = stub.wait_for(lambda: bolt.seen_retries if len(bolt.seen_retries) == 2 else None)
    assert seen == [(first.request.event_id, None), (first.request.event_id, "1")]


def test_url_verification_challenge_is_echoed(sender: SlackSender) -> None:
    delivery = sender.url_verification("challenge-3eZbrw1aBm2rZgRNFdxV2595E9CY3gm")
    assert delivery.status == 200
    assert "challenge-3eZbrw1aBm2rZgRNFdxV2595E9CY3gm" in delivery.body


def test_block_action_carries_the_message_and_replace_original_updates_it(
    stub: SlackStub, sender: SlackSender, bolt: BoltUnderTest, channel: Channel, alice: User
) -> None:
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    parent = stub.post_user_message(channel.id, alice.id, "question")
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": "verdict"}, "block_id": "verdict"},
              {"type": "actions", "block_id": "controls", "elements": [
                  {"type": "button", "action_id": "rerun", "value": "inv-42",
                   "text": {"type": "plain_text", "text": "Re-run"}}]}]
    ts = client.chat_postMessage(channel=channel.id, thread_ts=parent, text="verdict", blocks=blocks)["ts"]

    delivery = sender.block_action(channel.id, alice.id, ts, "rerun")
    assert delivery.status == 200
    stub.wait_for(stub.state.response_posts)
    payload = json.loads(urllib.parse.parse_qs(delivery.request.body.decode())["payload"][0])
    assert payload["type"] == "block_actions"
    assert payload["container"] == {"type": "message", "message_ts": ts, "channel_id": channel.id,
                                    "is_ephemeral": False, "thread_ts": parent}
    assert payload["actions"][0]["block_id"] == "controls" and payload["actions"][0]["value"] == "inv-42"
    assert bolt.actions[0]["message"]["ts"] == ts
    def edited() -> Message | None:
        found = stub.state.message(channel.id, ts)
        return found if found is not None and found.edits else None

    message = stub.wait_for(edited)
    assert message.text == "re-running" and message.edits[0].text == "verdict"


def test_block_action_on_a_button_the_message_lacks_is_refused(
    stub: SlackStub, sender: SlackSender, channel: Channel, alice: User
) -> None:
    ts = stub.post_user_message(channel.id, alice.id, "no buttons here")
    with pytest.raises(LabError):
        sender.block_action(channel.id, alice.id, ts, "rerun")


def test_mention_inside_a_thread_is_a_reply_and_the_answer_stays_in_that_thread(
    stub: SlackStub, sender: SlackSender, channel: Channel, alice: User
) -> None:
    parent = stub.post_user_message(channel.id, alice.id, "pods in shop are timing out")
    delivery = sender.app_mention(channel.id, alice.id, "<@UBOT> can web reach api?", thread_ts=parent)
    event = json.loads(delivery.request.body)["event"]
    assert (event["thread_ts"], event["parent_user_id"]) == (parent, alice.id)
    thread = stub.state.wait_for_thread(channel.id, parent, replies=2)
    assert [m.text for m in thread] == ["pods in shop are timing out", "<@UBOT> can web reach api?", "on it"]
