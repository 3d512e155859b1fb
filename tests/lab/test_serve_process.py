"""`kubereach serve` as a process on the lab, used the way people use it: through Slack.

One lab and one `serve` (HTTP mode, history on PostgreSQL) for the module. The tests talk to it only
with signed requests sent by `kubereach lab slack send|click` (subprocesses, as a script would) and
read what it posted from the lab's Slack stand-in process. The digest test adds a second replica on
the same database and checks that the minute's digest is posted once; the last test stops the
server with SIGTERM in the middle of an investigation.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from sqlalchemy import create_engine, select

from bot.history.models import Investigation
from bot.playbook.models import VerdictCode
from lab.slackstub.control import RemoteWorkspace
from tests.db.conftest import _postgres_database
from tests.lab.labkit import KUBEREACH, REPO, Lab, running_lab, unique_prefix
from tests.polling import eventually

pytestmark = [pytest.mark.lab, pytest.mark.postgres]
T = TypeVar("T")
ANSWER_S = 120.0
SLACK_TS = re.compile(r"^\d{10}\.\d{6}$")
CODES = sorted((c.value for c in VerdictCode), key=len, reverse=True)


class Serve:
    """One `kubereach --config CFG serve` process; its log is a file, its URL read from its first lines."""

    def __init__(self, config: str, database_url: str, log: Path, *extra: str) -> None:
        env = {**os.environ, "KUBEREACH_DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        self.log = log
        self._out = log.open("w")
        self.proc = subprocess.Popen(
            [*KUBEREACH, "--config", config, "serve", "--host", "127.0.0.1", "--port", "0", "--grace", "1", *extra],
            stdout=self._out, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )  # fmt: skip
        self.url = ""
        if "--socket-mode" not in extra:
            found = eventually(
                lambda: re.search(r"listening on (http://\S+/slack/events)", self.text()), deadline_s=60, what="serve listening"
            )
            self.url = found.group(1)

    def text(self) -> str:
        if self.proc.poll() is not None and not self.log.read_text():
            raise AssertionError(f"serve exited with {self.proc.returncode}")
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("sv")) as lab:
        yield lab


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    yield from _postgres_database(__name__)


@pytest.fixture(scope="module")
def serve(lab: Lab, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    process = Serve(lab.status["config"], database_url, tmp_path_factory.mktemp("serve") / "serve.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def slack(lab: Lab) -> RemoteWorkspace:
    config = Path(lab.status["config"]).read_text()
    token = re.search(r"^slack_bot_token: (\S+)$", config, re.M)
    assert token is not None
    return RemoteWorkspace(lab.status["slack"]["control"], token.group(1))


def lab_slack(lab: Lab, *args: str) -> Any:
    """`kubereach --config CFG lab --prefix P slack ARGS…`, its stdout as JSON."""
    proc = subprocess.run(
        [*KUBEREACH, "--config", lab.status["config"], "lab", "--prefix", lab.prefix, "slack", *args],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return json.loads(proc.stdout)


def send(lab: Lab, serve: Serve, text: str, *options: str) -> dict[str, Any]:
    answer: dict[str, Any] = lab_slack(lab, "send", "--to", serve.url, *options, text)
    assert answer["status"] == 200, answer
    return answer


def verdict_of(message: dict[str, Any]) -> str | None:
    """The verdict a message states, when it carries the verdict buttons."""
    if not _button_value(message, "kubereach_rerun"):
        return None
    return next((code for code in CODES if code in message["text"]), None)


def _button_value(message: dict[str, Any], action_id: str) -> str | None:
    for block in message.get("blocks") or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return str(element.get("value"))
    return None


def _evidence_files(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of a message other than the path picture (posted with every verdict)."""
    return [f for f in message.get("files") or [] if not str(f.get("name", "")).endswith("-path.png")]


def thread_of(slack: RemoteWorkspace, channel: str, ts: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(channel, ts) if not m.get("ephemeral")]


