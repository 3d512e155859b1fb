"""The local Slack stand-in's HTTP server on 127.0.0.1 (port from the kernel).

Routes, as Slack lays them out:

- ``POST|GET /api/<method>``: the Web API (`webapi.WebApi`), form-encoded, JSON or multipart bodies,
  token from ``Authorization: Bearer`` or a ``token`` field;
- ``POST /upload/v1/<file_id>``: the upload URL handed out by ``files.getUploadURLExternal``;
- ``POST /response/<id>``: a ``response_url`` handed to the app with a slash command or block action.

Tests steer it with `rate_limit`, `fail`, `down`/`up`, and read what happened from `state`.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from lab.errors import LabError
from lab.slackstub.socketmode import SocketModeHub
from lab.slackstub.state import (
    ApiCall,
    InjectedFault,
    JsonObject,
    Message,
    ResponseTarget,
    ResponseUrlPost,
    SlackState,
)
from lab.slackstub.webapi import ApiAnswer, UploadedPart, WebApi, slack_error

T = TypeVar("T")
_LINGER_RESET = struct.pack("ii", 1, 0)


class _StubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    stub: SlackStub


def _parse_body(content_type: str, raw: bytes) -> tuple[JsonObject, dict[str, UploadedPart]] | None:
    """Decode a request body into (fields, file parts); None when it cannot be read."""
    media = content_type.split(";", 1)[0].strip().lower()
    if not raw:
        return {}, {}
    if media == "application/json":
        try:
            decoded = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return (decoded, {}) if isinstance(decoded, dict) else None
    if media == "multipart/form-data":
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
        fields: JsonObject = {}
        parts: dict[str, UploadedPart] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if not isinstance(name, str) or not isinstance(payload, bytes):
                continue
            filename = part.get_filename()
            if filename is not None:
                parts[name] = UploadedPart(filename=filename, content=payload)
            else:
                fields[name] = payload.decode("utf-8")
        return fields, parts
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True)), {}


def _charset_warning(content_type: str) -> str | None:
    """Slack's `missing_charset` / `superfluous_charset` warnings for a request's Content-Type."""
    media, _, params = content_type.partition(";")
    has_charset = "charset" in params.lower()
    media = media.strip().lower()
    if media == "application/json" and not has_charset:
        return "missing_charset"
    if media == "application/x-www-form-urlencoded" and has_charset:
        return "superfluous_charset"
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _StubHTTPServer
    protocol_version = "HTTP/1.1"

    def handle(self) -> None:
        if self.server.stub.state.is_down:
            # An outage: drop the connection with a reset, as a dead load balancer does.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.connection.close()
            return
        super().handle()

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output quiet; `state.calls()` is the log."""

    def do_GET(self) -> None:
        self._route()

    def do_POST(self) -> None:
        self._route()

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, status: int, body: JsonObject, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode("utf-8"), "application/json; charset=utf-8", headers)

    def _route(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        raw = self._read_body()
        stub = self.server.stub
        if self.server.stub.state.is_down:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            self.close_connection = True
            self.connection.close()
            return
        head, _, rest = url.path.lstrip("/").partition("/")
        if head == "api" and rest:
            answer = stub.answer_api(
                rest, self.headers.get("Content-Type", ""), raw, url.query, self.headers.get("Authorization")
            )
            self._send_json(answer.status, answer.body, dict(answer.headers))
        elif head == "upload" and rest.startswith("v1/") and self.command == "POST":
            status, text = stub.web_api.receive_upload(rest.removeprefix("v1/"), raw)
            self._send(status, text.encode("utf-8"), "text/plain; charset=utf-8")
        elif head == "lab" and rest:
            from lab.slackstub.control import answer_control

            status, body = answer_control(stub, self.command, rest, url.query, raw, self.headers.get("Authorization"))
            self._send_json(status, body)
        elif head == "response" and rest and self.command == "POST":
            status, body = stub.answer_response_url(rest, self.headers.get("Content-Type", ""), raw)
            self._send_json(status, body)
        else:
            self._send(404, b"Not Found", "text/plain; charset=utf-8")


class SlackStub:
    """A local Slack: serve the Web API from `state`, inject faults, and accept response_url posts.

    Use as a context manager or call `start()`/`stop()`. `start()` returns the Web API base URL
    (``http://127.0.0.1:PORT/api/``), the value for ``WebClient(base_url=...)``.
    """

    def __init__(self, state: SlackState | None = None, *, host: str = "127.0.0.1", app_token: str | None = None) -> None:
        """Prepare a stand-in over `state` (a fresh workspace when None); nothing listens until `start()`.

        `app_token` (``xapp-…``) enables Socket Mode: `apps.connections.open` accepts it and only it.
        """
        self.state = state or SlackState()
        self._host = host
        self._server: _StubHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._web_api: WebApi | None = None
        self.app_token = app_token
        self._socket_mode: SocketModeHub | None = None
        if app_token is not None:
            self.state.add_token(app_token)

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> str:
        """Listen on 127.0.0.1 (kernel-chosen port) and return the Web API base URL."""
        if self._server is not None:
            return self.base_url
        server = _StubHTTPServer((self._host, 0), _Handler)
        server.stub = self
        self._server = server
        self._web_api = WebApi(self.state, self.origin)
        if self.app_token is not None:
            self._socket_mode = SocketModeHub(self.state.app_id, self._host)
            self._socket_mode.start()
            self._web_api.register("apps.connections.open", self._apps_connections_open)
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="slackstub", daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        """Stop listening and release the port; safe to call twice."""
        server, self._server = self._server, None
        hub, self._socket_mode = self._socket_mode, None
        if hub is not None:
            hub.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> SlackStub:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` while running."""
        if self._server is None:
            raise LabError("the Slack stand-in is not running", hint="call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def base_url(self) -> str:
        """The Web API base URL (``{origin}/api/``), as ``WebClient(base_url=...)`` wants it."""
        return f"{self.origin}/api/"

    @property
    def web_api(self) -> WebApi:
        """The method handlers (available while running)."""
        if self._web_api is None:
            raise LabError("the Slack stand-in is not running", hint="call start() first")
        return self._web_api

    @property
    def socket_mode(self) -> SocketModeHub:
        """The Socket Mode endpoint (available while running with an app token)."""
        if self._socket_mode is None:
            raise LabError("the Slack stand-in serves no Socket Mode", hint="start it with an app_token")
        return self._socket_mode

    def _apps_connections_open(self, args: JsonObject, files: dict[str, UploadedPart] | Any) -> ApiAnswer:
        """`apps.connections.open`: a fresh single-use WebSocket URL for the app."""
        return ApiAnswer(200, {"ok": True, "url": self.socket_mode.new_url()})

    # ---- faults ------------------------------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429, ``Retry-After`` and ``ratelimited``."""
        self.state.add_fault(InjectedFault(method=method, error="ratelimited", http_status=429, retry_after=retry_after), times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next `times` calls of `method` with ``{"ok": false, "error": error}``."""
        self.state.add_fault(InjectedFault(method=method, error=error), times)

    def down(self) -> None:
        """Simulate an outage: every connection (API, uploads, response_url) is reset."""
        self.state.set_down(True)

    def up(self) -> None:
        """End the outage."""
        self.state.set_down(False)

    # ---- people and helpers ------------------------------------------------------------------

    def post_user_message(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> str:
        """A person writes `text` in `channel` (or a thread); returns its ts."""
        return self.state.post_user_message(channel, user, text, thread_ts=thread_ts)

    def new_response_url(
        self, kind: str, channel: str, user: str, *, message_ts: str | None = None, thread_ts: str | None = None
    ) -> str:
        """Mint a response_url for a slash command (`kind` ``command``) or a block action (``action``)."""
        target = self.state.add_response_target(kind, channel, user, message_ts=message_ts, thread_ts=thread_ts)
        return f"{self.origin}/response/{target.id}"

    def thread(self, channel: str, ts: str) -> list[Message]:
        """The thread under `ts`, parent first (see `SlackState.thread`)."""
        return self.state.thread(channel, ts)

    def messages(self, channel: str | None = None) -> list[Message]:
        """Visible messages in ts order (see `SlackState.messages`)."""
        return self.state.messages(channel)

    def calls(self, method: str | None = None) -> list[ApiCall]:
        """Recorded Web API calls (see `SlackState.calls`)."""
        return self.state.calls(method)

    def wait_for(self, predicate: Callable[[], T | None], timeout: float = 5.0) -> T:
        """Wait until `predicate()` is truthy (see `SlackState.wait_for`)."""
        return self.state.wait_for(predicate, timeout)

    # ---- request handling (called from the server threads) -----------------------------------

    def answer_api(self, method: str, content_type: str, raw: bytes, query: str, authorization: str | None) -> ApiAnswer:
        """Authenticate, apply injected faults, dispatch, and record one Web API call."""
        parsed = _parse_body(content_type, raw)
        args: JsonObject = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        files: dict[str, UploadedPart] = {}
        if parsed is not None:
            args.update(parsed[0])
            files = parsed[1]
        token = args.pop("token", None)
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        token = str(token) if token else None
        answer = self._dispatch(method, args, files, token, content_type, parsed is None)
        self.state.record_call(
            ApiCall(method=method, args=args, time=time.time(), token=token, http_status=answer.status, response=answer.body)
        )
        return answer

    def _dispatch(
        self,
        method: str,
        args: JsonObject,
        files: dict[str, UploadedPart],
        token: str | None,
        content_type: str,
        unreadable: bool,
    ) -> ApiAnswer:
        if method not in self.web_api.methods:
            return slack_error("unknown_method", req_method=method)
        if token is None:
            return slack_error("not_authed")
        if not self.state.token_is_valid(token):
            return slack_error("invalid_auth")
        if (method == "apps.connections.open") != (token == self.app_token):
            return slack_error("not_allowed_token_type")
        if unreadable:
            return slack_error("invalid_form_data" if "json" not in content_type else "invalid_json")
        fault = self.state.take_fault(method)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return ApiAnswer(fault.http_status, {"ok": False, "error": fault.error}, headers)
        answer = self.web_api.call(method, args, files)
        warning = _charset_warning(content_type)
        if answer.ok and warning is not None:
            answer.body["warning"] = warning
            answer.body.setdefault("response_metadata", {}).setdefault("warnings", []).append(warning)
        return answer

    def answer_response_url(self, target_id: str, content_type: str, raw: bytes) -> tuple[int, JsonObject]:
        """Apply one POST to a response_url as Slack does, record it, and answer (status, body)."""
        target = self.state.response_target(target_id)
        if target is None:
            return 404, {"ok": False, "error": "expired_url"}
        parsed = _parse_body(content_type or "application/json", raw)
        body: JsonObject = parsed[0] if parsed is not None else {}
        if "payload" in body and isinstance(body["payload"], str):
            try:
                body = json.loads(body["payload"])
            except ValueError:
                parsed = None
        if parsed is None or not isinstance(body, dict):
            return self._record_response(target, {}, 400, {"ok": False, "error": "invalid_payload"})
        status, answer, message_ts = self._apply_response(target, body)
        return self._record_response(target, body, status, answer, message_ts)

    def _record_response(
        self, target: ResponseTarget, body: JsonObject, status: int, answer: JsonObject, message_ts: str | None = None
    ) -> tuple[int, JsonObject]:
        self.state.record_response_post(
            ResponseUrlPost(
                target=target,
                body=body,
                response_type=str(body.get("response_type") or "ephemeral"),
                replace_original=_truthy(body.get("replace_original")),
                delete_original=_truthy(body.get("delete_original")),
                posted_at=time.time(),
                http_status=status,
                message_ts=message_ts,
            )
        )
        return status, answer

    def _apply_response(self, target: ResponseTarget, body: JsonObject) -> tuple[int, JsonObject, str | None]:
        state = self.state
        original = state.message(target.channel, target.message_ts) if target.message_ts else None
        if _truthy(body.get("delete_original")):
            if original is None or original.deleted:
                return 404, {"ok": False, "error": "message_not_found"}, None
            state.delete_message(original.channel, original.ts)
            return 200, {"ok": True}, original.ts
        error, text, blocks = self.web_api.message_content(body)
        if error is not None:
            return 400, error.body, None
        if _truthy(body.get("replace_original")) and original is not None and not original.deleted:
            state.update_message(
                original.channel,
                original.ts,
                text=text if text is not None else original.text,
                blocks=blocks if blocks is not None else [],
            )
            return 200, {"ok": True}, original.ts
        in_channel = body.get("response_type") == "in_channel"
        thread_ts = body.get("thread_ts") or target.thread_ts
        message = state.add_message(
            target.channel,
            state.bot.id,
            text or "",
            blocks=blocks or (),
            thread_ts=str(thread_ts) if thread_ts else None,
            bot_id=state.bot.bot_id,
            ephemeral=not in_channel,
            shown_to=None if in_channel else target.user,
            via="response_url",
        )
        return 200, {"ok": True}, message.ts


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1") if value is not None else False
