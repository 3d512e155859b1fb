"""`kubereach lab slack …`: talk to a running `kubereach serve` as Slack would, and read what it posted.

    kubereach --config CFG lab slack send --to http://127.0.0.1:3000/slack/events "/reach why can't frontend reach api"
    kubereach --config CFG lab slack send --socket-mode "@kubereach why can't frontend reach ledger"
    kubereach --config CFG lab slack click --to URL --ts 1733470000.000200 "Show evidence"
    kubereach --config CFG lab slack messages --channel CINCIDENTS [--thread TS] --json

Requests are signed with the lab's signing secret (HTTP) or sent over the app's Socket Mode connection
(`--socket-mode`), about the lab's Slack stand-in process (`lab.slackstub.control`). Every send prints
one JSON line: ``{"status", "body", "ack_ms"}`` (plus ``"ts"``, the message a mention or click is about).
"""

from __future__ import annotations

import json
import urllib.parse
from pathlib import Path
from typing import Any

import click
import yaml

from lab.errors import LabError
from lab.slackstub.control import RemoteWorkspace
from lab.slackstub.sender import SlackSender


class LabSlack:
    """The lab's Slack settings from a config file: where the stand-in is and how to sign."""

    def __init__(self, config: Path) -> None:
        """Read `config` (written by `kubereach lab up`)."""
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise LabError(f"cannot read config {config}: {exc}", exit_code=2) from exc
        slack = data.get("slack") if isinstance(data, dict) else None
        if not isinstance(slack, dict) or not slack.get("control"):
            raise LabError(
                f"config {config} names no lab Slack stand-in", hint="use the config `kubereach lab up` wrote", exit_code=2
            )
        self.channel = str(slack["channel"])
        self.user = str(slack["user"])
        self.signing_secret = str(data.get("slack_signing_secret") or "")
        self.workspace = RemoteWorkspace(str(slack["control"]), str(data.get("slack_bot_token") or ""))

    def sender(self, to: str | None) -> SlackSender:
        """A sender signing for the app at `to`."""
        return SlackSender(to or "http://127.0.0.1:1/unused", self.signing_secret, self.workspace, timeout=30)


def _config(ctx: click.Context) -> LabSlack:
    root = ctx.find_root().obj or {}
    config = root.get("config_path")
    if config is None:
        from lab.state import require_state

        config = Path(require_state(ctx.obj["prefix"]).config_file)
    return LabSlack(Path(config))


def _print(status: int, body: str, ack_ms: float, **extra: Any) -> None:
    click.echo(json.dumps({"status": status, "body": body, "ack_ms": round(ack_ms, 1), **extra}))


def _form_fields(body: bytes) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(body.decode(), keep_blank_values=True))


def _socket(lab: LabSlack, kind: str, payload: dict[str, Any], **extra: Any) -> None:
    ack = lab.workspace.socket_deliver(kind, payload)
    body = json.dumps(ack["payload"]) if ack.get("payload") else ""
    _print(200, body, float(ack["ack_ms"]), **extra)


@click.group()
def slack() -> None:
    """Drive a running `kubereach serve` through the lab's Slack stand-in, and read the channel."""


_TO = click.option("--to", "to", default=None, help="The app's events URL (http://HOST:PORT/slack/events).")
_SOCKET = click.option("--socket-mode", "socket_mode", is_flag=True, help="Send over the app's Socket Mode connection.")
_CHANNEL = click.option("--channel", default=None, help="Channel id (default: the lab's incident channel).")


@slack.command()
@_TO
@_SOCKET
@_CHANNEL
@click.option("--user", default=None, help="Who types it (default: the lab's on-call person).")
@click.option("--thread", "thread_ts", default=None, help="Mention inside this thread.")
@click.argument("text")
@click.pass_context
def send(
    ctx: click.Context, to: str | None, socket_mode: bool, channel: str | None, user: str | None, thread_ts: str | None, text: str
) -> None:
    """Send TEXT: a signed `/reach …` slash command, otherwise an app_mention (the message is posted first)."""
    lab = _config(ctx)
    if not socket_mode and not to:
        raise click.UsageError("give --to URL (HTTP mode) or --socket-mode")
    sender = lab.sender(to)
    where, who = channel or lab.channel, user or lab.user
    if text.startswith("/reach"):
        command_text = text.removeprefix("/reach").strip()
        request = sender.slash_command_request("/reach", command_text, channel=where, user=who)
        if socket_mode:
            _socket(lab, "slash_commands", _form_fields(request.body))
            return
        delivery = sender.deliver(request)
        _print(delivery.status, delivery.body, delivery.elapsed * 1000)
        return
    event = sender.app_mention_event(where, who, text.removeprefix("@kubereach").strip(), thread_ts=thread_ts)
    if socket_mode:
        _socket(lab, "events_api", sender.event_envelope(event), ts=event["ts"])
        return
    delivery = sender.deliver(sender.event_request(event))
    _print(delivery.status, delivery.body, delivery.elapsed * 1000, ts=event["ts"])


