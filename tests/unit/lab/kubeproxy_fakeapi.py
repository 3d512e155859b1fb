"""A stand-in Kubernetes API server for the kube-proxy watcher tests (no tests here).

It speaks the list/watch REST contract the real lab API server implements: lists with
metadata.resourceVersion, `?watch=1&resourceVersion=RV` streams of newline-delimited JSON events in
chunked transfer encoding, 410 Gone for a compacted resourceVersion, bearer-token auth.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PATHS = ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices")


class FakeApi:
    """Objects per collection and an event log; thread-safe."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.cond = threading.Condition()
        self.rv = 1
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {p: {} for p in PATHS}
        self.events: dict[str, list[tuple[int, dict[str, Any]]]] = {p: [] for p in PATHS}
        self.compacted_below = 0
        self.requests: list[str] = []
        self.closing = False

    def put(self, path: str, obj: dict[str, Any], event: bool = True) -> None:
        """Create or replace an object; emit ADDED/MODIFIED unless `event` is False."""
        with self.cond:
            self.rv += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
            kind = "MODIFIED" if key in self.objects[path] else "ADDED"
            self.objects[path][key] = obj
            if event:
                self.events[path].append((self.rv, {"type": kind, "object": obj}))
            self.cond.notify_all()

    def delete(self, path: str, namespace: str, name: str, event: bool = True) -> None:
        """Delete an object; emit DELETED unless `event` is False."""
        with self.cond:
            self.rv += 1
            obj = self.objects[path].pop((namespace, name))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            if event:
                self.events[path].append((self.rv, {"type": "DELETED", "object": obj}))
            self.cond.notify_all()

    def has_news(self, path: str, since: int) -> bool:
        """Whether a watch that has sent everything up to `since` must wake (call with `cond` held)."""
        return self.closing or self.compacted_below > since or any(rv > since for rv, _ in self.events[path])

    def compact(self) -> None:
        """Make every resourceVersion seen so far too old: open watches end, new ones get 410."""
        with self.cond:
            self.rv += 1
            self.compacted_below = self.rv
            self.cond.notify_all()


def _handler(api: FakeApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with api.cond:
                api.requests.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {api.token}":
                self._json(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
                return
            if url.path not in PATHS:
                self._json(404, {"kind": "Status", "code": 404})
                return
            if query.get("watch") != ["1"]:
                with api.cond:
                    items = list(api.objects[url.path].values())
                    rv = api.rv
                self._json(200, {"kind": "List", "metadata": {"resourceVersion": str(rv)}, "items": items})
                return
            since = int(query["resourceVersion"][0])
            with api.cond:
                gone = since < api.compacted_below
            if gone:
                self._json(410, {"kind": "Status", "code": 410, "reason": "Expired"})
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = since
            try:
                while True:
                    with api.cond:
                        api.cond.wait_for(functools.partial(api.has_news, url.path, sent), timeout=1.0)
                        if api.closing or api.compacted_below > sent:
                            break
                        pending = [(rv, ev) for rv, ev in api.events[url.path] if rv > sent]
                    for rv, ev in pending:
                        data = (json.dumps(ev) + "\n").encode()
                        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                        self.wfile.flush()
                        sent = rv
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                return
            self.close_connection = True

    return Handler


@contextmanager
def serve_fake_api(token: str, port: int = 0) -> Iterator[tuple[FakeApi, str]]:
    """Run a FakeApi on 127.0.0.1 (port 0 = kernel's choice); yield (api, base URL)."""
    api = FakeApi(token)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(api))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        with api.cond:
            api.closing = True
            api.cond.notify_all()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
