"""Slack's Socket Mode, stood in: `apps.connections.open` hands out a WebSocket URL, and the app's
Socket Mode client receives envelopes over it and acknowledges each by its envelope id.

    hub = SocketModeHub(app_id="A1")
    hub.start()                                   # ws://127.0.0.1:PORT/link/
    url = hub.new_url()                           # what apps.connections.open answers (one ticket per URL)
    answer = hub.deliver("slash_commands", {...}) # waits for the ack: (ack body, seconds)
    hub.disconnect()                              # {"type": "disconnect", "reason": "refresh_requested"}

Messages on the wire are Slack's: ``hello`` on connect, then ``{"envelope_id", "type", "payload",
"accepts_response_payload", "retry_attempt", "retry_reason"}`` with ``type`` one of ``events_api``,
``slash_commands`` or ``interactive``; the app answers ``{"envelope_id", "payload"?}``. The server is
the `websockets` library's threaded server.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from lab.errors import LabError

JsonObject = dict[str, Any]
ENVELOPE_TYPES = frozenset({"events_api", "slash_commands", "interactive"})


@dataclass(frozen=True)
class Ack:
    """The app's acknowledgement of one envelope: its optional response payload and how long it took."""

    envelope_id: str
    payload: JsonObject | None
    seconds: float


class SocketModeHub:
    """The WebSocket side of Socket Mode for one app: tickets, connections, envelopes and acks."""

    def __init__(self, app_id: str, host: str = "127.0.0.1") -> None:
        """Serve on `host` (kernel-chosen port) once started."""
        self.app_id = app_id
        self._host = host
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._tickets: set[str] = set()
        self._connections: list[ServerConnection] = []
        self._acks: dict[str, JsonObject] = {}
        self.connects = 0
        """WebSocket connections accepted so far (a reconnect adds one)."""

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Listen; returns ``ws://HOST:PORT``."""
        if self._server is None:
            self._server = serve(self._session, self._host, 0, ping_interval=None, compression=None)
            self._thread = threading.Thread(target=self._server.serve_forever, name="slackstub-socket-mode", daemon=True)
            self._thread.start()
        return self.origin

    def stop(self) -> None:
        """Close every connection and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(Exception):
                connection.close()
        server.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def origin(self) -> str:
        """``ws://HOST:PORT`` while running."""
        if self._server is None:
            raise LabError("the Socket Mode endpoint is not running", hint="start() it first")
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    def new_url(self) -> str:
        """A single-use WebSocket URL, as `apps.connections.open` returns it."""
        ticket = secrets.token_hex(16)
        with self._cond:
            self._tickets.add(ticket)
        return f"{self.origin}/link/?ticket={ticket}&app_id={self.app_id}"

    # ---- the app's side ----------------------------------------------------------------------

    def _session(self, connection: ServerConnection) -> None:
        request = connection.request
        ticket = parse_qs(urlsplit(request.path if request is not None else "").query).get("ticket", [""])[0]
        with self._cond:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
        if not valid:
            connection.close(code=1008, reason="invalid ticket")
            return
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "kubereach-lab", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": self.app_id},
        }
        connection.send(json.dumps(hello))
        with self._cond:
            self._connections.append(connection)
            self.connects += 1
            self._cond.notify_all()
        try:
            for raw in connection:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
                    with self._cond:
                        self._acks[message["envelope_id"]] = message
                        self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                if connection in self._connections:
                    self._connections.remove(connection)
                self._cond.notify_all()

    # ---- Slack's side ------------------------------------------------------------------------

    def connected(self) -> int:
        """Open connections now."""
        with self._cond:
            return len(self._connections)

    def wait_connected(self, *, more_than: int = 0, timeout: float = 10.0) -> int:
        """Wait until an app is connected (and `connects` exceeds `more_than`); returns `connects`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._connections and self.connects > more_than):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"no Socket Mode app connected within {timeout:g} s", hint="is the app running?")
                self._cond.wait(left)
            return self.connects

    def deliver(self, kind: str, payload: JsonObject, *, timeout: float = 10.0) -> Ack:
        """Send one envelope of `kind` to the newest connection and wait for its ack."""
        if kind not in ENVELOPE_TYPES:
            raise LabError(f"unknown Socket Mode envelope type {kind!r}", exit_code=2)
        self.wait_connected(timeout=timeout)
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._cond:
            connection = self._connections[-1]
        started = time.perf_counter()
        try:
            connection.send(json.dumps(envelope))
        except ConnectionClosed as exc:
            raise LabError("the Socket Mode connection closed while sending", hint="send again once it reconnects") from exc
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"the app did not acknowledge envelope {envelope_id} within {timeout:g} s")
                self._cond.wait(left)
            ack = self._acks.pop(envelope_id)
        answer = ack.get("payload")
        return Ack(envelope_id, answer if isinstance(answer, dict) else None, time.perf_counter() - started)

    def disconnect(self, reason: str = "refresh_requested") -> int:
        """Ask every connected app to reconnect, as Slack does every few hours; returns how many were asked."""
        with self._cond:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(ConnectionClosed):
                connection.send(json.dumps({"type": "disconnect", "reason": reason, "debug_info": {"host": "kubereach-lab"}}))
        return len(connections)
