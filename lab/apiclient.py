"""A small HTTPS client for the lab's own API server (the CLI's faults and status use it).

The bot uses the official `kubernetes` client; the lab's own tooling stays light with urllib. The
server's certificate is verified against the lab's CA (`ca_file`), as kubectl verifies it against the
kubeconfig's certificate-authority-data.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.errors import LabError


@dataclass(frozen=True)
class LabApi:
    """The lab API server's URL, bearer token and the CA that issued its certificate (https)."""

    url: str
    token: str
    ca_file: str | None = None

    @classmethod
    def from_files(cls, url: str, token_file: str, ca_file: str | None = None) -> LabApi:
        """Read the token from the lab's token file."""
        return cls(url, Path(token_file).read_text().strip(), ca_file or None)

    def _context(self) -> ssl.SSLContext | None:
        if self.url.startswith("http://"):
            return None
        if not self.ca_file:
            raise LabError(f"the lab API at {self.url} speaks https but no CA file was given to verify it")
        return ssl.create_default_context(cafile=self.ca_file)

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> dict[str, Any]:
        """Send one request; return the decoded JSON answer or raise LabError with the API's message."""
        if not self.url.startswith(("https://127.0.0.1:", "http://127.0.0.1:")):
            raise LabError(f"refusing to talk to {self.url}: the lab API only listens on 127.0.0.1")
        context = self._context()
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)  # noqa: S310 - 127.0.0.1 checked above
        try:
            with urllib.request.urlopen(req, timeout=10, context=context) as response:  # noqa: S310 - 127.0.0.1 checked above
                answer: dict[str, Any] = json.load(response)
                return answer
        except urllib.error.HTTPError as exc:
            try:
                message = json.load(exc).get("message", exc.reason)
            except ValueError:
                message = exc.reason
            raise LabError(f"lab API {method} {path}: {exc.code} {message}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LabError(
                f"the lab's API server at {self.url} does not answer ({exc})",
                hint="run `kubereach lab down` and `kubereach lab up`",
            ) from exc

    def get(self, path: str) -> dict[str, Any]:
        """GET a path."""
        return self.request("GET", path)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        """PATCH with application/merge-patch+json."""
        return self.request("PATCH", path, patch, "application/merge-patch+json")
