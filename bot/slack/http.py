"""The app's HTTP side: a real server with limits, and a front that verifies before anything parses.

`SlackHttpServer` serves ``POST /slack/events`` with waitress: the whole request (headers and body) is
read by the server's I/O loop before a worker thread sees it, so a stalled upload holds a socket, not a
thread, and is closed after `HttpLimits.idle_timeout_s` without progress; a Content-Length that is not
a number (``-1``) is answered 400 and one over `HttpLimits.max_body_bytes` 413 at once, without reading
the body; the worker threads and open connections are bounded.

`VerifiedFront` is the WSGI application: it checks Slack's signature over the raw body bytes (a
timestamp of digits within five minutes, a ``v0=`` HMAC-SHA256 compared in constant time) before
decoding or parsing anything. An unverified request gets 401 and causes nothing — no parsing, no
listener, no message. Only a verified body, decoded as UTF-8, is handed to bolt; a verified body bolt
cannot take is answered 400 with a log line (through the structured logger, never a traceback to the
client).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import resource
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from slack_bolt import App
from slack_bolt.request import BoltRequest
from waitress.server import create_server

log = logging.getLogger("kubereach.slack.http")

EVENTS_PATH = "/slack/events"
WEB_PATH = "/ui"
MAX_BODY_BYTES = 512 * 1024
"""Slack's payloads are small: a command's text is at most 4,000 characters, and the largest event, a
40,000-character message, carries its text twice (text and blocks) — under 330 KB even at four UTF-8
bytes a character. Anything larger is not from Slack."""
SIGNATURE_WINDOW_S = 300
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")

StartResponse = Callable[..., Any]
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class HttpLimits:
    """What one `kubereach serve` HTTP endpoint allows (see `bot.settings.BotSettings` for the settings)."""

    max_body_bytes: int = MAX_BODY_BYTES
    """Bodies larger than this are refused (413) before they are read."""
    idle_timeout_s: int = 10
    """A connection that sends nothing for this long (a stalled upload, an idle keep-alive) is closed."""
    threads: int = 8
    """Worker threads answering requests (each only verifies, acks and hands work over)."""
    connection_limit: int = 1000
    """Open connections at once; beyond it new ones wait in the listen backlog. A stalled connection
    costs a socket and a small buffer (not a thread), so this is high: below it, slow clients cannot
    crowd Slack out until the idle timeout frees them."""


def signature_problem(secret: bytes, timestamp: str | None, signature: str | None, body: bytes, now: float) -> str | None:
    """Why this request is not signed by Slack (None when it is): checked on the raw bytes, before any parsing."""
    if not timestamp or _TIMESTAMP.fullmatch(timestamp) is None:
        return "missing or non-numeric timestamp"
    if abs(now - int(timestamp)) > SIGNATURE_WINDOW_S:
        return "timestamp outside the five-minute window"
    if not signature or _SIGNATURE.fullmatch(signature) is None:
        return "missing or malformed signature"
    expected = "v0=" + hmac.new(secret, b"v0:" + timestamp.encode("ascii") + b":" + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        return "signature does not match"
    return None


def _answer(start_response: StartResponse, status: str, body: bytes, content_type: str = TEXT) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _headers(environ: Mapping[str, Any]) -> dict[str, str | Sequence[str]]:
    """The request's headers, lower-case names (as bolt reads them)."""
    headers: dict[str, str | Sequence[str]] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = str(value)
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = str(environ[key])
    return headers


