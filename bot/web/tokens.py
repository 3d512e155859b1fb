"""Signed, expiring links: what a web UI token grants (`Scope`) and how it is signed (`LinkSigner`).

A token is ``base64url(payload) "." base64url(HMAC-SHA256(key, payload))``; the payload is compact
JSON ``{"v": 1, "ch": channel, "ns": [namespaces] or "*", "exp": unix seconds}``. The key is the
``web_link_secret`` setting, or else derived from the Slack signing secret (HMAC with a fixed label),
so the signing secret itself never signs a link. Verification checks the signature in constant time
before reading the payload, then the expiry; anything malformed is simply not a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

ALL = "*"
MAX_TOKEN_CHARS = 4096
DERIVATION_LABEL = b"kubereach web links v1"


@dataclass(frozen=True)
class Scope:
    """What a valid token lets its holder see: investigations of these namespaces (None: all), and
    those that involved no namespace only when asked in `channel`."""

    channel: str
    namespaces: frozenset[str] | None
    expires_at: int

    def covers(self, namespaces: Iterable[str], channel: str | None) -> bool:
        """Whether an investigation with these namespaces, asked in `channel`, is visible."""
        involved = set(namespaces)
        if not involved:
            return channel == self.channel
        return self.namespaces is None or involved <= self.namespaces


def derived_key(signing_secret: str) -> bytes:
    """A link key derived from the Slack signing secret (the secret itself never signs links)."""
    return hmac.new(signing_secret.encode("utf-8"), DERIVATION_LABEL, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    """Issues and checks tokens with one key; `clock` is injectable for tests."""

    def __init__(self, key: bytes, ttl_s: int, *, clock: Callable[[], float] = time.time) -> None:
        """Sign with `key`; tokens live `ttl_s` seconds."""
        if len(key) < 16:
            raise ValueError("the link key must be at least 16 bytes")
        self._key = key
        self.ttl_s = ttl_s
        self._clock = clock

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()

    def issue(self, channel: str, namespaces: frozenset[str] | None) -> str:
        """A token for `channel`'s scope, valid for `ttl_s` from now."""
        body = {
            "v": 1,
            "ch": channel,
            "ns": ALL if namespaces is None else sorted(namespaces),
            "exp": int(self._clock()) + self.ttl_s,
        }
        payload = json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def verify(self, token: str | None) -> Scope | None:
        """The scope `token` grants, or None when it is missing, malformed, forged or expired."""
        if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
            return None
        head, mac = token.split(".")
        try:
            payload, signature = _unb64(head), _unb64(mac)
        except (binascii.Error, ValueError):
            return None
        if not hmac.compare_digest(signature, self._mac(payload)):
            return None
        try:
            body = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        if not isinstance(body, dict) or body.get("v") != 1:
            return None
        expires, channel, names = body.get("exp"), body.get("ch"), body.get("ns")
        if not isinstance(expires, int) or not isinstance(channel, str) or expires <= self._clock():
            return None
        if names == ALL:
            return Scope(channel, None, expires)
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            return None
        return Scope(channel, frozenset(names), expires)
