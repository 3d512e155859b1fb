"""`ask --json` prints one error object on stdout when it could not investigate (kinds per cause)."""

from __future__ import annotations

from bot.ask import error_document
from bot.cluster.errors import ClusterAccessDenied, ClusterNoCredentials, ClusterUnavailable
from bot.errors import BadInput


def test_each_cause_has_its_kind_and_keeps_its_exit_code() -> None:
    denied = ClusterAccessDenied(
        "refused",
        hint="grant …",
        server="https://127.0.0.1:6443",
        verb="list",
        resource="replicasets",
        group="apps",
        namespace="shop",
    )
    assert error_document(denied) == {
        "kind": "access_denied",
        "message": "refused",
        "hint": "grant …",
        "exit_code": 1,
        "server": "https://127.0.0.1:6443",
        "rbac": {"verb": "list", "resource": "replicasets", "group": "apps", "namespace": "shop"},
    }
    assert (
        error_document(ClusterNoCredentials("anonymous", hint="no credentials: …", server="https://h"))["kind"]
        == "no_credentials"
    )
    unavailable = error_document(ClusterUnavailable("refused connection", server="https://h"))
    assert (unavailable["kind"], unavailable["exit_code"], unavailable["server"]) == ("cluster_unavailable", 1, "https://h")
    bad = error_document(BadInput("cannot read that", hint="try: a -> b"))
    assert (bad["kind"], bad["exit_code"], "server" in bad) == ("bad_input", 2, False)