def _action_for(message: dict[str, Any], label: str) -> str:
    wanted = label.strip().lower()
    for block in message.get("blocks") or []:
        elements = list(block.get("elements", [])) if block.get("type") == "actions" else []
        for element in elements:
            shown = str((element.get("text") or {}).get("text", "")).strip().lower()
            if shown == wanted and element.get("action_id"):
                return str(element["action_id"])
    raise LabError(
        f"message {message.get('ts')} shows no {label!r} button", hint="`lab slack messages` shows its blocks", exit_code=2
    )


@slack.command("click")
@_TO
@_SOCKET
@_CHANNEL
@click.option("--user", default=None, help="Who clicks (default: the lab's on-call person).")
@click.option("--ts", "message_ts", required=True, help="The message showing the button.")
@click.argument("label")
@click.pass_context
def click_(
    ctx: click.Context, to: str | None, socket_mode: bool, channel: str | None, user: str | None, message_ts: str, label: str
) -> None:
    """Press the button LABEL (as shown, e.g. "Show evidence") on message --ts."""
    lab = _config(ctx)
    if not socket_mode and not to:
        raise click.UsageError("give --to URL (HTTP mode) or --socket-mode")
    where, who = channel or lab.channel, user or lab.user
    message = lab.workspace.message_json(where, message_ts)
    if message is None:
        raise LabError(f"no message {message_ts} in {where}", exit_code=2)
    sender = lab.sender(to)
    payload = sender.block_action_payload(where, who, message_ts, _action_for(message, label))
    if socket_mode:
        _socket(lab, "interactive", payload, ts=message_ts)
        return
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    from lab.slackstub.sender import FORM, SlackRequest

    delivery = sender.deliver(SlackRequest(kind="block_actions", body=body, content_type=FORM, message_ts=message_ts))
    _print(delivery.status, delivery.body, delivery.elapsed * 1000, ts=message_ts)


@slack.command()
@_CHANNEL
@click.option("--thread", "thread_ts", default=None, help="Only this thread (its parent and replies).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {ts, thread_ts, user, text, blocks, …}.")
@click.pass_context
def messages(ctx: click.Context, channel: str | None, thread_ts: str | None, as_json: bool) -> None:
    """What was posted in the channel (ephemeral messages and files included)."""
    lab = _config(ctx)
    found = lab.workspace.messages(channel or lab.channel, thread_ts)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for message in found:
        mark = " (only visible to " + str(message["user"]) + ")" if message.get("ephemeral") else ""
        indent = "    " if message.get("thread_ts") and message["thread_ts"] != message["ts"] else ""
        first = str(message["text"]).splitlines()[0] if message["text"] else ""
        click.echo(f"{indent}{message['ts']} {message['user']}{mark}: {first}")


@slack.command()
@_TO
@_SOCKET
@click.option("--user", default=None, help="Who submits (default: the lab's on-call person).")
@click.option("--view", "view_id", default=None, help="The modal's id (default: the newest opened).")
@click.argument("text")
@click.pass_context
def submit(ctx: click.Context, to: str | None, socket_mode: bool, user: str | None, view_id: str | None, text: str) -> None:
    """Type TEXT into the modal's text field and submit it (e.g. the Resolved button's note)."""
    lab = _config(ctx)
    if not socket_mode and not to:
        raise click.UsageError("give --to URL (HTTP mode) or --socket-mode")
    opened = [v["view"] for v in lab.workspace.views()["opened"] if view_id is None or v["view"]["id"] == view_id]
    if not opened:
        raise LabError("no modal is open", hint="click a button that opens one first", exit_code=2)
    sender = lab.sender(to)
    payload = sender.view_submission_payload(opened[-1], user or lab.user, text)
    if socket_mode:
        _socket(lab, "interactive", payload)
        return
    delivery = sender.deliver(sender.view_submission_request(opened[-1], user or lab.user, text))
    _print(delivery.status, delivery.body, delivery.elapsed * 1000)


@slack.command()
@_TO
@_SOCKET
@click.option("--user", default=None, help="Whose Home tab (default: the lab's on-call person).")
@click.pass_context
def home(ctx: click.Context, to: str | None, socket_mode: bool, user: str | None) -> None:
    """Open the app's Home tab (an app_home_opened event); `messages` does not show it, `views` in the stand-in does."""
    lab = _config(ctx)
    if not socket_mode and not to:
        raise click.UsageError("give --to URL (HTTP mode) or --socket-mode")
    sender = lab.sender(to)
    event = {"type": "app_home_opened", "user": user or lab.user, "channel": "D" + (user or lab.user)[1:], "tab": "home"}
    if socket_mode:
        _socket(lab, "events_api", sender.event_envelope(event))
        return
    delivery = sender.deliver(sender.event_request(event))
    _print(delivery.status, delivery.body, delivery.elapsed * 1000)