def newest_root(slack: RemoteWorkspace, channel: str, after: set[str], contains: str) -> str | None:
    roots = [m for m in slack.messages(channel) if not m.get("thread_ts") or m["thread_ts"] == m["ts"]]
    return next((m["ts"] for m in roots if m["ts"] not in after and contains in m["text"]), None)


def roots(slack: RemoteWorkspace, channel: str) -> set[str]:
    return {m["ts"] for m in slack.messages(channel)}


def ask(lab: Lab, serve: Serve, slack: RemoteWorkspace, question: str) -> tuple[str, dict[str, Any]]:
    """A slash command in the incident channel; returns its thread's ts and the verdict message."""
    channel = lab.status["slack"]["channel"]
    before = roots(slack, channel)
    answer = send(lab, serve, f"/reach {question}")
    assert answer["body"] == ""
    root = eventually(lambda: newest_root(slack, channel, before, question), deadline_s=ANSWER_S, what="the question's thread")
    verdict = eventually(
        lambda: next((m for m in thread_of(slack, channel, root) if verdict_of(m)), None),
        deadline_s=ANSWER_S,
        what="a verdict in the thread",
    )
    return root, verdict


@pytest.fixture(scope="module")
def policy_answer(lab: Lab, serve: Serve, slack: RemoteWorkspace) -> tuple[str, dict[str, Any]]:
    return ask(lab, serve, slack, "why can't frontend reach ledger")


def test_lab_status_and_config_describe_the_slack_stand_in(lab: Lab) -> None:
    slack = lab.status["slack"]
    assert slack["api"].startswith("http://127.0.0.1:") and slack["api"].endswith("/api/")
    assert slack["channel"] and slack["running"] is True
    config = Path(lab.status["config"]).read_text()
    for key in ("slack_bot_token:", "slack_signing_secret:", "slack_api_url:", "channel_namespaces:"):
        assert key in config
    assert oct(Path(lab.status["config"]).stat().st_mode & 0o777) == "0o600", "the config holds secrets"


def test_a_slash_command_in_the_incident_channel_is_answered_in_its_thread(
    lab: Lab, slack: RemoteWorkspace, policy_answer: tuple[str, dict[str, Any]]
) -> None:
    root, verdict = policy_answer
    assert verdict_of(verdict) == "NETWORK_POLICY_DENIES_INGRESS"
    assert verdict["thread_ts"] == root
    listed = lab_slack(lab, "messages", "--channel", lab.status["slack"]["channel"], "--thread", root, "--json")
    assert listed[0]["ts"] == root and "why can't frontend reach ledger" in listed[0]["text"]
    for message in listed:
        assert set(message) >= {"ts", "thread_ts", "user", "text", "blocks"}
        assert SLACK_TS.match(message["ts"])
    assert all(m["thread_ts"] == root for m in listed[1:])


def api_lists(lab: Lab, tmp: Path) -> int:
    """LIST requests the lab's API server has served so far: its ``apiserver_request_total`` at /metrics."""
    kubeconfig = yaml.safe_load(Path(lab.status["kubeconfig"]).read_text())
    cluster, user = kubeconfig["clusters"][0]["cluster"], kubeconfig["users"][0]["user"]
    context = None
    if "certificate-authority-data" in cluster:
        ca = tmp / "ca.pem"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        context = ssl.create_default_context(cafile=str(ca))
    request = urllib.request.Request(f"{cluster['server']}/metrics", headers={"Authorization": f"Bearer {user['token']}"})
    with urllib.request.urlopen(request, context=context, timeout=10) as answer:
        text = answer.read().decode()
    counters = [line for line in text.splitlines() if line.startswith("apiserver_request_total{") and 'verb="LIST"' in line]
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in counters)


