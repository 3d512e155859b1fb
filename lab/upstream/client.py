"""A small HTTPS client for the upstream API server: get, create, patch, delete, list and watch.

It authenticates with a client certificate (the control plane's and the nodes' identities) or a
bearer token, verifies the server against the lab's CA, and talks only to 127.0.0.1. The lab's
kubelet and the `lab up` orchestration use it; the bot uses the official `kubernetes` client.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.certs import CertPair
from lab.errors import LabError

Obj = dict[str, Any]


class ApiStatusError(LabError):
    """The API server answered with an error Status."""

    def __init__(self, method: str, path: str, code: int, reason: str, message: str) -> None:
        super().__init__(f"{method} {path}: {code} {reason}: {message}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class UpstreamApi:
    """Where the API server is and who we are to it."""

    host: str
    port: int
    ca_file: Path
    cert: CertPair | None = None
    token: str | None = None
    timeout_s: float = 15.0

    @classmethod
    def at(cls, url: str, ca_file: Path, *, cert: CertPair | None = None, token: str | None = None) -> UpstreamApi:
        """A client for `https://127.0.0.1:PORT`."""
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "https" or parsed.hostname != "127.0.0.1" or parsed.port is None:
            raise LabError(f"refusing to talk to {url}: the lab's API server is https://127.0.0.1:PORT")
        return cls("127.0.0.1", parsed.port, ca_file, cert, token)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if self.cert is not None:
            context.load_cert_chain(str(self.cert.cert), str(self.cert.key))
        return context

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(self.host, self.port, context=self._context(), timeout=timeout)

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "kubereach-lab"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(self, method: str, path: str, body: Obj | None = None, content_type: str = "application/json") -> Obj:
        """One request; the decoded answer, or ApiStatusError with the server's reason and message."""
        data = json.dumps(body).encode() if body is not None else None
        conn = self._connection(self.timeout_s)
        try:
            conn.request(method, path, body=data, headers=self._headers(content_type if data is not None else None))
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise LabError(f"the API server at https://{self.host}:{self.port} does not answer {method} {path} ({exc})") from exc
        finally:
            conn.close()
        try:
            answer: Obj = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"message": raw.decode(errors="replace")[:200]}
        if response.status >= 400:
            reason, message = str(answer.get("reason", response.reason)), str(answer.get("message", ""))
            raise ApiStatusError(method, path, response.status, reason, message)
        return answer

    def get(self, path: str) -> Obj:
        """GET `path`."""
        return self.request("GET", path)

    def create(self, path: str, body: Obj, *, exist_ok: bool = False) -> Obj | None:
        """POST `body` to the collection at `path`; with `exist_ok`, an AlreadyExists answer is None."""
        try:
            return self.request("POST", path, body)
        except ApiStatusError as exc:
            if exist_ok and exc.code == 409:
                return None
            raise

    def merge_patch(self, path: str, patch: Obj) -> Obj:
        """PATCH with application/merge-patch+json."""
        return self.request("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        """DELETE `path` (with DeleteOptions); a NotFound answer is None."""
        try:
            return self.request("DELETE", path, body)
        except ApiStatusError as exc:
            if exc.code == 404:
                return None
            raise

    def list(self, path: str) -> Obj:
        """A whole list, following `continue` pages."""
        items: list[Obj] = []
        token = ""
        while True:
            sep = "&" if "?" in path else "?"
            page = self.get(f"{path}{sep}limit=500" + (f"&continue={urllib.parse.quote(token)}" if token else ""))
            items += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                page["items"] = items
                return page

    def watch(self, path: str, resource_version: str, timeout_s: int = 300) -> Iterator[Obj]:
        """Watch events (one dict each) from `resource_version`, until the server ends the stream."""
        sep = "&" if "?" in path else "?"
        rv = urllib.parse.quote(resource_version)
        query = f"watch=1&allowWatchBookmarks=true&resourceVersion={rv}&timeoutSeconds={timeout_s}"
        conn = self._connection(timeout_s + 30)
        try:
            conn.request("GET", f"{path}{sep}{query}", headers=self._headers(None))
            response = conn.getresponse()
            if response.status >= 400:
                raw = response.read()
                raise ApiStatusError("WATCH", path, response.status, response.reason, raw.decode(errors="replace")[:200])
            while True:
                line = response.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise LabError(f"the watch on {path} broke ({exc})") from exc
        finally:
            conn.close()