class VerifiedFront:
    """WSGI: verify Slack's signature on the raw body first; hand only verified requests to bolt."""

    def __init__(
        self,
        app: App,
        signing_secret: str,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        clock: Callable[[], float] = time.time,
        web: Callable[[dict[str, Any], StartResponse], Iterable[bytes]] | None = None,
    ) -> None:
        """Serve `app` for requests signed with `signing_secret`; `clock` is injectable for tests; `web`
        (the read-only web UI, `bot.web.app.WebUi`) answers ``/ui/…`` when given."""
        if not signing_secret:
            raise ValueError("the HTTP front needs the signing secret")
        self.app = app
        self._secret = signing_secret.encode()
        self.max_body_bytes = max_body_bytes
        self._clock = clock
        self.web = web
        self.rejected = 0
        """Requests answered 401 (unverified) or 4xx (malformed) so far."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        try:
            return self._serve(environ, start_response)
        except Exception:  # the boundary: one log line through the structured logger, no traceback to the client
            log.exception("http: a request failed")
            return _answer(start_response, "500 Internal Server Error", b"kubereach: internal error\n")

    def _refuse(self, start_response: StartResponse, status: str, why: str) -> list[bytes]:
        self.rejected += 1
        log.warning("http: refused a request (%s): %s", status.split(" ", 1)[0], why)
        return _answer(start_response, status, json.dumps({"error": "invalid request"}).encode(), "application/json")

    def _body(self, environ: Mapping[str, Any]) -> bytes | None:
        """The raw body, or None when its length is unusable (non-numeric, negative, or over the limit)."""
        declared = str(environ.get("CONTENT_LENGTH") or "0")
        if not declared.isdigit() or len(declared) > 12:
            return None
        length = int(declared)
        if length > self.max_body_bytes:
            return None
        stream = environ["wsgi.input"]
        body: bytes = stream.read(length) if length else b""
        return body if len(body) == length else None

    def _serve(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        if self.web is not None and (path == WEB_PATH or path.startswith(WEB_PATH + "/")):
            return self.web(environ, start_response)
        if path != EVENTS_PATH:
            return _answer(start_response, "404 Not Found", b"kubereach: Slack requests go to /slack/events\n")
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", b"kubereach: POST only\n")
        body = self._body(environ)
        if body is None:
            return self._refuse(start_response, "413 Request Entity Too Large", "body length unusable or over the limit")
        headers = _headers(environ)
        problem = signature_problem(
            self._secret,
            str(headers.get("x-slack-request-timestamp") or ""),
            str(headers.get("x-slack-signature") or ""),
            body,
            self._clock(),
        )
        if problem is not None:
            return self._refuse(start_response, "401 Unauthorized", problem)
        # Verified: only now is the body decoded and parsed.
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._refuse(start_response, "400 Bad Request", "a signed body that is not UTF-8")
        try:
            request = BoltRequest(body=text, query=str(environ.get("QUERY_STRING") or ""), headers=headers)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            return self._refuse(start_response, "400 Bad Request", f"a signed body bolt cannot read: {type(exc).__name__}")
        response = self.app.dispatch(request)
        out = response.body.encode("utf-8") if isinstance(response.body, str) else bytes(response.body or b"")
        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "Status"
        response_headers = [(name, value) for name, values in response.headers.items() for value in values]
        response_headers = [(n, v) for n, v in response_headers if n.lower() != "content-length"]
        response_headers.append(("Content-Length", str(len(out))))
        start_response(f"{response.status} {reason}", response_headers)
        return [out]


def _room_for(connections: int) -> None:
    """Raise the soft open-files limit so `connections` sockets fit (up to the hard limit)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = connections + 128
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))
    except (ValueError, OSError) as exc:
        log.warning("http: cannot raise the open-files limit for %d connections: %s", connections, exc)


class SlackHttpServer:
    """The app's HTTP endpoint (``POST /slack/events``) on waitress with `HttpLimits`; port 0 = the kernel picks."""

    def __init__(
        self,
        app: App,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signing_secret: str,
        limits: HttpLimits | None = None,
        web: Callable[[dict[str, Any], StartResponse], Iterable[bytes]] | None = None,
    ) -> None:
        """Bind now (so `url` is known); serve with `serve_forever()` or `start()` (background thread)."""
        self.limits = limits or HttpLimits()
        _room_for(self.limits.connection_limit)
        self.front = VerifiedFront(app, signing_secret, max_body_bytes=self.limits.max_body_bytes, web=web)
        self._server: Any = create_server(
            self.front,
            host=host,
            port=port,
            threads=self.limits.threads,
            connection_limit=self.limits.connection_limit,
            channel_timeout=self.limits.idle_timeout_s,
            cleanup_interval=max(1, min(30, self.limits.idle_timeout_s // 2 or 1)),
            max_request_body_size=self.limits.max_body_bytes + 1,
            max_request_header_size=16 * 1024,
            ident="kubereach",
            clear_untrusted_proxy_headers=True,
        )
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._stop_requested = False

    @property
    def port(self) -> int:
        """The port listened on."""
        return int(self._server.effective_port)

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{self._server.effective_host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://HOST:PORT/slack/events``."""
        return f"http://{self._server.effective_host}:{self.port}{EVENTS_PATH}"

    def serve_forever(self) -> None:
        """Serve until `stop()`; Ctrl-C (or SIGTERM, see `bot.slack.serve`) raises KeyboardInterrupt here."""
        try:
            self._server.run()  # waitress ends its loop quietly on KeyboardInterrupt
        finally:
            self._stopped.set()
        if not self._stop_requested:
            raise KeyboardInterrupt

    def start(self) -> str:
        """Serve on a background thread; returns `url`."""
        self._thread = threading.Thread(target=self.serve_forever, name="kubereach-slack-http", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and release the port: the workers finish first, then the loop closes every connection."""
        server = self._server
        self._stop_requested = True
        server.task_dispatcher.shutdown(timeout=5)

        def close_all() -> None:
            for dispatcher in list(server._map.values()):
                dispatcher.close()

        if self._thread is not None and not self._stopped.is_set():
            try:
                server.trigger.pull_trigger(close_all)
            except OSError:  # the loop is already gone
                close_all()
            self._thread.join(timeout=5)
        else:
            close_all()