def test_serve_answers_a_second_question_from_its_watch_caches_without_listing(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, tmp_path: Path
) -> None:
    _root, first = ask(lab, serve, slack, "why can't frontend reach api")
    assert verdict_of(first) == "NO_FAULT_FOUND"
    before = api_lists(lab, tmp_path)
    _root, second = ask(lab, serve, slack, "why can't frontend reach ledger")
    assert verdict_of(second) == "NETWORK_POLICY_DENIES_INGRESS"
    assert api_lists(lab, tmp_path) == before, "the second question listed objects instead of reading the caches"


def test_a_mention_in_a_thread_is_answered_in_that_thread(lab: Lab, serve: Serve, slack: RemoteWorkspace) -> None:
    channel, user = lab.status["slack"]["channel"], lab.status["slack"]["user"]
    root = slack.post_user_message(channel, user, "checkout is timing out for some users")
    answer = send(lab, serve, "why can't frontend reach api", "--thread", root)
    assert SLACK_TS.match(answer["ts"])
    verdict = eventually(
        lambda: next((m for m in thread_of(slack, channel, root) if verdict_of(m)), None),
        deadline_s=ANSWER_S,
        what="a verdict in the thread",
    )
    assert verdict_of(verdict) == "NO_FAULT_FOUND"


def test_show_evidence_rerun_and_resolved_buttons(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, policy_answer: tuple[str, dict[str, Any]]
) -> None:
    channel = lab.status["slack"]["channel"]
    root, verdict = policy_answer
    count = len(thread_of(slack, channel, root))
    lab_slack(lab, "click", "--to", serve.url, "--ts", verdict["ts"], "Show evidence")
    eventually(
        lambda: any(_evidence_files(m) or "Evidence of" in m["text"] for m in thread_of(slack, channel, root)[count:]),
        deadline_s=ANSWER_S,
        what="the evidence in the thread",
    )
    lab_slack(lab, "click", "--to", serve.url, "--ts", verdict["ts"], "Re-run")
    rerun = eventually(
        lambda: [m for m in thread_of(slack, channel, root) if verdict_of(m) and m["ts"] != verdict["ts"]],
        deadline_s=ANSWER_S,
        what="a second verdict in the same thread",
    )
    assert verdict_of(rerun[-1]) == "NETWORK_POLICY_DENIES_INGRESS"
    opened = len(slack.views()["opened"])
    lab_slack(lab, "click", "--to", serve.url, "--ts", verdict["ts"], "Resolved")
    modal = eventually(lambda: slack.views()["opened"][opened:], deadline_s=ANSWER_S, what="the Resolved modal")[-1]["view"]
    assert modal["callback_id"] == "kubereach_resolve"
    submitted = lab_slack(lab, "submit", "--to", serve.url, "allowed shop/frontend in ledger-ingress <b>")
    assert submitted["status"] == 200
    note = eventually(
        lambda: [m for m in thread_of(slack, channel, root) if "Resolved by" in m["text"]],
        deadline_s=ANSWER_S,
        what="the resolution in the thread",
    )
    assert "allowed shop/frontend in ledger-ingress" in json.dumps(note[-1]["blocks"])


def test_the_home_tab_lists_recent_investigations_and_digest_subscriptions(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, policy_answer: tuple[str, dict[str, Any]]
) -> None:
    user = lab.status["slack"]["user"]
    investigation = _button_value(policy_answer[1], "kubereach_rerun")
    published = len(slack.views()["home"])
    assert lab_slack(lab, "home", "--to", serve.url)["status"] == 200
    home = eventually(lambda: slack.views()["home"][published:], deadline_s=ANSWER_S, what="the Home tab published")[-1]
    assert home["user_id"] == user
    shown = json.dumps(home["view"]["blocks"])
    assert investigation is not None and investigation in shown
    assert "Digest subscriptions" in shown


