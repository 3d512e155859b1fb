"""The stand-in's Socket Mode against the real slack_bolt/slack_sdk Socket Mode client (no lab needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from lab.slackstub import SlackStub
from tests.polling import eventually

APP_TOKEN = "xapp-1-test-socket-mode"


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    with SlackStub(app_token=APP_TOKEN) as running:
        yield running


@pytest.fixture
def app(stub: SlackStub) -> Iterator[tuple[App, list[tuple[str, Any]]]]:
    seen: list[tuple[str, Any]] = []
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    bolt = App(client=client, token_verification_enabled=False, signing_secret="unused", request_verification_enabled=False)

    @bolt.command("/reach")
    def reach(ack: Any, body: dict[str, Any]) -> None:
        ack()
        seen.append(("command", body["text"]))

    @bolt.event("app_mention")
    def mention(event: dict[str, Any]) -> None:
        seen.append(("mention", event["text"]))

    @bolt.action("kubereach_rerun")
    def rerun(ack: Any, body: dict[str, Any]) -> None:
        ack()
        seen.append(("click", body["actions"][0]["value"]))

    handler = SocketModeHandler(bolt, APP_TOKEN, web_client=client)
    handler.connect()  # type: ignore[no-untyped-call]
    try:
        yield bolt, seen
    finally:
        handler.close()  # type: ignore[no-untyped-call]


def test_apps_connections_open_takes_only_the_app_token(stub: SlackStub) -> None:
    bot = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    with pytest.raises(SlackApiError) as refused:
        bot.apps_connections_open(app_token=stub.state.bot_token)
    assert refused.value.response["error"] == "not_allowed_token_type"
    url = WebClient(base_url=stub.base_url).apps_connections_open(app_token=APP_TOKEN)["url"]
    assert url.startswith("ws://127.0.0.1:") and "ticket=" in url


def test_envelopes_reach_the_real_client_and_are_acked_also_after_a_reconnect(
    stub: SlackStub, app: tuple[App, list[tuple[str, Any]]]
) -> None:
    _, seen = app
    hub = stub.socket_mode
    connects = hub.wait_connected()
    ack = hub.deliver("slash_commands", {"command": "/reach", "text": "why can't a reach b", "user_id": "U1", "channel_id": "C1"})
    assert ack.envelope_id and ack.seconds >= 0
    eventually(lambda: ("command", "why can't a reach b") in seen, what="the command")
    hub.deliver("events_api", {"type": "event_callback", "event": {"type": "app_mention", "text": "hi", "user": "U1"}})
    eventually(lambda: ("mention", "hi") in seen, what="the mention")

    assert hub.disconnect() == 1
    hub.wait_connected(more_than=connects)
    eventually(lambda: hub.connected() == 1, what="one connection after the reconnect")
    payload = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "actions": [{"action_id": "kubereach_rerun", "value": "inv_01X", "type": "button", "block_id": "b"}],
        "channel": {"id": "C1"},
        "container": {"type": "message", "message_ts": "1.2"},
    }
    hub.deliver("interactive", payload)
    eventually(lambda: ("click", "inv_01X") in seen, what="the click after the reconnect")


def test_a_url_is_good_for_one_connection(stub: SlackStub) -> None:
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    url = WebClient(base_url=stub.base_url).apps_connections_open(app_token=APP_TOKEN)["url"]
    with connect(url) as first:
        assert '"hello"' in str(first.recv(timeout=5))
        with pytest.raises((WebSocketException, InvalidStatus, OSError)), connect(url) as second:
            second.recv(timeout=5)
