"""`kubereach serve` as its own process, spoken to in raw HTTP: forged and odd requests get 4xx and
cause nothing at the Slack stand-in, a 10 MB body is refused before it is read, a stalled upload is
closed, a signed `/reach help` is answered, and every log line is JSON when KUBEREACH_LOG_FORMAT=json."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.slackstub import SlackSender, SlackStub, sign
from tests.polling import eventually

SECRET = "serve-process-signing-secret"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
users: [{name: u, user: {token: not-a-real-token}}]
"""


@dataclass
class Served:
    process: subprocess.Popen[str]
    host: str
    port: int
    stub: SlackStub
    sender: SlackSender


def _wait_for_url(process: subprocess.Popen[str], deadline_s: float = 120) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            assert process.poll() is None, "serve exited before listening"
            continue
        if "listening on " in line:
            return line.split("listening on ", 1)[1].split()[0]
    raise AssertionError("serve did not start listening")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with SlackStub() as stub:
        stub.state.add_channel("incidents", channel_id="C1")
        stub.state.add_user("ana", user_id="U1")
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(KUBECONFIG)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("KUBEREACH_", "SLACK_"))},
            "PYTHONUNBUFFERED": "1",
            "SLACK_BOT_TOKEN": stub.state.bot_token,
            "SLACK_SIGNING_SECRET": SECRET,
            "KUBEREACH_SLACK_API_URL": stub.base_url,
            "KUBEREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'history.db'}",
            "KUBEREACH_KUBECONFIG": str(kubeconfig),
            "KUBEREACH_LOG_FORMAT": "json",
            "KUBEREACH_SLACK_HTTP_TIMEOUT_S": "1",
        }
        command = [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", "0", "--grace", "1"]
        process = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        try:
            url = _wait_for_url(process)
            parts = urllib.parse.urlsplit(url)
            yield Served(process, parts.hostname or "127.0.0.1", parts.port or 0, stub, SlackSender(url, SECRET, stub))
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _exchange(served: Served, head: bytes, body: bytes = b"") -> bytes:
    """Send `head` (+ `body`) on a fresh connection; everything the server answers until it closes."""
    with socket.create_connection((served.host, served.port), timeout=30) as conn:
        conn.sendall(head + body)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def _head(content_type: str, length: int | str, timestamp: str | None = None, signature: str | None = None) -> bytes:
    lines = [
        "POST /slack/events HTTP/1.1",
        "Host: kubereach",
        "Connection: close",
        f"Content-Type: {content_type}",
        f"Content-Length: {length}",
    ]
    if timestamp is not None:
        lines.append(f"X-Slack-Request-Timestamp: {timestamp}")
    if signature is not None:
        lines.append(f"X-Slack-Signature: {signature}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1."), answer[:100]
    return int(answer.split(b" ", 2)[1])


def test_serve_refuses_what_slack_did_not_sign_and_answers_what_it_did(served: Served) -> None:
    now = str(int(time.time()))
    command = urllib.parse.urlencode(
        {"command": "/reach", "text": "why can't frontend reach api", "channel_id": "C1", "user_id": "U1", "trigger_id": "t"}
    ).encode()
    form, js = "application/x-www-form-urlencoded", "application/json"
    odd = {
        "forged": (_head(form, len(command), now, sign("not-the-secret", now, command)), command),
        "non-numeric-timestamp": (_head(form, len(command), "soon", sign(SECRET, now, command)), command),
        "no-timestamp": (_head(form, len(command), None, sign(SECRET, now, command)), command),
        "invalid-json": (_head(js, 9, now, "v0=" + "0" * 64), b'{"event":'),
        "non-utf8": (_head(form, 6, now, "v0=" + "0" * 64), b"\xff\xfe\xc3\x28\xa0\xa1"),
        "deep-nesting": (_head(js, 40_000, now, "v0=" + "0" * 64), b"[" * 20_000 + b"]" * 20_000),
    }
    for name, (head, body) in odd.items():
        answer = _exchange(served, head, body)
        assert _status(answer) == 401, name
        assert b"Traceback" not in answer
    assert _status(_exchange(served, _head(form, -1), b"x")) == 400  # Content-Length -1: refused at once
    # A signed 10 MB command: refused (413) on its headers, before its body is read.
    ten_mb = 10 * 1024 * 1024
    signed_big = sign(SECRET, now, b"text=" + b"x" * (ten_mb - 5))
    assert _status(_exchange(served, _head(form, ten_mb, now, signed_big))) == 413
    # A stalled upload is closed by the server (no answer needed; the connection ends).
    with socket.create_connection((served.host, served.port), timeout=60) as stalled:
        stalled.sendall(_head(js, 5000, now, "v0=" + "0" * 64) + b"{")
        try:
            leftover = stalled.recv(4096)
        except ConnectionResetError:
            leftover = b""
        assert leftover == b"" or leftover.startswith(b"HTTP/1.1 4")
    assert [c.method for c in served.stub.calls() if c.method.startswith(("chat.", "files."))] == []
    # Slack's own request is answered.
    assert served.sender.slash_command("/reach", "help", channel="C1", user="U1").status == 200
    eventually(lambda: served.stub.state.ephemeral_messages("C1", "U1"), deadline_s=60, what="the help answer")
    [answer] = served.stub.state.ephemeral_messages("C1", "U1")
    assert "/reach search" in answer.text
    # Stop it and read its log: one JSON object a line, the refusals among them.
    served.process.send_signal(signal.SIGTERM)
    _, stderr = served.process.communicate(timeout=60)
    records = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    refused = [r for r in records if r["logger"] == "kubereach.slack.http" and "refused" in r["message"]]
    assert len(refused) >= len(odd)
    # Start-up's objects were frozen out of the collector's walks before the first request.
    [settled] = [r["message"] for r in records if "heap settled" in r["message"]]
    assert int(settled.split("settled: ", 1)[1].split()[0]) > 10_000
    assert SECRET not in stderr
