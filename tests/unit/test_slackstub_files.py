"""File uploads through the stand-in: slack_sdk's files_upload_v2 flow (three steps) and the legacy files.upload."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from lab.slackstub import SlackStub
from lab.slackstub.state import Channel


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


def test_files_upload_v2_stores_the_bytes_and_shares_them_in_the_thread(
    stub: SlackStub, client: WebClient, channel: Channel
) -> None:
    parent = client.chat_postMessage(channel=channel.id, text="investigation")["ts"]
    evidence = b"-A KUBE-SERVICES -d 10.96.0.20/32 -j REJECT\n" * 100
    answer = client.files_upload_v2(channel=channel.id, thread_ts=parent, filename="iptables.txt",
                                    content=evidence, title="iptables-save", initial_comment="full rules")

    assert answer["file"]["name"] == "iptables.txt"
    assert answer["file"]["title"] == "iptables-save"
    methods = [c.method for c in stub.calls()]
    assert methods == ["chat.postMessage", "files.getUploadURLExternal", "files.completeUploadExternal"]
    assert stub.calls("files.getUploadURLExternal")[0].args["length"] == str(len(evidence))
    [stored] = stub.state.files()
    assert stored.content == evidence and stored.completed and stored.channels == (channel.id,)
    thread = stub.thread(channel.id, parent)
    assert [m.text for m in thread] == ["investigation", "full rules"]
    assert thread[1].files == (stored.id,)
    replies = client.conversations_replies(channel=channel.id, ts=parent)["messages"]
    assert replies[1]["files"][0]["id"] == stored.id


def test_files_upload_v2_with_several_files_completes_them_together(
    stub: SlackStub, client: WebClient, channel: Channel
) -> None:
    answer = client.files_upload_v2(channel=channel.id, file_uploads=[
        {"filename": "a.json", "content": '{"a": 1}'},
        {"filename": "b.txt", "content": "b", "title": "B"},
    ])
    assert [f["name"] for f in answer["files"]] == ["a.json", "b.txt"]
    assert [f.content for f in stub.state.files()] == [b'{"a": 1}', b"b"]
    [message] = stub.messages(channel.id)
    assert len(message.files) == 2


def test_complete_upload_without_the_bytes_is_refused(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    file_id = client.files_getUploadURLExternal(filename="x.txt", length=3)["file_id"]
    with pytest.raises(SlackApiError) as error:
        client.files_completeUploadExternal(files=[{"id": file_id}], channel_id=channel.id)
    assert error.value.response["error"] == "file_upload_not_completed"
    with pytest.raises(SlackApiError) as unknown:
        client.files_completeUploadExternal(files=[{"id": "F404"}], channel_id=channel.id)
    assert unknown.value.response["error"] == "file_not_found"
    assert stub.messages(channel.id) == []


def test_files_upload_v2_to_an_unknown_channel_is_channel_not_found(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as error:
        client.files_upload_v2(channel="C404", filename="x.txt", content="x")
    assert error.value.response["error"] == "channel_not_found"


def test_legacy_files_upload_accepts_multipart_and_content(stub: SlackStub, client: WebClient, channel: Channel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        multipart = client.files_upload(file=b"\x00binary\xff", filename="dump.bin", channels=channel.id)
        text = client.files_upload(content="plain", filename="note.txt", title="Note", channels=[channel.id],
                                   initial_comment="see note")
    assert multipart["file"]["name"] == "dump.bin" and multipart["file"]["size"] == 8
    assert text["file"]["title"] == "Note"
    assert [f.content for f in stub.state.files()] == [b"\x00binary\xff", b"plain"]
    assert [m.text for m in stub.messages(channel.id)] == ["", "see note"]
