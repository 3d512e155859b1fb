"""`kubereach ask --json` on the lab with a node's own firewall in the way: native nftables tables,
an explicit iptables rule behind a jump, iptables-legacy, and the input and output hooks.

Each case injects through `kubereach lab fault` on one node (the source's or the destination's),
asks as an on-call engineer would and checks the code, node and hop, that the summary names where
the rule sits, and that the remediation speaks the rule's own tool. After `lab heal` the node holds
none of the fault's rules. One lab per mode (flannel-vxlan with kube-proxy iptables, calico with
kube-proxy nftables), brought up one after the other; the healthy questions stay NO_FAULT_FOUND
with kube-proxy's own nftables table in place.
Pods of the default spec on 3 nodes: frontend on node-3 and node-1, api on 2, 3, 1, redis-0 on 2,
prometheus on 2, coredns on 1 and 2.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.lab.labkit import Lab, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab


@dataclass(frozen=True)
class Case:
    """A fault on a node, the question asked, and what the verdict must say."""

    name: str
    fault: tuple[str, ...]
    question: Callable[[Lab], str]
    code: str
    node: str
    hop: str
    where: str
    """Words the summary must hold (the table and chain, or the rule)."""
    remedy: str
    """Words one remediation line must hold (the backend's own tool)."""


def said(text: str) -> Callable[[Lab], str]:
    return lambda lab: text


def frontend_on(node: str) -> Callable[[Lab], str]:
    def question(lab: Lab) -> str:
        name = next(p["name"] for p in lab.pods(app="frontend") if p["node"] == node)
        return f"why can't pod {name} reach redis"

    return question


PROMETHEUS_TO_API = said("can prometheus reach svc/api:8080?")

FLANNEL_IPTABLES = [
    Case(
        "nft-forward-drop-destination",
        ("nft-forward-drop", "--node", "node-3"),
        PROMETHEUS_TO_API,
        "FORWARD_CHAIN_DROPS",
        "node-3",
        "destination-node",
        "nftables table inet filter chain forward on node-3",
        "nft delete rule inet filter forward handle",
    ),
    Case(
        "nft-forward-drop-source",
        ("nft-forward-drop", "--node", "node-2"),
        PROMETHEUS_TO_API,
        "FORWARD_CHAIN_DROPS",
        "node-2",
        "source-node",
        "ip saddr 10.244.2.0/24",
        "nft delete rule inet filter forward handle",
    ),
    Case(
        "forward-rule-drop-destination",
        ("forward-rule-drop", "--node", "node-3"),
        PROMETHEUS_TO_API,
        "FORWARD_CHAIN_DROPS",
        "node-3",
        "destination-node",
        "HOST-FIREWALL chain (iptables-nft)",
        "iptables -t filter -D HOST-FIREWALL -d 10.244.3.0/24 -j DROP",
    ),
    Case(
        "legacy-forward-drop-destination",
        ("legacy-forward-drop", "--node", "node-1"),
        PROMETHEUS_TO_API,
        "FORWARD_CHAIN_DROPS",
        "node-1",
        "destination-node",
        "(iptables-legacy)",
        "iptables-legacy -t filter -D HOST-FIREWALL -d 10.244.1.0/24 -j DROP",
    ),
    Case(
        "output-drop-node-source",
        ("output-drop", "--node", "node-1"),
        said("why can't node-1 reach api"),
        "NODE_FIREWALL_DROPS",
        "node-1",
        "source-node",
        "nftables table inet filter chain output on node-1",
        "nft delete rule inet filter output handle",
    ),
    Case(
        "input-drop-overlay",
        ("input-drop", "--node", "node-2"),
        frontend_on("node-3"),
        "NODE_FIREWALL_DROPS",
        "node-2",
        "destination-node",
        "udp dport 8472 drop",
        "nft delete rule inet filter input handle",
    ),
]
CALICO_NFTABLES = [
    Case(
        "nft-forward-drop-destination",
        ("nft-forward-drop", "--node", "node-1"),
        PROMETHEUS_TO_API,
        "FORWARD_CHAIN_DROPS",
        "node-1",
        "destination-node",
        "nftables table inet filter chain forward on node-1",
        "nft delete rule inet filter forward handle",
    ),
    Case(
        "nft-forward-drop-source",
        ("nft-forward-drop", "--node", "node-2"),
        PROMETHEUS_TO_API,
        "FORWARD_CHAIN_DROPS",
        "node-2",
        "source-node",
        "ip saddr 10.244.2.0/24",
        "nft delete rule inet filter forward handle",
    ),
    Case(
        "forward-rule-drop-destination",
        ("forward-rule-drop", "--node", "node-3"),
        said("why can't prometheus reach api"),
        "FORWARD_CHAIN_DROPS",
        "node-3",
        "destination-node",
        "HOST-FIREWALL chain",
        "-D HOST-FIREWALL -d 10.244.3.0/24 -j DROP",
    ),
    Case(
        "output-drop-node-source",
        ("output-drop", "--node", "node-3"),
        said("why can't node-3 reach api"),
        "NODE_FIREWALL_DROPS",
        "node-3",
        "source-node",
        "chain output on node-3",
        "nft delete rule inet filter output handle",
    ),
    Case(
        "input-drop-overlay",
        ("input-drop", "--node", "node-2"),
        frontend_on("node-3"),
        "NODE_FIREWALL_DROPS",
        "node-2",
        "destination-node",
        "udp dport 4789 drop",
        "nft delete rule inet filter input handle",
    ),
]
HEALTHY = [
    "deploy/frontend -> svc/api.shop",
    "deploy/prometheus -> svc/kube-dns.kube-system:53 udp",
    "sts/redis -> svc/frontend.shop",
    "why can't node-1 reach api",
    "why can't external traffic reach nodeport 30080 on node-2",
]


def ask(lab: Lab, question: str) -> dict[str, Any]:
    proc = kubereach("--config", lab.status["config"], "ask", question, "--json", "--no-history", timeout=180)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def leftovers(lab: Lab, node: str) -> list[str]:
    """Firewall objects the faults make that are still on the node."""
    netns = lab.node(node)["netns"]

    def out(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=False).stdout

    found = [line for line in out("nft", "list", "tables").splitlines() if line.strip() == "table inet filter"]
    found += [line for line in out("iptables-save").splitlines() if "HOST-FIREWALL" in line]
    found += [line for line in out("iptables-legacy-save").splitlines() if "HOST-FIREWALL" in line]
    return found


def check(lab: Lab, case: Case) -> str | None:
    """What is wrong with the verdict for `case` (None: as expected)."""
    lab.refresh()
    lab.cli("fault", *case.fault)
    try:
        result = ask(lab, case.question(lab))
    finally:
        lab.cli("heal")
    verdict = result["verdict"]
    steps = [(s["status"], s["name"], s["summary"]) for s in result["steps"]]
    detail = f"{case.name}: " + json.dumps({"verdict": verdict, "steps": steps}, indent=1)
    if (verdict["code"], verdict["node"], verdict["hop"]) != (case.code, case.node, case.hop):
        return detail
    if case.where not in verdict["summary"] or not any(case.remedy in line for line in verdict["remediation"]):
        return detail
    left = leftovers(lab, case.node)
    return f"{case.name}: heal left {left}" if left else None


def wrong_answers(lab: Lab, cases: list[Case]) -> list[str]:
    """Every healthy question that is not NO_FAULT_FOUND and every case with another verdict."""
    wrong = []
    for question in HEALTHY:
        verdict = ask(lab, question)["verdict"]
        if verdict["code"] != "NO_FAULT_FOUND":
            wrong.append(f"{question}: {verdict['code']}: {verdict['summary']}")
    return wrong + [problem for case in cases if (problem := check(lab, case)) is not None]


def test_flannel_iptables_names_each_node_firewall_rule_and_stays_healthy_without_one() -> None:
    with running_lab(unique_prefix("hf"), "--nodes", "3", "--cni", "flannel-vxlan", "--proxy", "iptables") as lab:
        assert wrong_answers(lab, FLANNEL_IPTABLES) == []


def test_calico_nftables_names_each_node_firewall_rule_and_stays_healthy_without_one() -> None:
    with running_lab(unique_prefix("hc"), "--nodes", "3", "--cni", "calico", "--proxy", "nftables") as lab:
        assert wrong_answers(lab, CALICO_NFTABLES) == []
