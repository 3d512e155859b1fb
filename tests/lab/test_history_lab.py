"""History on the lab: after faults at several hops, `kubereach search` finds each investigation by
name, by verdict and by free text, and a repeated question says it was seen before."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.lab.labkit import Lab, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab


def ask(lab: Lab, question: str, env: dict[str, str]) -> dict[str, Any]:
    proc = kubereach("--config", lab.status["config"], "ask", question, "--json", env=env, timeout=120)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def search(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    proc = kubereach("search", *args, "--json", env=env)
    hits: list[dict[str, Any]] = json.loads(proc.stdout)
    return hits


def test_search_finds_past_investigations_and_repeats_are_seen_before(tmp_path: Path) -> None:
    env = {**os.environ, "KUBEREACH_DATABASE_URL": f"sqlite:///{tmp_path / 'history.db'}"}
    with running_lab(unique_prefix("h"), "--nodes", "3") as lab:
        asked: dict[str, dict[str, Any]] = {}
        for fault, question in [
            (("ip-forward-off", "--node", "node-2"), "why can't frontend reach api"),
            (("selector-mismatch", "--service", "shop/redis"), "can frontend reach redis"),
            (
                ("kube-proxy-rules-missing", "--node", "node-2", "--service", "monitoring/prometheus"),
                "api -> prometheus.monitoring",
            ),
        ]:
            lab.cli("fault", *fault)
            try:
                asked[fault[0]] = ask(lab, question, env)
            finally:
                lab.cli("heal")
        codes = {k: v["verdict"]["code"] for k, v in asked.items()}
        assert codes == {
            "ip-forward-off": "IP_FORWARDING_DISABLED",
            "selector-mismatch": "SERVICE_NO_ENDPOINTS",
            "kube-proxy-rules-missing": "KUBE_PROXY_RULES_MISSING",
        }
        by_name = {h["id"] for h in search(env, "redis")}
        assert asked["selector-mismatch"]["id"] in by_name and asked["ip-forward-off"]["id"] not in by_name
        by_verdict = search(env, "--verdict", "IP_FORWARDING_DISABLED")
        assert [h["id"] for h in by_verdict] == [asked["ip-forward-off"]["id"]]
        by_text = {h["id"] for h in search(env, "ip_forward")}  # a word from the evidence and summary
        assert asked["ip-forward-off"]["id"] in by_text
        by_node = {h["id"] for h in search(env, "--node", "node-2")}
        assert {asked["ip-forward-off"]["id"], asked["kube-proxy-rules-missing"]["id"]} <= by_node

        lab.cli("fault", "selector-mismatch", "--service", "shop/redis")
        try:
            again = ask(lab, "can frontend reach redis", env)
        finally:
            lab.cli("heal")
        assert again["verdict"]["code"] == "SERVICE_NO_ENDPOINTS"
        assert again["seen_before"] and again["seen_before"].startswith("seen 1 time in 30 days")
        assert asked["ip-forward-off"]["seen_before"] is None
