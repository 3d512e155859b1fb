"""Web UI links: a token grants its channel's namespaces until it expires; a forged, truncated, re-scoped
or expired token grants nothing, and the key derived from the signing secret is not the secret."""

from __future__ import annotations

import base64
import json

from bot.web.tokens import LinkSigner, derived_key

KEY = derived_key("slack-signing-secret-for-tests")


def test_a_token_grants_its_channel_namespaces_until_it_expires() -> None:
    now = [1_000_000.0]
    signer = LinkSigner(KEY, 60, clock=lambda: now[0])
    token = signer.issue("C1", frozenset({"shop"}))
    scope = signer.verify(token)
    assert scope is not None and scope.namespaces == frozenset({"shop"})
    assert scope.covers(["shop"], "C9") and not scope.covers(["shop", "kube-system"], "C1")
    assert scope.covers([], "C1") and not scope.covers([], "C2")
    now[0] += 61
    assert signer.verify(token) is None


def test_forged_rescoped_truncated_and_foreign_tokens_grant_nothing() -> None:
    signer = LinkSigner(KEY, 600)
    token = signer.issue("C1", frozenset({"shop"}))
    head, mac = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    wider = base64.urlsafe_b64encode(json.dumps({**payload, "ns": "*"}).encode()).rstrip(b"=").decode()
    for bad in (
        f"{wider}.{mac}",
        token[:-3],
        head,
        "",
        "a.b.c",
        "x" * 5000,
        LinkSigner(derived_key("other"), 600).issue("C1", None),
    ):
        assert signer.verify(bad) is None, bad[:20]
    assert KEY != b"slack-signing-secret-for-tests" and len(KEY) == 32
