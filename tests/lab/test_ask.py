"""`kubereach ask` on the lab: the verdict, node and hop for every fault of the catalog, injected on
different nodes and services, in every CNI and kube-proxy mode; no false positives on a healthy lab.

The playbook never learns which fault was injected: each case injects through `kubereach lab fault`
and asks a question as an on-call engineer would; the expectation names the code, node and hop.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.labkit import Lab, kubereach, running_lab, unique_prefix

pytestmark = pytest.mark.lab


def ask(lab: Lab, question: str) -> dict[str, Any]:
    """One investigation through the CLI, as JSON."""
    proc = kubereach("--config", lab.status["config"], "ask", question, "--json", "--no-history", timeout=120)
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def pod_on(lab: Lab, app: str, node: str) -> dict[str, Any]:
    lab.refresh()
    return next(p for p in lab.status["pods"] if p["labels"].get("app") == app and p["node"] == node)


def first_pod(lab: Lab, app: str) -> dict[str, Any]:
    lab.refresh()
    return next(p for p in lab.status["pods"] if p["labels"].get("app") == app)


@dataclass(frozen=True)
class Case:
    """A fault, the question asked while it is in place, and the verdict expected."""

    name: str
    fault: Callable[[Lab], tuple[str, ...]]
    question: Callable[[Lab], str]
    code: str
    node: Callable[[Lab], str | None]
    hop: str | None


def fixed(*args: str) -> Callable[[Lab], tuple[str, ...]]:
    return lambda lab: args


def text(q: str) -> Callable[[Lab], str]:
    return lambda lab: q


def node(name: str | None) -> Callable[[Lab], str | None]:
    return lambda lab: name


def pod_question(app: str, node_name: str, target: str) -> Callable[[Lab], str]:
    return lambda lab: f"why can't pod {pod_on(lab, app, node_name)['name']} reach {target}"


def pod_fault(fault: str, app: str, node_name: str, *extra: str) -> Callable[[Lab], tuple[str, ...]]:
    def args(lab: Lab) -> tuple[str, ...]:
        pod = pod_on(lab, app, node_name)
        return (fault, "--pod", f"{pod['namespace']}/{pod['name']}", *extra)

    return args


# Pods of the default spec on 3 nodes: frontend on node-3 and node-1; api on 2, 3, 1; redis-0 on 2;
# ledger on 3 and 1; prometheus on 2; coredns on 1 and 2.
CATALOG = [
    Case(
        "node-route-missing",
        fixed("node-route-missing", "--node", "node-1"),
        text("why can't frontend reach api"),
        "NODE_ROUTE_MISSING",
        node("node-1"),
        "underlay",
    ),
    Case(
        "node-route-wrong",
        fixed("node-route-wrong", "--node", "node-3"),
        text("frontend -> api.shop:8080"),
        "NODE_ROUTE_MISSING",
        node("node-3"),
        "underlay",
    ),
    Case(
        "ip-forward-off",
        fixed("ip-forward-off", "--node", "node-2"),
        text("why cant frontend talk to api in shop"),
        "IP_FORWARDING_DISABLED",
        node("node-2"),
        "destination-node",
    ),
    Case(
        "forward-drop",
        fixed("forward-drop", "--node", "node-3"),
        text("can prometheus reach svc/api:8080?"),
        "FORWARD_CHAIN_DROPS",
        node("node-3"),
        "destination-node",
    ),
    Case(
        "overlay-down",
        fixed("overlay-down", "--node", "node-3"),
        text("why can't frontend reach api"),
        "OVERLAY_DEVICE_DOWN",
        node("node-3"),
        "underlay",
    ),
    Case(
        "overlay-fdb-missing",
        fixed("overlay-fdb-missing", "--node", "node-1"),
        text("why can't frontend reach api"),
        "OVERLAY_DEVICE_DOWN",
        node("node-1"),
        "underlay",
    ),
    Case(
        "overlay-fdb-missing-on-the-way-back",
        fixed("overlay-fdb-missing", "--node", "node-1"),
        text("why can't prometheus reach api:9090"),
        "OVERLAY_DEVICE_DOWN",
        node("node-1"),
        "underlay",
    ),
    Case(
        "node-route-wrong-on-the-way-back",
        fixed("node-route-wrong", "--node", "node-1"),
        text("why can't prometheus reach api:9090"),
        "NODE_ROUTE_MISSING",
        node("node-1"),
        "underlay",
    ),
    Case(
        "conntrack-full",
        fixed("conntrack-full", "--node", "node-1"),
        text("why can't frontend reach redis"),
        "CONNTRACK_TABLE_FULL",
        node("node-1"),
        "source-node",
    ),
    Case(
        "mtu-mismatch-on-the-destination-pod",
        fixed("mtu-mismatch", "--pod", "shop/redis-0"),
        text("frontend can't talk to redis, big replies hang"),
        "MTU_MISMATCH",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "hairpin-off-on-one-of-three-endpoints",
        pod_fault("hairpin-off", "api", "node-2"),
        pod_question("api", "node-2", "svc api"),
        "HAIRPIN_BROKEN",
        node("node-2"),
        "destination-node",
    ),
    Case(
        "pod-no-ip-on-the-only-endpoint",
        fixed("pod-no-ip", "--pod", "shop/redis-0"),
        text("frontend can't reach redis"),
        "POD_HAS_NO_IP",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "veth-down-on-an-endpoint-asked-from-one-node",
        pod_fault("veth-down", "api", "node-1"),
        text("frontend on node-3 cannot reach api"),
        "POD_INTERFACE_DOWN",
        node("node-1"),
        "destination-pod",
    ),
    Case(
        "conntrack-full-on-the-destination-node",
        fixed("conntrack-full", "--node", "node-2"),
        text("why can't ledger reach prometheus:9090"),
        "CONNTRACK_TABLE_FULL",
        node("node-2"),
        "destination-node",
    ),
    Case(
        "rp-filter-strict",
        pod_fault("rp-filter-strict", "frontend", "node-1", "--node", "node-2"),
        pod_question("frontend", "node-1", "svc api"),
        "RP_FILTER_DROPS",
        node("node-2"),
        "destination-node",
    ),
    Case(
        "agent-down",
        fixed("agent-down", "--node", "node-3"),
        text("why can't frontend reach api"),
        "AGENT_UNREACHABLE",
        node("node-3"),
        "source-node",
    ),
    Case(
        "veth-down",
        pod_fault("veth-down", "api", "node-2"),
        pod_question("frontend", "node-1", "svc api"),
        "POD_INTERFACE_DOWN",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "veth-off-bridge",
        fixed("veth-off-bridge", "--pod", "shop/redis-0"),
        text("frontend -> redis"),
        "VETH_NOT_ON_BRIDGE",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "pod-route-missing",
        pod_fault("pod-route-missing", "frontend", "node-1"),
        pod_question("frontend", "node-1", "api"),
        "POD_ROUTE_MISSING",
        node("node-1"),
        "source-pod",
    ),
    Case(
        "mtu-mismatch",
        pod_fault("mtu-mismatch", "frontend", "node-3"),
        pod_question("frontend", "node-3", "svc api"),
        "MTU_MISMATCH",
        node("node-3"),
        "source-pod",
    ),
    Case(
        "not-listening",
        fixed("not-listening", "--pod", "shop/redis-0"),
        text("why can't frontend reach redis"),
        "DESTINATION_NOT_LISTENING",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "pod-crashloop",
        pod_fault("pod-crashloop", "frontend", "node-1"),
        pod_question("frontend", "node-1", "api"),
        "SOURCE_POD_NOT_RUNNING",
        node("node-1"),
        "source-pod",
    ),
    Case(
        "pod-no-ip",
        pod_fault("pod-no-ip", "frontend", "node-3"),
        pod_question("frontend", "node-3", "api"),
        "POD_HAS_NO_IP",
        node("node-3"),
        "source-pod",
    ),
    Case(
        "selector-mismatch",
        fixed("selector-mismatch", "--service", "shop/redis"),
        text("can frontend reach redis?"),
        "SERVICE_NO_ENDPOINTS",
        node(None),
        "api",
    ),
    Case(
        "endpoints-not-ready",
        fixed("endpoints-not-ready", "--service", "shop/api"),
        text("why can't frontend reach api"),
        "SERVICE_ENDPOINTS_NOT_READY",
        node(None),
        "api",
    ),
    Case(
        "target-port-mismatch",
        fixed("target-port-mismatch", "--service", "monitoring/prometheus"),
        text("is prometheus.monitoring reachable from api"),
        "SERVICE_PORT_MISMATCH",
        node(None),
        "api",
    ),
    Case(
        "policy-deny-ingress",
        fixed("policy-deny-ingress", "--service", "shop/redis"),
        text("why can't frontend reach redis"),
        "NETWORK_POLICY_DENIES_INGRESS",
        node("node-2"),
        "policy",
    ),
    Case(
        "policy-deny-egress",
        fixed("policy-deny-egress"),
        pod_question("frontend", "node-1", "api"),
        "NETWORK_POLICY_DENIES_EGRESS",
        node("node-1"),
        "policy",
    ),
    Case("dns-down", fixed("dns-down"), text("why can't frontend reach api"), "DNS_RESOLUTION_FAILED", node(None), "dns"),
    Case(
        "dns-down-asked-as-dns",
        fixed("dns-down"),
        text("DNS lookups from frontend are failing"),
        "DNS_RESOLUTION_FAILED",
        node(None),
        "dns",
    ),
    Case(
        "not-listening-asked-as-an-answer",
        fixed("not-listening", "--pod", "shop/redis-0"),
        text("why does api get connection refused from redis"),
        "DESTINATION_NOT_LISTENING",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "kube-proxy-rules-missing",
        fixed("kube-proxy-rules-missing", "--node", "node-1", "--service", "shop/api"),
        text("why can't frontend reach api"),
        "KUBE_PROXY_RULES_MISSING",
        node("node-1"),
        "service-nat",
    ),
    Case(
        "conntrack-stale",
        pod_fault("conntrack-stale", "frontend", "node-3", "--service", "kube-system/kube-dns"),
        pod_question("frontend", "node-3", "kube-dns.kube-system:53 udp"),
        "CONNTRACK_STALE_ENTRY",
        node("node-3"),
        "service-nat",
    ),
    Case(
        "kube-proxy-stale",
        fixed("kube-proxy-stale", "--node", "node-3", "--service", "shop/api"),
        text("why can't frontend reach api"),
        "KUBE_PROXY_RULES_STALE",
        node("node-3"),
        "service-nat",
    ),
]

# The same causes in other CNI and kube-proxy modes, on other nodes and services.
OTHER_MODES = [
    Case(
        "node-route-missing",
        fixed("node-route-missing", "--node", "node-2"),
        text("why can't prometheus reach frontend"),
        "NODE_ROUTE_MISSING",
        node("node-2"),
        "underlay",
    ),
    Case(
        "ip-forward-off",
        fixed("ip-forward-off", "--node", "node-3"),
        text("why can't prometheus reach api"),
        "IP_FORWARDING_DISABLED",
        node("node-3"),
        "destination-node",
    ),
    Case(
        "kube-proxy-rules-missing",
        fixed("kube-proxy-rules-missing", "--node", "node-2", "--service", "shop/redis"),
        text("why can't prometheus reach redis"),
        "KUBE_PROXY_RULES_MISSING",
        node("node-2"),
        "service-nat",
    ),
    Case(
        "veth-down",
        fixed("veth-down", "--pod", "shop/redis-0"),
        text("why can't frontend reach redis"),
        "POD_INTERFACE_DOWN",
        node("node-2"),
        "destination-pod",
    ),
    Case(
        "conntrack-stale-dns-while-a-new-lookup-works",
        pod_fault("conntrack-stale", "frontend", "node-1", "--service", "kube-system/kube-dns"),
        text("why can't frontend resolve api"),
        "CONNTRACK_STALE_ENTRY",
        node("node-1"),
        "dns",
    ),
    Case(
        "kube-proxy-stale",
        fixed("kube-proxy-stale", "--node", "node-2", "--service", "shop/frontend"),
        text("why can't prometheus reach frontend"),
        "KUBE_PROXY_RULES_STALE",
        node("node-2"),
        "service-nat",
    ),
]
CALICO_ONLY = [
    Case(
        "overlay-fdb-missing-on-the-way-back",
        fixed("overlay-fdb-missing", "--node", "node-1"),
        text("why can't prometheus reach api:9090"),
        "OVERLAY_DEVICE_DOWN",
        node("node-1"),
        "underlay",
    ),
    Case(
        "overlay-down",
        fixed("overlay-down", "--node", "node-1"),
        text("why can't prometheus reach frontend"),
        "OVERLAY_DEVICE_DOWN",
        node("node-1"),
        "underlay",
    ),
]


def _check(lab: Lab, case: Case) -> None:
    lab.cli("fault", *case.fault(lab))
    try:
        result = ask(lab, case.question(lab))
    finally:
        lab.cli("heal")
    verdict = result["verdict"]
    assert (verdict["code"], verdict["node"], verdict["hop"]) == (case.code, case.node(lab), case.hop), json.dumps(
        {
            "verdict": verdict,
            "findings": result["findings"],
            "steps": [(s["status"], s["name"], s["summary"]) for s in result["steps"]],
        },
        indent=1,
    )
    assert verdict["summary"] and (verdict["remediation"] or case.code == "NO_FAULT_FOUND")
    assert any(s["status"] == "fail" for s in result["steps"]), "the verdict comes from a failing step with evidence"


@pytest.fixture(scope="module")
def flannel_lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("q"), "--nodes", "3") as lab:
        yield lab


def test_healthy_lab_every_allowed_pair_is_fine_and_denied_pairs_name_the_policy(flannel_lab: Lab) -> None:
    lab = flannel_lab
    sources = [
        "deploy/frontend",
        "deploy/api",
        "sts/redis",
        "deploy/ledger",
        "deploy/prometheus",
        "deploy/coredns in kube-system",
    ]
    targets = [
        ("svc/api.shop", "shop"),
        ("svc/frontend.shop", "shop"),
        ("svc/redis.shop", "shop"),
        ("svc/ledger.payments", "payments"),
        ("svc/prometheus.monitoring", "monitoring"),
        ("svc/kube-dns.kube-system:53 udp", "kube-system"),
    ]
    wrong = []
    for source in sources:
        for target, _ns in targets:
            if source.startswith("deploy/ledger") and "ledger" in target:
                continue  # a pod reaching its own service hairpins through the node, which the policy admits
            result = ask(lab, f"{source} -> {target}")
            expected = "NETWORK_POLICY_DENIES_INGRESS" if "ledger" in target and "api" not in source else "NO_FAULT_FOUND"
            if result["verdict"]["code"] != expected:
                wrong.append(f"{source} -> {target}: {result['verdict']['code']}: {result['verdict']['summary']}")
    assert wrong == []


@pytest.mark.parametrize("case", CATALOG, ids=[c.name for c in CATALOG])
def test_every_fault_gives_its_verdict_node_and_hop(flannel_lab: Lab, case: Case) -> None:
    _check(flannel_lab, case)


@pytest.mark.parametrize(
    ("cni", "proxy"), [("host-gw", "nftables"), ("calico", "iptables"), ("calico", "nftables"), ("flannel-vxlan", "nftables")]
)
def test_the_same_fault_gives_the_same_verdict_in_every_mode(cni: str, proxy: str) -> None:
    cases = OTHER_MODES + (CALICO_ONLY if cni == "calico" else [])
    with running_lab(unique_prefix("o"), "--nodes", "3", "--cni", cni, "--proxy", proxy) as lab:
        for case in cases:
            _check(lab, case)


def test_with_an_agent_killed_ask_completes_and_says_what_it_could_not_check(flannel_lab: Lab) -> None:
    lab = flannel_lab
    lab.cli("fault", "agent-down", "--node", "node-1")
    try:
        result = ask(lab, "why can't frontend reach api")  # frontend runs on node-1 and node-3
    finally:
        lab.cli("heal")
    verdict = result["verdict"]
    assert verdict["code"] == "AGENT_UNREACHABLE" and verdict["node"] == "node-1"
    assert "could not be checked" in verdict["summary"] and "node-3" in verdict["summary"]
    assert any("not checked" in f["summary"] and "node-1" in f["summary"] for f in result["findings"])
    probed = [s for s in result["steps"] if "probes" in s["name"]]
    assert probed and all(s["status"] == "pass" for s in probed), "the pods on node-3 were still probed"


def test_unknown_names_end_with_suggestions_and_bad_questions_exit_2(flannel_lab: Lab) -> None:
    lab = flannel_lab
    result = ask(lab, "why can't frontnd reach api")
    assert result["verdict"]["code"] == "SOURCE_NOT_FOUND" and "frontend" in result["verdict"]["summary"]
    proc = kubereach("--config", lab.status["config"], "ask", "frontend", "--json", "--no-history", check=False)
    assert proc.returncode == 2 and "frontend → ?" in proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "bad_input" and error["exit_code"] == 2 and "frontend → ?" in f"{error['message']} {error['hint']}"


def test_questions_as_people_phrase_them_bind_each_namespace_to_its_name(flannel_lab: Lab) -> None:
    lab = flannel_lab
    pod = first_pod(lab, "frontend")
    assert pod["namespace"] == "shop"
    cases = [
        # "in payments" is the target's: the pod is found in shop without asking back.
        (
            f"why can't {pod['name']} reach svc ledger in payments",
            "NETWORK_POLICY_DENIES_INGRESS",
            f"pod/{pod['name']} in shop",
            "svc/ledger in payments",
        ),
        (
            f"why can't pod {pod['name']} in shop reach svc kube-dns in kube-system on udp 53",
            "NO_FAULT_FOUND",
            f"pod/{pod['name']} in shop",
            "svc/kube-dns in kube-system",
        ),
        (
            "frontend in shop can't reach ledger in payments",
            "NETWORK_POLICY_DENIES_INGRESS",
            "deploy/frontend in shop",
            "svc/ledger in payments",
        ),
        # The README's own example: no pod is named frontend; its deployment's pods are meant.
        ("why can't pod frontend reach svc api:8080", "NO_FAULT_FOUND", "deploy/frontend in shop", "svc/api in shop"),
        # One name and a word about resolution: that name's lookups, through the cluster DNS.
        ("nslookup fails in frontend", "NO_FAULT_FOUND", "deploy/frontend in shop", "svc/kube-dns in kube-system"),
        ("prometheus can't scrape api on 9090", "NO_FAULT_FOUND", "deploy/prometheus in monitoring", "svc/api in shop"),
    ]
    for question, code, source, target in cases:
        result = ask(lab, question)
        assert (result["verdict"]["code"], result["source"], result["target"]) == (code, source, target), question
        # The JSON contract keeps every step, passing ones included.
        assert set(result["verdict"]) == {"code", "node", "hop", "summary", "remediation"}
        assert any(s["status"] == "pass" for s in result["steps"])
    udp = ask(lab, cases[1][0])
    assert any("UDP" in e["summary"] for s in udp["steps"] for e in s["evidence"] if e["kind"] == "probe")


def test_sources_written_as_a_service_a_namespace_or_a_workload_on_a_node_and_words_around_the_names(
    flannel_lab: Lab,
) -> None:
    lab = flannel_lab
    healthy = [
        # a service as the source: the pods it selects
        ("the api service can't reach redis", "svc/api in shop", "svc/redis in shop"),
        # a workload and a node side by side: its pods on that node
        ("frontend on node-3 cannot reach api", "deploy/frontend in shop on node-3", "svc/api in shop"),
        # a trailing clause and a pasted error around the names
        ("frontend can't talk to redis, giant payloads hang", "deploy/frontend in shop", "svc/redis in shop"),
        ("api returns 502 to frontend", "deploy/frontend in shop", "svc/api in shop"),
        ("frontend can't reach redis after node-2 reboot", "deploy/frontend in shop", "svc/redis in shop"),
    ]
    for question, source, target in healthy:
        result = ask(lab, question)
        assert (result["verdict"]["code"], result["source"], result["target"]) == ("NO_FAULT_FOUND", source, target), question
    on_node = ask(lab, "frontend on node-3 cannot reach api")
    assert {s["name"].split(":")[0] for s in on_node["steps"] if s["name"].startswith("source frontend-")} == {
        f"source {pod_on(lab, 'frontend', 'node-3')['name']}"
    }
    skipped = ask(lab, "frontend can't talk to redis, giant payloads hang")
    assert (
        skipped["read_as"] == "frontend → redis"
        and "read redis as the target: giant, payloads name nothing here" in skipped["notes"]
    )
    # every pod of shop: the policy admits api's pods to ledger and no other, and the verdict names the pods
    whole = ask(lab, "pods in namespace shop can't reach ledger in payments")
    assert (whole["source"], whole["verdict"]["code"]) == ("pods in shop", "NETWORK_POLICY_DENIES_INGRESS")
    assert " source pods cannot reach svc/ledger in payments (" in whole["verdict"]["summary"]
    assert "only pods on" not in whole["verdict"]["summary"]


def test_the_text_answer_leads_with_verdict_why_and_fix_and_lists_only_failing_steps(flannel_lab: Lab) -> None:
    lab = flannel_lab
    proc = kubereach("--config", lab.status["config"], "ask", "frontend in shop can't reach ledger in payments", "--no-history")
    text = proc.stdout
    assert text.index("NETWORK_POLICY_DENIES_INGRESS") < text.index("why:") < text.index("fix:") < text.index("checks passed")
    assert "✘" in text and "✔" not in text, "passing steps are counted, not listed"
    every = kubereach(
        "--config", lab.status["config"], "ask", "frontend in shop can't reach ledger in payments", "--no-history", "--steps"
    ).stdout
    assert "✔" in every and "checks passed" not in every


def test_ask_json_says_on_stdout_that_the_api_refused_a_kubeconfig_without_credentials(flannel_lab: Lab, tmp_path: Path) -> None:
    """The lab's API answers a request without credentials 403 as system:anonymous, as the real one does."""
    lab = flannel_lab
    kubeconfig = json.loads(Path(lab.status["kubeconfig"]).read_text())
    for user in kubeconfig["users"]:
        user["user"] = {}
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    config = yaml.safe_load(Path(lab.status["config"]).read_text())
    config["kubeconfig"] = str(tmp_path / "kubeconfig")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = kubereach("--config", str(tmp_path / "config.yaml"), "ask", "frontend -> api", "--json", "--no-history", check=False)
    assert proc.returncode == 1, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["kind"] == "no_credentials" and error["server"] == lab.status["api"]
    assert "system:anonymous" in error["message"] and error["hint"].startswith("no credentials: the kubeconfig")
    assert "no credentials" in proc.stderr
