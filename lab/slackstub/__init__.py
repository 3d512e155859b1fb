"""The lab's local Slack: a Web API stand-in that records channels, threads and messages, and a
sender that delivers signed slash commands, events and interactions to the app.

    with SlackStub() as stub:
        channel = stub.state.add_channel("incidents")
        alice = stub.state.add_user("alice")
        client = WebClient(token=stub.state.bot_token, base_url=stub.base_url)
        sender = SlackSender(app_url, signing_secret, stub)
"""

from lab.slackstub.sender import SlackDelivery, SlackRequest, SlackSender
from lab.slackstub.server import SlackStub
from lab.slackstub.signing import sign
from lab.slackstub.state import (
    ApiCall,
    Channel,
    Message,
    MessageEdit,
    PublishedView,
    ResponseTarget,
    ResponseUrlPost,
    SlackState,
    SlackStubTimeout,
    StoredFile,
    Team,
    User,
    UserGroup,
)

__all__ = [
    "ApiCall",
    "Channel",
    "Message",
    "MessageEdit",
    "PublishedView",
    "ResponseTarget",
    "ResponseUrlPost",
    "SlackDelivery",
    "SlackRequest",
    "SlackSender",
    "SlackState",
    "SlackStub",
    "SlackStubTimeout",
    "StoredFile",
    "Team",
    "User",
    "UserGroup",
    "sign",
]
