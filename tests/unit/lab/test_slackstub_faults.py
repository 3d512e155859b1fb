"""Faults on demand: 429 with Retry-After, injected Slack errors, and outages at the connection level."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from lab.slackstub import SlackStub
from lab.slackstub.state import Channel


def test_rate_limit_answers_429_with_retry_after_and_ratelimited(stub: SlackStub, channel: Channel) -> None:
    stub.rate_limit("chat.postMessage", times=1, retry_after=7)
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel=channel.id, text="x")
    assert error.value.response.status_code == 429
    assert error.value.response["error"] == "ratelimited"
    assert error.value.response.headers["Retry-After"] == "7"
    # Only the next call was limited; other methods never were.
    assert client.chat_postMessage(channel=channel.id, text="y")["ok"] is True
    assert [c.http_status for c in stub.calls("chat.postMessage")] == [429, 200]


def test_slack_sdk_rate_limit_retry_handler_gets_through_after_the_429s(stub: SlackStub, channel: Channel) -> None:
    stub.rate_limit("chat.postMessage", times=2, retry_after=0)
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    client.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=2))
    answer = client.chat_postMessage(channel=channel.id, text="eventually")
    assert answer["ok"] is True
    assert [c.http_status for c in stub.calls("chat.postMessage")] == [429, 429, 200]
    assert [m.text for m in stub.messages(channel.id)] == ["eventually"]


def test_fail_makes_the_next_calls_answer_a_slack_error(stub: SlackStub, channel: Channel) -> None:
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    ts = client.chat_postMessage(channel=channel.id, text="progress")["ts"]
    stub.fail("chat.update", "message_not_found", times=2)
    for _ in range(2):
        with pytest.raises(SlackApiError) as error:
            client.chat_update(channel=channel.id, ts=ts, text="done")
        assert error.value.response["error"] == "message_not_found"
    assert client.chat_update(channel=channel.id, ts=ts, text="done")["ok"] is True
    message = stub.state.message(channel.id, ts)
    assert message is not None and message.text == "done" and len(message.edits) == 1


def test_down_fails_at_the_connection_level_and_up_restores_service(stub: SlackStub, channel: Channel) -> None:
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url, timeout=5)
    stub.down()
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        client.chat_postMessage(channel=channel.id, text="lost")
    request = urllib.request.Request(stub.base_url + "auth.test", data=b"", method="POST")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(request, timeout=5)
    assert stub.calls() == []
    stub.up()
    assert client.chat_postMessage(channel=channel.id, text="back")["ok"] is True
    assert [m.text for m in stub.messages(channel.id)] == ["back"]


def test_stopped_stub_refuses_connections(channel: Channel, stub: SlackStub) -> None:
    base_url = stub.base_url
    stub.stop()
    client = WebClient(token="xoxb-kubereach-lab", base_url=base_url, timeout=5)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        client.auth_test()
