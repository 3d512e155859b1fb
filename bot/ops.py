"""The bot's operations endpoints on their own port: `/metrics`, `/healthz`, `/readyz`.

`/healthz` says the process serves; `/readyz` says it can do its work (the readiness check is
injected: the history database answers). Kept apart from the Slack port so that probes and scrapes
never need Slack's signature and Slack requests never reach the metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bot.metrics import BotMetrics


class OpsServer:
    """A small threaded HTTP server for probes and scrapes."""

    def __init__(self, metrics: BotMetrics, ready: Callable[[], bool], host: str = "0.0.0.0", port: int = 0) -> None:
        ops = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    body, content_type = metrics.exposition()
                    self._answer(200, body, content_type)
                elif self.path == "/healthz":
                    self._answer(200, b"ok\n", "text/plain")
                elif self.path == "/readyz":
                    ok = ops._ready()
                    self._answer(
                        200 if ok else 503,
                        b"ready\n" if ok else b"not ready: the history database does not answer\n",
                        "text/plain",
                    )
                else:
                    self._answer(404, b"not found: /metrics, /healthz, /readyz\n", "text/plain")

            def _answer(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._check = ready
        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ops", daemon=True)

    def _ready(self) -> bool:
        try:
            return bool(self._check())
        except Exception:  # noqa: BLE001 - any failure of the readiness check means "not ready", never a 500
            return False

    def start(self) -> OpsServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()
