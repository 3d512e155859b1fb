"""What the stand-in does with POSTs to a response_url, as Slack does: ephemeral by default, in_channel,
replace_original and delete_original; and that concurrent posts get distinct, ordered timestamps."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.webhook import WebhookClient

from lab.slackstub import SlackStub
from lab.slackstub.state import Channel, User, ts_key


def test_response_without_type_is_ephemeral_to_the_user_who_asked(stub: SlackStub, channel: Channel, alice: User) -> None:
    url = stub.new_response_url("command", channel.id, alice.id)
    answer = WebhookClient(url).send(text="only for you")
    assert answer.status_code == 200
    [post] = stub.state.response_posts()
    assert post.response_type == "ephemeral"
    [shown] = stub.state.ephemeral_messages(channel.id, alice.id)
    assert shown.text == "only for you" and shown.ts == post.message_ts
    assert stub.messages(channel.id) == []


def test_in_channel_response_is_a_visible_bot_message(stub: SlackStub, channel: Channel, alice: User) -> None:
    url = stub.new_response_url("command", channel.id, alice.id)
    WebhookClient(url).send(text="for everyone", response_type="in_channel")
    [message] = stub.messages(channel.id)
    assert (message.text, message.user, message.ephemeral) == ("for everyone", "UBOT", False)


def test_replace_and_delete_original_act_on_the_clicked_message(stub: SlackStub, channel: Channel, alice: User) -> None:
    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    ts = client.chat_postMessage(channel=channel.id, text="verdict v1")["ts"]
    url = stub.new_response_url("action", channel.id, alice.id, message_ts=ts)
    WebhookClient(url).send(text="verdict v2", replace_original=True)
    message = stub.state.message(channel.id, ts)
    assert message is not None and message.text == "verdict v2" and message.edits[0].text == "verdict v1"
    WebhookClient(url).send_dict({"delete_original": True})
    assert stub.messages(channel.id) == []
    assert [p.delete_original for p in stub.state.response_posts()] == [False, True]


def test_unknown_response_url_and_bad_body_are_refused(stub: SlackStub, channel: Channel, alice: User) -> None:
    assert WebhookClient(f"{stub.origin}/response/R404").send(text="x").status_code == 404
    url = stub.new_response_url("command", channel.id, alice.id)
    request = urllib.request.Request(url, data=b"{not json", method="POST", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 400
    assert json.loads(error.value.read())["error"] == "invalid_payload"


def test_concurrent_posts_get_distinct_increasing_timestamps(stub: SlackStub, channel: Channel) -> None:
    answers: list[Any] = []

    def post_many() -> None:
        client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
        for i in range(10):
            answers.append(client.chat_postMessage(channel=channel.id, text=str(i))["ts"])

    workers = [threading.Thread(target=post_many) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stored = [m.ts for m in stub.messages(channel.id)]
    assert len(set(answers)) == 40
    assert sorted(answers, key=ts_key) == stored
    assert all(len(ts.split(".")[1]) == 6 for ts in stored)
