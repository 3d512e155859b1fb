"""Fixtures shared by the unit tests: the Slack stand-in (lab/slackstub) and what most tests take from it.

A test module that needs a differently seeded stand-in (channels, users, an app token) defines its
own `stub` fixture, which overrides this one for that module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient

from lab.slackstub import SlackStub
from lab.slackstub.state import Channel, User


@pytest.fixture
def stub() -> Iterator[SlackStub]:
    """A running, empty Slack stand-in on 127.0.0.1."""
    with SlackStub() as running:
        yield running


@pytest.fixture
def client(stub: SlackStub) -> WebClient:
    """The official slack_sdk client, as the bot user, pointed at the stand-in."""
    return WebClient(token=stub.state.bot_token, base_url=stub.base_url)


@pytest.fixture
def channel(stub: SlackStub) -> Channel:
    """A channel #incidents."""
    return stub.state.add_channel("incidents")


@pytest.fixture
def alice(stub: SlackStub) -> User:
    """A user alice (real name Alice Ops)."""
    return stub.state.add_user("alice", real_name="Alice Ops")
