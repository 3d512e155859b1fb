"""The Slack stand-in's Web API, driven by the real slack_sdk WebClient: shapes, state and Slack's errors."""

from __future__ import annotations

import json
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from lab.slackstub import SlackStub
from lab.slackstub.state import Channel, User


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    stand_in = SlackStub()
    stand_in.start()
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def client(stub: SlackStub) -> WebClient:
    return WebClient(token=stub.state.bot_token, base_url=stub.base_url)


@pytest.fixture
def channel(stub: SlackStub) -> Channel:
    return stub.state.add_channel("incidents")


@pytest.fixture
def alice(stub: SlackStub) -> User:
    return stub.state.add_user("alice", real_name="Alice Ops")


def test_auth_test_answers_with_the_bot_identity(stub: SlackStub, client: WebClient) -> None:
    answer = client.auth_test()
    assert answer["ok"] is True
    assert answer["user_id"] == "UBOT"
    assert answer["bot_id"] == "BBOT"
    assert answer["team_id"] == stub.state.team.id
    assert answer["url"] == "https://kubereach-lab.slack.com/"


def test_unknown_token_is_invalid_auth_and_missing_token_is_not_authed(stub: SlackStub) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-not-ours", base_url=stub.base_url).auth_test()
    assert wrong.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as missing:
        WebClient(base_url=stub.base_url).auth_test()
    assert missing.value.response["error"] == "not_authed"


def test_unknown_method_answers_unknown_method(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        client.api_call("chat.doesNotExist", json={"channel": "C1"})
    assert error.value.response["error"] == "unknown_method"


def test_post_message_in_a_thread_is_recorded_as_a_reply_under_the_parent(
    stub: SlackStub, client: WebClient, channel: Channel, alice: User
) -> None:
    question_ts = stub.post_user_message(channel.id, alice.id, "why can't web reach api?")
    first = client.chat_postMessage(channel=channel.id, thread_ts=question_ts, text="looking…")
    second = client.chat_postMessage(channel=channel.id, thread_ts=question_ts, text="verdict: NO_ENDPOINTS",
                                     blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*NO_ENDPOINTS*"}}])

    assert first["channel"] == channel.id
    assert first["message"]["thread_ts"] == question_ts
    assert first["message"]["bot_id"] == "BBOT"
    assert first["message"]["parent_user_id"] == alice.id
    assert float(question_ts) < float(first["ts"]) < float(second["ts"])
    thread = stub.thread(channel.id, question_ts)
    assert [m.text for m in thread] == ["why can't web reach api?", "looking…", "verdict: NO_ENDPOINTS"]
    assert thread[2].blocks[0]["text"]["text"] == "*NO_ENDPOINTS*"
    assert thread[1].user == "UBOT" and thread[0].user == alice.id


def test_replies_and_history_read_back_threads_as_slack_orders_them(
    stub: SlackStub, client: WebClient, channel: Channel, alice: User
) -> None:
    parent = client.chat_postMessage(channel=channel.id, text="parent")["ts"]
    client.chat_postMessage(channel=channel.id, thread_ts=parent, text="reply 1")
    client.chat_postMessage(channel=channel.id, thread_ts=parent, text="reply 2", reply_broadcast=True)
    stub.post_user_message(channel.id, alice.id, "later top-level")

    replies = client.conversations_replies(channel=channel.id, ts=parent)
    assert [m["text"] for m in replies["messages"]] == ["parent", "reply 1", "reply 2"]
    assert replies["messages"][0]["reply_count"] == 2
    history = client.conversations_history(channel=channel.id)
    assert [m["text"] for m in history["messages"]] == ["later top-level", "reply 2", "parent"]
    assert history["messages"][1]["subtype"] == "thread_broadcast"

    page = client.conversations_replies(channel=channel.id, ts=parent, limit=2)
    assert page["has_more"] is True
    rest = client.conversations_replies(channel=channel.id, ts=parent, limit=2,
                                        cursor=page["response_metadata"]["next_cursor"])
    assert [m["text"] for m in rest["messages"]] == ["reply 2"]
    with pytest.raises(SlackApiError) as missing:
        client.conversations_replies(channel=channel.id, ts="1.000001")
    assert missing.value.response["error"] == "thread_not_found"


def test_post_message_errors_are_slacks(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": "C404", "text": "t"}, "channel_not_found"),
        ({"channel": channel.id, "text": ""}, "no_text"),
        ({"channel": channel.id, "text": "x" * 40_001}, "msg_too_long"),
        ({"channel": channel.id, "text": "t", "blocks": [{"type": "divider"}] * 51}, "invalid_blocks"),
        ({"channel": channel.id, "text": "t", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}]},
         "invalid_blocks"),
        ({"channel": channel.id, "text": "t", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}]},
         "invalid_blocks"),
        ({"channel": channel.id, "text": "t", "blocks": [{"type": "no_such_block"}]}, "invalid_blocks"),
        ({"channel": channel.id, "text": "t", "blocks": [{"type": "section"}]}, "invalid_blocks"),
    ]
    for kwargs, expected in cases:
        # slack_sdk warns client-side about a missing text; what is tested is the server's answer.
        with warnings.catch_warnings(), pytest.raises(SlackApiError) as error:
            warnings.simplefilter("ignore", UserWarning)
            client.chat_postMessage(**kwargs)
        assert error.value.response["error"] == expected, kwargs
    assert stub.messages(channel.id) == []
    # 40,000 characters and 50 blocks are still accepted.
    client.chat_postMessage(channel=channel.id, text="x" * 40_000)
    client.chat_postMessage(channel=channel.id, text="fifty", blocks=[{"type": "divider"}] * 50)
    assert len(stub.messages(channel.id)) == 2


