"""User-group access and the Resolved modal, against the Slack stand-in's Web API (real WebClient)."""

from __future__ import annotations

import json

import pytest
from slack_sdk import WebClient

from bot.slack.access import ChannelAccess
from bot.slack.groups import GroupAccess, allowed_namespaces
from bot.slack.home import home_view
from bot.slack.messaging import SlackPoster
from bot.slack.modals import ResolveTarget, resolve_modal, submitted
from lab.slackstub import SlackSender, SlackStub


@pytest.fixture
def poster(stub: SlackStub) -> SlackPoster:
    return SlackPoster(WebClient(token=stub.state.bot_token, base_url=stub.base_url))


def test_a_group_member_may_ask_about_the_groups_namespaces_in_a_restricted_channel(stub: SlackStub, poster: SlackPoster) -> None:
    ana, bob = stub.state.add_user("ana"), stub.state.add_user("bob")
    group = stub.state.add_usergroup("netops", [ana.id])
    channels = ChannelAccess({"CSHOP": ["shop"]})
    groups = GroupAccess({group.id: ["payments"]}, poster)
    assert allowed_namespaces(channels, groups, "CSHOP", ana.id) == frozenset({"shop", "payments"})
    assert allowed_namespaces(channels, groups, "CSHOP", bob.id) == frozenset({"shop"})
    assert allowed_namespaces(channels, groups, "COTHER", bob.id) == frozenset()
    assert allowed_namespaces(ChannelAccess({}), groups, "CSHOP", bob.id) is None


def test_group_members_are_cached_and_a_failed_lookup_grants_nothing(stub: SlackStub, poster: SlackPoster) -> None:
    ana = stub.state.add_user("ana")
    group = stub.state.add_usergroup("netops", [ana.id])
    now = [0.0]
    groups = GroupAccess({group.id: ["*"]}, poster, ttl_s=60, clock=lambda: now[0])
    assert groups.namespaces_for(ana.id) is None
    assert groups.namespaces_for(ana.id) is None
    assert len(stub.calls("usergroups.users.list")) == 1
    now[0] = 120.0
    stub.fail("usergroups.users.list", "ratelimited")
    assert groups.namespaces_for(ana.id) == frozenset()


def test_the_resolve_modal_opens_in_the_stand_in_and_its_submission_carries_the_note(
    stub: SlackStub, poster: SlackPoster
) -> None:
    ana = stub.state.add_user("ana")
    target = ResolveTarget("inv_01TEST", "C1", "1700000000.000100")
    view_id = poster.open_view("123.456.abc", resolve_modal(target))
    assert view_id is not None
    opened = stub.state.opened_views()[-1]
    view = stub.web_api.opened_view_json(opened.id, opened.view, opened.hash)
    sender = SlackSender("http://127.0.0.1:9/slack/events", "secret", stub)
    payload = sender.view_submission_payload(view, ana.id, "  re-enabled ip_forward  ")
    assert submitted(payload) == (target, "re-enabled ip_forward")
    payload["view"]["callback_id"] = "something_else"
    assert submitted(payload) is None


def test_views_open_refuses_a_view_that_is_not_a_modal(stub: SlackStub) -> None:
    from slack_sdk.errors import SlackApiError

    client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
    with pytest.raises(SlackApiError) as refused:
        client.views_open(trigger_id="1.2.3", view={"type": "home", "blocks": []})
    assert refused.value.response["error"] == "invalid_arguments"
    assert stub.state.opened_views() == []


def test_the_home_view_escapes_questions() -> None:
    from datetime import UTC, datetime

    from bot.history.search import SearchHit

    hit = SearchHit(
        "inv_01X", "why can't <b>a</b> reach b & c", None, None, None, datetime.now(UTC), "U1", "ana", "C1", None, None, None,
        "running", 0.0,
    )  # fmt: skip
    shown = json.dumps(home_view([hit], [], own_only=False))
    assert "&lt;b&gt;a&lt;/b&gt;" in shown and "&amp; c" in shown and "<b>" not in shown
