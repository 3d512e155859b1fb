"""Slack's request signature (version ``v0``), computed exactly as Slack computes it.

Slack signs each request it sends to an app with HMAC-SHA256 over ``v0:{timestamp}:{raw body}``,
keyed with the app's signing secret, and sends ``v0=<hex digest>`` in ``X-Slack-Signature`` next to
the timestamp in ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_VERSION = "v0"
SIGNATURE_HEADER = "X-Slack-Signature"
TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"


def sign(secret: str, timestamp: int | str, body: str | bytes) -> str:
    """Return the ``X-Slack-Signature`` value (``"v0=" + hex``) for one request body."""
    raw_body = body if isinstance(body, bytes) else body.encode("utf-8")
    base = f"{SIGNATURE_VERSION}:{timestamp}:".encode() + raw_body
    digest = hmac.new(secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"