def test_a_user_group_widens_what_a_person_may_ask_in_a_restricted_channel(
    lab: Lab, serve: Serve, slack: RemoteWorkspace
) -> None:
    team_channel, member, developer = (lab.status["slack"][k] for k in ("shop_channel", "user", "developer"))
    question = "why can't frontend reach ledger"
    before = roots(slack, team_channel)
    send(lab, serve, f"/reach {question}", "--channel", team_channel, "--user", developer)
    refusal = eventually(
        lambda: [m for m in slack.messages(team_channel) if m.get("ephemeral") and m["user"] == developer],
        deadline_s=ANSWER_S,
        what="the refusal shown to the developer",
    )
    assert "`shop`" in refusal[-1]["text"] and "payments" in refusal[-1]["text"]
    assert roots(slack, team_channel) - {m["ts"] for m in slack.messages(team_channel) if m.get("ephemeral")} == before
    send(lab, serve, f"/reach {question}", "--channel", team_channel, "--user", member)
    root = eventually(lambda: newest_root(slack, team_channel, before, question), deadline_s=ANSWER_S, what="the member's thread")
    verdict = eventually(
        lambda: next((m for m in thread_of(slack, team_channel, root) if verdict_of(m)), None),
        deadline_s=ANSWER_S,
        what="the verdict",
    )
    assert verdict_of(verdict) == "NETWORK_POLICY_DENIES_INGRESS"


def test_search_finds_the_investigation_just_made(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, policy_answer: tuple[str, dict[str, Any]]
) -> None:
    channel, user = lab.status["slack"]["channel"], lab.status["slack"]["user"]
    investigation = _button_value(policy_answer[1], "kubereach_rerun")
    assert investigation and investigation.startswith("inv_")
    send(lab, serve, "/reach search ledger")
    found = eventually(
        lambda: [m for m in slack.messages(channel) if m.get("ephemeral") and investigation in m["text"]],
        deadline_s=ANSWER_S,
        what="the search answer",
    )
    assert found[-1]["user"] == user and "NETWORK_POLICY_DENIES_INGRESS" in found[-1]["text"]


def _ran_slot(replica: Serve, marker: str) -> bool:
    """The replica's scheduler ran its job for that cron minute to the end (it posted, or found it taken)."""
    lines = replica.text().splitlines()
    return any(marker in line and "executed successfully" in line for line in lines)


def test_a_digest_subscribed_for_the_next_minute_is_posted_once_by_two_replicas_at_that_minute(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, database_url: str, tmp_path: Path
) -> None:
    channel = lab.status["slack"]["channel"]
    now = datetime.now(UTC)
    # The next minute, unless it is too close for a second replica to start before it.
    slot = (now + timedelta(minutes=1 if now.second < 40 else 2)).replace(second=0, microsecond=0)
    send(lab, serve, f"/reach digest daily {slot:%H:%M} UTC")
    eventually(
        lambda: any(f"{slot:%H:%M} UTC" in m["text"] for m in slack.messages(channel)),
        deadline_s=30,
        what="the subscription confirmed",
    )
    second = Serve(lab.status["config"], database_url, tmp_path / "replica.log")
    try:
        assert "1 digest subscription(s) scheduled" in second.text()
        assert datetime.now(UTC) < slot, "the second replica started before the slot"
        digests = eventually(
            lambda: [m for m in slack.messages(channel) if m["text"].startswith("Network health")],
            deadline_s=100,
            what="the digest posted",
        )
        posted_at = float(digests[0]["ts"])
        assert slot.timestamp() <= posted_at < slot.timestamp() + 60, "posted at the subscribed minute"
        assert not digests[0].get("thread_ts")
        marker = f"hour='{slot.hour}', minute='{slot.minute}'"
        for replica in (serve, second):
            eventually(lambda r=replica: _ran_slot(r, marker), deadline_s=60, what="both replicas running the slot")
        assert len([m for m in slack.messages(channel) if m["text"].startswith("Network health")]) == 1
    finally:
        send(lab, serve, "/reach digest off")
        second.stop()