def test_invalid_blocks_names_the_offending_field(client: WebClient, channel: Channel) -> None:
    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel=channel.id, text="t", blocks=[
            {"type": "divider"}, {"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}])
    assert error.value.response["errors"] == ["must be less than 151 characters [json-pointer:/blocks/1/text/text]"]
    assert error.value.response["response_metadata"]["messages"][0].startswith("[ERROR] must be less than 151")


def test_posting_where_the_bot_is_not_a_member_is_not_in_channel(stub: SlackStub, client: WebClient) -> None:
    private = stub.state.add_channel("secret", is_private=True, bot_is_member=False)
    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel=private.id, text="hi")
    assert error.value.response["error"] == "not_in_channel"


def test_chat_update_keeps_the_edit_history(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    ts = client.chat_postMessage(channel=channel.id, text="step 1/3")["ts"]
    client.chat_update(channel=channel.id, ts=ts, text="step 2/3")
    answer = client.chat_update(channel=channel.id, ts=ts, text="done",
                                blocks=[{"type": "section", "text": {"type": "plain_text", "text": "done"}}])
    assert answer["ts"] == ts and answer["text"] == "done" and "edited" in answer["message"]
    message = stub.state.message(channel.id, ts)
    assert message is not None
    assert message.text == "done"
    assert [e.text for e in message.edits] == ["step 1/3", "step 2/3"]
    assert len(stub.messages(channel.id)) == 1


def test_chat_update_errors(stub: SlackStub, client: WebClient, channel: Channel, alice: User) -> None:
    with pytest.raises(SlackApiError) as missing:
        client.chat_update(channel=channel.id, ts="1700000000.000100", text="x")
    assert missing.value.response["error"] == "message_not_found"
    users_ts = stub.post_user_message(channel.id, alice.id, "mine")
    with pytest.raises(SlackApiError) as foreign:
        client.chat_update(channel=channel.id, ts=users_ts, text="x")
    assert foreign.value.response["error"] == "cant_update_message"


def test_post_ephemeral_is_shown_only_to_the_user_and_stays_out_of_history(
    stub: SlackStub, client: WebClient, channel: Channel, alice: User
) -> None:
    answer = client.chat_postEphemeral(channel=channel.id, user=alice.id, text="only you can see this")
    assert answer["ok"] is True and "message_ts" in answer
    [shown] = stub.state.ephemeral_messages(channel.id, alice.id)
    assert shown.ts == answer["message_ts"] and shown.text == "only you can see this"
    assert stub.messages(channel.id) == []
    assert client.conversations_history(channel=channel.id)["messages"] == []


def test_post_ephemeral_requires_a_known_user(client: WebClient, channel: Channel) -> None:
    with pytest.raises(SlackApiError) as missing:
        client.api_call("chat.postEphemeral", json={"channel": channel.id, "text": "x"})
    assert missing.value.response["error"] == "invalid_arguments"
    with pytest.raises(SlackApiError) as unknown:
        client.chat_postEphemeral(channel=channel.id, user="U404", text="x")
    assert unknown.value.response["error"] == "user_not_found"


def test_permalink_and_delete(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    parent = client.chat_postMessage(channel=channel.id, text="p")["ts"]
    reply = client.chat_postMessage(channel=channel.id, text="r", thread_ts=parent)["ts"]
    link = client.chat_getPermalink(channel=channel.id, message_ts=reply)["permalink"]
    assert link == (f"https://kubereach-lab.slack.com/archives/{channel.id}/p{reply.replace('.', '')}"
                    f"?thread_ts={parent}&cid={channel.id}")
    assert client.chat_delete(channel=channel.id, ts=reply)["ts"] == reply
    assert [m.ts for m in stub.thread(channel.id, parent)] == [parent]
    with pytest.raises(SlackApiError) as gone:
        client.chat_getPermalink(channel=channel.id, message_ts=reply)
    assert gone.value.response["error"] == "message_not_found"


def test_conversations_info_users_info_and_usergroups(stub: SlackStub, client: WebClient, channel: Channel,
                                                       alice: User) -> None:
    info = client.conversations_info(channel=channel.id)["channel"]
    assert (info["id"], info["name"], info["is_member"], info["is_private"]) == (channel.id, "incidents", True, False)
    user = client.users_info(user=alice.id)["user"]
    assert (user["name"], user["real_name"], user["is_bot"]) == ("alice", "Alice Ops", False)
    assert client.users_info(user="UBOT")["user"]["is_bot"] is True
    group = stub.state.add_usergroup("netops", [alice.id, "UBOT"])
    assert client.usergroups_users_list(usergroup=group.id)["users"] == [alice.id, "UBOT"]
    checks: list[tuple[Callable[[], object], str]] = [
        (lambda: client.conversations_info(channel="C404"), "channel_not_found"),
        (lambda: client.users_info(user="U404"), "user_not_found"),
        (lambda: client.usergroups_users_list(usergroup="S404"), "no_such_subteam"),
    ]
    for call, expected in checks:
        with pytest.raises(SlackApiError) as error:
            call()
        assert error.value.response["error"] == expected


def test_views_publish_records_the_home_tab(stub: SlackStub, client: WebClient, alice: User) -> None:
    view = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Recent verdicts*"}}]}
    answer = client.views_publish(user_id=alice.id, view=view)
    assert answer["view"]["type"] == "home" and answer["view"]["blocks"] == view["blocks"]
    [published] = stub.state.views(alice.id)
    assert published.view == view and published.id == answer["view"]["id"]
    with pytest.raises(SlackApiError) as error:
        client.views_publish(user_id=alice.id, view={"type": "modal", "blocks": []})
    assert error.value.response["error"] == "invalid_arguments"


def test_every_call_is_recorded_with_its_arguments(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    client.chat_postMessage(channel=channel.id, text="one")
    with pytest.raises(SlackApiError):
        client.chat_postMessage(channel="C404", text="two")
    calls = stub.calls("chat.postMessage")
    assert [c.args["text"] for c in calls] == ["one", "two"]
    assert [c.response["ok"] for c in calls] == [True, False]
    assert all(c.token == stub.state.bot_token and "token" not in c.args for c in calls)


def test_form_encoded_calls_are_understood_like_json_ones(stub: SlackStub, channel: Channel) -> None:
    data = f"channel={channel.id}&text=form+body&token={stub.state.bot_token}".encode()
    request = urllib.request.Request(stub.base_url + "chat.postMessage", data=data, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    assert body["ok"] is True and body["message"]["text"] == "form body"
    assert "warning" not in body


def test_json_without_charset_gets_slacks_missing_charset_warning(stub: SlackStub, channel: Channel) -> None:
    request = urllib.request.Request(
        stub.base_url + "chat.postMessage", data=json.dumps({"channel": channel.id, "text": "x"}).encode(),
        method="POST", headers={"Content-Type": "application/json", "Authorization": f"Bearer {stub.state.bot_token}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        body = json.loads(response.read())
    assert body["warning"] == "missing_charset"
    assert body["response_metadata"]["warnings"] == ["missing_charset"]


def test_wait_for_returns_once_another_thread_posts(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    import threading

    poster = threading.Thread(target=lambda: client.chat_postMessage(channel=channel.id, text="from elsewhere"))
    poster.start()
    try:
        found = stub.wait_for(lambda: [m for m in stub.messages(channel.id) if m.text == "from elsewhere"], timeout=5)
    finally:
        poster.join()
    assert found[0].user == "UBOT"


def test_post_user_message_refuses_unknown_channels_and_users(stub: SlackStub, channel: Channel, alice: User) -> None:
    from lab.errors import LabError

    with pytest.raises(LabError):
        stub.post_user_message("C404", alice.id, "x")
    with pytest.raises(LabError):
        stub.post_user_message(channel.id, "U404", "x")


def test_wait_for_times_out_with_a_lab_error(stub: SlackStub) -> None:
    from lab.slackstub import SlackStubTimeout

    with pytest.raises(SlackStubTimeout):
        stub.wait_for(lambda: stub.calls("chat.postMessage"), timeout=0.2)
