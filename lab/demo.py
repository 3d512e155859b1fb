"""`kubereach demo`: the lab, the agents, the Slack app with SQLite and the local Slack, and a terminal channel.

You type what you would type in Slack — ``/reach why can't frontend reach ledger`` or
``@kubereach …`` — and see the thread as Slack would show it (rendered with Rich). Buttons are
clicked by typing their labels (``Re-run``, ``Show evidence``, ``Resolved``, or a candidate such as
``svc/api in shop`` when a name was ambiguous); ``!fault NAME [--node N]
[--pod NS/NAME] [--service NS/NAME]`` breaks something and ``!heal`` repairs it. The demo starts with
a short guided tour (`TOUR`); ``--script FILE`` runs a file of such lines without asking and prints
every thread. Ctrl-C tears everything down.

`LocalSlack` is the same wiring for tests: the real bolt app over HTTP on 127.0.0.1, the stand-in as
its Web API, and a sender that signs and delivers what Slack would.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.rule import Rule
from rich.text import Text

from lab import faults, lifecycle
from lab.errors import LabError
from lab.plan import LabOptions
from lab.slackstub import Message, SlackDelivery, SlackSender, SlackStub
from lab.slackstub.state import ts_key

TOUR_FILE = Path(__file__).with_name("demo_tour.txt")
ANSWER_TIMEOUT_S = 120.0
BUTTONS = {
    "re-run": "kubereach_rerun",
    "show evidence": "kubereach_show_evidence",
    "trace the packet": "kubereach_trace",
    "resolved": "kubereach_resolved",
}
EMOJI = {
    ":white_check_mark:": "✅",
    ":x:": "❌",
    ":warning:": "⚠️ ",
    ":heavy_minus_sign:": "➖",
    ":hourglass_flowing_sand:": "⏳",
    ":mag:": "🔍",
    ":repeat:": "🔁",
    ":speech_balloon:": "💬",
    ":no_entry:": "⛔",
    ":thinking_face:": "🤔",
}


@dataclass
class LocalSlack:
    """The Slack app served on 127.0.0.1 with the stand-in as its Slack; one channel and one person to talk."""

    stub: SlackStub
    server: Any
    deps: Any
    sender: SlackSender
    channel: str
    user: str
    signing_secret: str
    acks: list[float] = field(default_factory=list)
    """Seconds until the app acknowledged each delivery, in order."""

    @classmethod
    def start(
        cls,
        config: Path,
        database_url: str,
        *,
        channel_namespaces: dict[str, list[str]] | None = None,
        channel_name: str = "incidents",
        user_name: str = "you",
    ) -> LocalSlack:
        """Start the stand-in, the app (settings from the lab's `config`) and its HTTP endpoint."""
        from bot.investigation import Investigator
        from bot.settings import load_settings
        from bot.slack.app import build_app, build_deps
        from bot.slack.serve import SlackHttpServer

        stub = SlackStub()
        base_url = stub.start()
        try:
            channel = stub.state.add_channel(channel_name).id
            user = stub.state.add_user(user_name).id
            secret = secrets.token_hex(16)
            settings = load_settings(
                config,
                database_url=SecretStr(database_url),
                slack_bot_token=SecretStr(stub.state.bot_token),
                slack_signing_secret=SecretStr(secret),
                slack_api_url=base_url,
                channel_namespaces=channel_namespaces or {},
            )
            deps = build_deps(settings, Investigator)
            server = SlackHttpServer(build_app(settings, deps), "127.0.0.1", 0, signing_secret=secret)
            url = server.start()
        except BaseException:
            stub.stop()
            raise
        return cls(stub, server, deps, SlackSender(url, secret, stub, timeout=30), channel, user, secret)

    def close(self) -> None:
        """Stop the endpoint, the app's loop and the stand-in."""
        try:
            self.deps.in_flight.wait_idle(ANSWER_TIMEOUT_S)
            self.server.stop()
            self.deps.close()
        finally:
            self.stub.stop()

    def _delivered(self, delivery: SlackDelivery) -> SlackDelivery:
        self.acks.append(delivery.elapsed)
        if not self.deps.in_flight.wait_idle(ANSWER_TIMEOUT_S):
            raise LabError(f"the app did not finish answering within {ANSWER_TIMEOUT_S:.0f} s")
        return delivery

    def command(self, text: str, *, channel: str | None = None, **options: Any) -> SlackDelivery:
        """``/reach text`` in the channel; returns once the app has answered."""
        return self._delivered(
            self.sender.slash_command("/reach", text, channel=channel or self.channel, user=self.user, **options)
        )

    def mention(self, text: str, *, channel: str | None = None, thread_ts: str | None = None, **options: Any) -> SlackDelivery:
        """``@kubereach text`` in the channel (or a thread); returns once the app has answered.

        Bolt acknowledges an event before its listener starts, so the ack alone does not say the work
        began: wait for the app's first word after the mention (in the thread, or privately), then idle.
        """
        where = channel or self.channel
        delivery = self.sender.app_mention(where, self.user, text, thread_ts=thread_ts, **options)
        mentioned = delivery.request.message_ts or ""
        state = self.stub.state

        def answered() -> bool:
            return any(
                m.bot_id is not None and ts_key(m.ts) > ts_key(mentioned) for m in state.messages(where, include_ephemeral=True)
            )

        if options.get("retry_num") is None:
            state.wait_for(answered, ANSWER_TIMEOUT_S)
        return self._delivered(delivery)

    def retry(self, delivery: SlackDelivery, retry_num: int = 1) -> SlackDelivery:
        """Slack's retry of an earlier delivery."""
        return self._delivered(self.sender.retry(delivery, retry_num=retry_num))

    def click(self, label: str, *, channel: str | None = None, message: Message | None = None) -> SlackDelivery:
        """Click the button `label` on `message` (default: the newest message showing it).

        Re-run, Show evidence and Resolved are known by name; any other label (a candidate of an
        ambiguous name, ``svc/api in shop``) is looked up on the newest message showing it.
        """
        where = channel or self.channel
        action_id = BUTTONS.get(label.strip().lower())
        target = None
        if action_id is not None:
            target = message or self.newest_with_button(action_id, where)
        else:
            found = self.button_labelled(label, where)
            if found is not None:
                target, action_id = found
        if target is None or action_id is None:
            raise LabError(f"no message shows a {label!r} button yet", hint="ask a question first")
        return self._delivered(self.sender.block_action(where, self.user, target.ts, action_id))

    def button_labelled(self, label: str, channel: str | None = None) -> tuple[Message, str] | None:
        """The newest visible message with a button labelled `label` (any case), and that button's action id."""
        wanted = label.strip().lower()
        for message in reversed(self.stub.messages(channel or self.channel)):
            for block in message.blocks:
                for element in block.get("elements", []) if block.get("type") == "actions" else []:
                    if str(element.get("text", {}).get("text", "")).strip().lower() == wanted:
                        return message, str(element.get("action_id", ""))
        return None

    def submit_modal(self, note: str) -> SlackDelivery:
        """Type `note` into the newest modal the app opened (the Resolved button's) and submit it."""
        opened = self.stub.state.opened_views()
        if not opened:
            raise LabError("no modal is open", hint="click Resolved first")
        view = self.stub.web_api.opened_view_json(opened[-1].id, opened[-1].view, opened[-1].hash)
        return self._delivered(self.sender.deliver(self.sender.view_submission_request(view, self.user, note)))

    def newest_with_button(self, action_id: str, channel: str | None = None) -> Message | None:
        """The newest visible message in `channel` with button `action_id`."""
        for message in reversed(self.stub.messages(channel or self.channel)):
            if any(
                e.get("action_id") == action_id
                for b in message.blocks
                if b.get("type") == "actions"
                for e in b.get("elements", [])
            ):
                return message
        return None

    def threads(self, channel: str | None = None) -> list[list[Message]]:
        """Every thread in the channel (a top-level message and its replies), oldest first."""
        where = channel or self.channel
        messages = self.stub.messages(where)
        return [self.stub.thread(where, m.ts) for m in messages if m.thread_ts is None]

    def ephemerals(self, channel: str | None = None) -> list[Message]:
        """What the app showed only to the person."""
        return self.stub.state.ephemeral_messages(channel or self.channel, self.user)


def verdict_of(message: Message) -> str | None:
    """The verdict code a message's header shows, if it is a verdict message."""
    for block in message.blocks:
        if block.get("type") == "header":
            words = str(block["text"]["text"]).split()
            return words[-1] if words else None
    return None


def final_verdict(thread: list[Message]) -> str | None:
    """The verdict of the newest verdict message in a thread."""
    codes = [verdict_of(m) for m in thread]
    found = [c for c in codes if c]
    return found[-1] if found else None


def _slack_markup(text: str) -> str:
    for code, char in EMOJI.items():
        text = text.replace(code, char)
    text = re.sub(r"<@([A-Z0-9]+)>", r"@\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _mrkdwn(text: str) -> Text:
    """Slack mrkdwn as Rich text: code blocks yellow, *bold* bold, `code` cyan."""
    out = Text()
    for index, part in enumerate(_slack_markup(text).split("```")):
        if index % 2 == 1:
            out.append(part.strip("\n") + "\n", style="yellow")
            continue
        for token in re.split(r"(\*[^*\n]+\*|`[^`\n]+`)", part):
            if token.startswith("*") and token.endswith("*") and len(token) > 2:
                out.append(token[1:-1], style="bold")
            elif token.startswith("`") and token.endswith("`") and len(token) > 2:
                out.append(token[1:-1], style="cyan")
            else:
                out.append(token)
    return out


def message_view(message: Message, names: Callable[[str], str]) -> RenderableType:
    """One Slack message as Slack would show it: author, blocks, buttons."""
    parts: list[RenderableType] = []
    for block in message.blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(Text(_slack_markup(str(block["text"]["text"])), style="bold"))
        elif kind == "section":
            parts.append(_mrkdwn(str(block.get("text", {}).get("text", ""))))
        elif kind == "context":
            parts.append(Text(" ".join(_slack_markup(str(e.get("text", ""))) for e in block.get("elements", [])), style="dim"))
        elif kind == "divider":
            parts.append(Rule(style="dim"))
        elif kind == "actions":
            labels = [f"[ {e['text']['text']} ]" for e in block.get("elements", []) if "text" in e]
            parts.append(Text("  ".join(labels), style="bold magenta"))
    if not parts:
        parts.append(_mrkdwn(message.text))
    if message.files:
        parts.append(Text(f"📎 {len(message.files)} file(s) attached", style="dim"))
    author = names(message.user)
    title = f"{author}" + (" · only visible to you" if message.ephemeral else "") + (" (edited)" if message.edits else "")
    return Panel(Group(*parts), title=title, title_align="left", border_style="blue" if message.bot_id else "white")


def thread_view(thread: list[Message], names: Callable[[str], str]) -> RenderableType:
    """A thread: the parent, then its replies indented."""
    if not thread:
        return Text("")
    replies = [message_view(m, names) for m in thread[1:]]
    body: list[RenderableType] = [message_view(thread[0], names)]
    if replies:
        body.append(
            Panel(
                Group(*replies),
                title=f"{len(replies)} repl{'y' if len(replies) == 1 else 'ies'}",
                title_align="left",
                border_style="dim",
            )
        )
    return Group(*body)


class TerminalChannel:
    """Reads lines as a person types them in the channel and shows what happens."""

    def __init__(self, prefix: str, slack: LocalSlack, console: Console) -> None:
        """Talk to `slack` about lab `prefix`, printing on `console`."""
        self.prefix = prefix
        self.slack = slack
        self.console = console
        self.current_thread: str | None = None
        self.asked: list[str] = []
        """Root ts of each thread a question started, in order."""
        self.interactive = False
        """True once a person types (a modal then asks them for its text)."""
        self.saved_pictures: set[str] = set()
        """Ids of the path pictures already written to files."""

    def _name(self, user_id: str) -> str:
        user = self.slack.stub.state.user(user_id)
        return ("🤖 " if user and user.is_bot else "") + (user.name if user else user_id)

    def show_thread(self, root: str) -> None:
        """Print the thread under `root`, and save the path picture it carries (saying where)."""
        self.console.print(thread_view(self.slack.stub.thread(self.slack.channel, root), self._name))
        self.save_picture(root)

    def save_picture(self, root: str, wait_s: float = 5.0) -> list[Path]:
        """Write the thread's new path pictures (each posted just after its verdict) to files, saying where."""
        deadline = time.monotonic() + wait_s
        while True:
            thread = self.slack.stub.thread(self.slack.channel, root)
            files = [self.slack.stub.state.file(i) for m in thread for i in m.files]
            pictures = [f for f in files if f is not None and f.name.endswith("-path.png") and f.content]
            verdicts = sum(1 for m in thread if verdict_of(m))
            # A verdict about names (nothing resolved, or several things) has no path and no picture.
            if len(pictures) >= verdicts or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        saved = []
        folder = Path(tempfile.gettempdir()) / f"kubereach-demo-{self.prefix}"
        for picture in pictures:
            if picture.id in self.saved_pictures:
                continue
            self.saved_pictures.add(picture.id)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / picture.name
            path.write_bytes(picture.content or b"")
            self.console.print(Text(f"🖼  path picture saved: {path}", style="cyan"), soft_wrap=True)
            saved.append(path)
        return saved

    def _new_ephemerals(self, before: int) -> None:
        for message in self.slack.ephemerals()[before:]:
            self.console.print(message_view(message, self._name))

    def handle(self, line: str) -> bool:
        """Act on one line; False when the person wants to leave."""
        line = line.strip()
        if not line or line.startswith("#"):
            return True
        if line in ("!quit", "!exit"):
            return False
        seen_ephemeral = len(self.slack.ephemerals())
        roots_before = {m.ts for m in self.slack.stub.messages(self.slack.channel) if m.thread_ts is None}
        if line.startswith("!"):
            self._bang(line)
        elif line.startswith("/reach"):
            self.console.print(Text(f"you: {line}", style="bold"))
            self.slack.command(line.removeprefix("/reach").strip())
        elif line.startswith("@kubereach"):
            self.console.print(Text(f"you: {line}", style="bold"))
            self.slack.mention(line.removeprefix("@kubereach").strip())
        elif line.split(":", 1)[0].strip().lower() in BUTTONS or self.slack.button_labelled(line) is not None:
            known = line.split(":", 1)[0].strip().lower() in BUTTONS
            label, _, note = line.partition(":") if known else (line, "", "")
            self.console.print(Text(f"you click [ {label.strip()} ]", style="bold"))
            modals = len(self.slack.stub.state.opened_views())
            self.slack.click(label.strip())
            if len(self.slack.stub.state.opened_views()) > modals:
                if not note.strip() and self.interactive:
                    note = self.console.input("[bold]What fixed it? [/]")
                self.console.print(Text(f"you submit: {note.strip() or '(no note)'}", style="bold"))
                self.slack.submit_modal(note.strip())
        else:
            self.console.print(
                "Type /reach QUESTION, @kubereach QUESTION, a button label (Re-run, Show evidence, "
                "Resolved[: what fixed it]), !fault NAME [--node N] [--pod NS/NAME] [--service NS/NAME], !heal or !quit."
            )
            return True
        new_roots = [
            m.ts for m in self.slack.stub.messages(self.slack.channel) if m.thread_ts is None and m.ts not in roots_before
        ]
        for root in new_roots:
            if any(m.bot_id for m in self.slack.stub.thread(self.slack.channel, root)):
                self.asked.append(root)
                self.current_thread = root
        if not line.startswith("!") and self.current_thread is not None:
            self.show_thread(self.current_thread)
        self._new_ephemerals(seen_ephemeral)
        return True

    def _bang(self, line: str) -> None:
        words = shlex.split(line[1:])
        if not words:
            return
        if words[0] == "heal":
            healed = faults.heal(self.prefix)
            self.console.print(Text(f"healed: {', '.join(healed) or 'nothing was broken'}", style="green"))
            return
        if words[0] != "fault" or len(words) < 2:
            self.console.print("Use !fault NAME [--node N] [--pod NS/NAME] [--service NS/NAME] [--from N --to N], or !heal.")
            return
        given: dict[str, str] = dict(zip(words[2::2], words[3::2], strict=False))
        numbers = {k: int(given[k]) for k in ("--percent", "--mtu") if given.get(k, "").isdigit()}
        options = faults.FaultOptions(
            given.get("--node"),
            given.get("--pod"),
            given.get("--service"),
            given.get("--from"),
            given.get("--to"),
            numbers.get("--percent"),
            numbers.get("--mtu"),
        )
        record = faults.inject(self.prefix, words[1], options)
        self.console.print(Text(f"broke: {record['description']} (expect {record['verdict']})", style="red"))


def _script_lines(script: Path) -> list[str]:
    return [line for line in script.read_text().splitlines() if line.strip() and not line.lstrip().startswith("#")]


def run_demo(prefix: str, script: Path | None, *, keep: bool, tour: bool = True) -> None:
    """Bring the lab and the app up, run the tour (or `script`), then the terminal channel; tear down at the end."""
    console = Console()
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-demo-"))
    slack: LocalSlack | None = None
    console.print(f"[bold]kubereach demo[/]: bringing up lab {prefix} …")
    try:
        result = lifecycle.up(LabOptions(prefix=prefix))
        status = lifecycle.status(prefix)
        console.print(f"lab {prefix} is up in {result.seconds:.1f} s: {len(status['nodes'])} nodes, {len(status['pods'])} pods")
        slack = LocalSlack.start(Path(status["config"]), f"sqlite:///{workdir / 'history.db'}")
        channel = TerminalChannel(prefix, slack, console)
        lines = _script_lines(script) if script is not None else (_script_lines(TOUR_FILE) if tour else [])
        if script is None and tour:
            console.print(Rule("guided tour: a healthy path, the designed policy deny, an injected fault"))
        for line in lines:
            console.print(Rule(line, style="dim"))
            if not channel.handle(line):
                break
        if script is not None:
            _print_summary(console, slack, channel)
            return
        console.print(Rule("your turn (Ctrl-C or !quit ends the demo and removes the lab)"))
        channel.interactive = True
        while True:
            try:
                line = console.input("[bold]#incidents> [/]")
            except EOFError:
                break
            try:
                if not channel.handle(line):
                    break
            except LabError as exc:
                console.print(f"[red]{exc}[/]")
    except KeyboardInterrupt:
        console.print("")
    finally:
        if slack is not None:
            slack.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if not keep:
            lifecycle.down(prefix)
            console.print(f"lab {prefix} is down")


def _print_summary(console: Console, slack: LocalSlack, channel: TerminalChannel) -> None:
    """The threads the script started, each with its final verdict, as one JSON line per thread at the end."""
    console.print(Rule("threads"))
    for number, root in enumerate(channel.asked, 1):
        thread = slack.stub.thread(slack.channel, root)
        console.print(Text(f"thread {number}", style="bold"))
        console.print(thread_view(thread, channel._name))
    for number, root in enumerate(channel.asked, 1):
        thread = slack.stub.thread(slack.channel, root)
        verdicts = [v for v in (verdict_of(m) for m in thread) if v]
        click.echo("THREAD " + json.dumps({"thread": number, "question": thread[0].text, "verdicts": verdicts}))
