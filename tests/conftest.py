"""Shared test policy.

Markers: ``lab`` (root and real network namespaces) and ``postgres`` (the server at 127.0.0.1:5432).
Locally a missing prerequisite skips; under ``CI=true`` a skip of such a test is a failure, because
CI runs as root next to PostgreSQL and a skipped lab test proves nothing.

``kubernetes`` marks tests that need official Kubernetes release binaries in the directory named by
``KUBEREACH_LAB_KUBERNETES`` (the lab on real binaries, `kubereach lab up --kubernetes DIR`). Nobody's
machine is required to have them: without the variable they skip, also under ``CI=true``, and they
are not part of CI's required set.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("KUBEREACH_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
LAB_TOOLS = {"ip": "iproute2", "iptables": "iptables", "nft": "nftables", "conntrack": "conntrack"}
KUBERNETES_DIR_VAR = "KUBEREACH_LAB_KUBERNETES"


def _lab_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (run the test command as root)"
    for tool, package in LAB_TOOLS.items():
        if shutil.which(tool) is None:
            return f"needs `{tool}` (Debian package {package})"
    return None


def _postgres_missing() -> str | None:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1.0):
            return None
    except OSError as exc:
        return f"needs PostgreSQL at 127.0.0.1:5432 ({exc})"


def _kubernetes_missing() -> str | None:
    if not os.environ.get(KUBERNETES_DIR_VAR):
        return f"needs official Kubernetes release binaries: set {KUBERNETES_DIR_VAR}=DIR (optional, not required by CI)"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kubernetes") is not None:
        reason = _kubernetes_missing() or (_lab_missing() if item.get_closest_marker("lab") is not None else None)
        if reason is not None:
            pytest.skip(reason)  # optional: never a CI failure
        return
    reasons = []
    if item.get_closest_marker("lab") is not None:
        reasons.append(_lab_missing())
    if item.get_closest_marker("postgres") is not None:
        reasons.append(_postgres_missing())
    for reason in reasons:
        if reason is None:
            continue
        if CI:
            pytest.fail(f"{reason}; under CI=true this test must run, a skip is a failure", pytrace=False)
        pytest.skip(reason)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    optional = item.get_closest_marker("kubernetes") is not None
    needs_env = not optional and (item.get_closest_marker("lab") or item.get_closest_marker("postgres"))
    if CI and needs_env and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which is a failure for lab/postgres tests: {report.longrepr}"