def test_socket_mode_with_the_real_client_commands_events_interactions_and_a_reconnect(
    lab: Lab, slack: RemoteWorkspace, database_url: str, tmp_path: Path
) -> None:
    channel = lab.status["slack"]["channel"]
    socket_serve = Serve(lab.status["config"], database_url, tmp_path / "socket.log", "--socket-mode")
    try:
        eventually(lambda: slack.socket_status()["connected"] >= 1, deadline_s=60, what="the app's Socket Mode connection")
        before = roots(slack, channel)
        question = "why can't api reach ledger"
        command = lab_slack(lab, "send", "--socket-mode", f"/reach {question}")
        assert command["status"] == 200 and command["ack_ms"] >= 0
        root = eventually(lambda: newest_root(slack, channel, before, question), deadline_s=ANSWER_S, what="the command's thread")
        verdict = eventually(
            lambda: next((m for m in thread_of(slack, channel, root) if verdict_of(m)), None),
            deadline_s=ANSWER_S,
            what="the verdict",
        )
        assert verdict_of(verdict) == "NO_FAULT_FOUND"

        mention = lab_slack(lab, "send", "--socket-mode", "--thread", root, "why can't frontend reach ledger")
        assert mention["status"] == 200
        eventually(
            lambda: any(verdict_of(m) == "NETWORK_POLICY_DENIES_INGRESS" for m in thread_of(slack, channel, root)),
            deadline_s=ANSWER_S,
            what="the mention's verdict in the thread",
        )

        connects = slack.socket_status()["connects"]
        assert slack.socket_disconnect()["asked"] >= 1
        eventually(
            lambda: (s := slack.socket_status())["connects"] > connects and s["connected"] >= 1,
            deadline_s=60,
            what="the app reconnecting",
        )
        count = len(thread_of(slack, channel, root))
        click = lab_slack(lab, "click", "--socket-mode", "--ts", verdict["ts"], "Show evidence")
        assert click["status"] == 200
        eventually(
            lambda: any(_evidence_files(m) or "Evidence of" in m["text"] for m in thread_of(slack, channel, root)[count:]),
            deadline_s=ANSWER_S,
            what="the evidence after the reconnect",
        )
    finally:
        socket_serve.stop()
    assert "Socket Mode" in socket_serve.log.read_text()


def _agent_pids(lab: Lab) -> list[int]:
    state = json.loads((Path("/run/kubereach") / lab.prefix / "state.json").read_text())
    return [pid for name, pid in state["processes"].items() if name.startswith("agent/")]


def test_sigterm_mid_investigation_says_so_in_the_slash_command_thread(
    lab: Lab, serve: Serve, slack: RemoteWorkspace, database_url: str
) -> None:
    channel = lab.status["slack"]["channel"]
    question = "why can't frontend reach redis"
    agents = _agent_pids(lab)
    before = roots(slack, channel)
    for pid in agents:  # the agents hang: the investigation is slow, as with a node under load
        os.kill(pid, signal.SIGSTOP)
    try:
        send(lab, serve, f"/reach {question}")
        root = eventually(
            lambda: newest_root(slack, channel, before, question), deadline_s=ANSWER_S, what="the question's thread"
        )
        eventually(lambda: len(thread_of(slack, channel, root)) >= 2, deadline_s=ANSWER_S, what="the progress message")
        assert not any(verdict_of(m) for m in thread_of(slack, channel, root))
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.proc.wait(timeout=60) == 0
    finally:
        for pid in agents:
            os.kill(pid, signal.SIGCONT)
    said = thread_of(slack, channel, root)
    assert any("stopped before" in m["text"] for m in said), [m["text"] for m in said]
    assert "marked interrupted" in serve.text()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(Investigation.status).where(Investigation.channel == channel, Investigation.thread_ts == root)
            ).all()
    finally:
        engine.dispose()
    assert [str(r.status) for r in rows] == ["interrupted"], "the history knew the thread and kept the status"
