"""Every fault of the catalog, shown with plain probes from inside the lab's namespaces: the path
works, the fault breaks it the way it breaks in real clusters, and `lab heal` restores it."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lab.apiclient import LabApi
from lab.state import load_state
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

Probe = Callable[[Lab], bool]
"""Returns True while the path under test works."""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("f"), "--nodes", "3", "--cni", "flannel-vxlan", "--proxy", "iptables") as running:
        yield running


@pytest.fixture(scope="module")
def calico_lab() -> Iterator[Lab]:
    with running_lab(unique_prefix("g"), "--nodes", "2", "--cni", "calico", "--proxy", "nftables") as running:
        yield running


def app_pod(lab: Lab, node: str, app: str | None = None) -> dict[str, Any]:
    """A pod of the shop/monitoring apps on `node` (not DNS, not the policy-protected ledger)."""
    for p in lab.status["pods"]:
        labels = p["labels"]
        if p["node"] == node and labels.get("app") in ({app} if app else {"frontend", "api", "redis", "prometheus"}):
            return p
    raise AssertionError(f"no app pod on {node}")


def pod_port(pod: dict[str, Any]) -> int:
    return {"frontend": 8080, "api": 8080, "redis": 6379, "prometheus": 9090}[pod["labels"]["app"]]


def tcp_ok(lab: Lab, src: dict[str, Any], host: str, port: int) -> bool:
    return bool(lab.tcp(src, host, port, timeout=1.0)["ok"])


def cross_node(src_node: str, dst_node: str) -> Probe:
    def probe(lab: Lab) -> bool:
        src, dst = app_pod(lab, src_node), app_pod(lab, dst_node)
        return tcp_ok(lab, src, dst["ip"], pod_port(dst))

    return probe


def to_service(src_node: str, namespace: str, name: str, port: int) -> Probe:
    def probe(lab: Lab) -> bool:
        return tcp_ok(lab, app_pod(lab, src_node), lab.service(namespace, name)["cluster_ip"], port)

    return probe


def to_pod(pod_app: str, from_node: str = "node-2") -> Probe:
    def probe(lab: Lab) -> bool:
        dst = next(p for p in lab.status["pods"] if p["labels"].get("app") == pod_app and p["node"] != from_node)
        return tcp_ok(lab, app_pod(lab, from_node), dst["ip"], pod_port(dst))

    return probe


def from_pod(pod_app: str, namespace: str, service: str, port: int) -> Probe:
    def probe(lab: Lab) -> bool:
        src = lab.pod(app=pod_app)
        return tcp_ok(lab, src, lab.service(namespace, service)["cluster_ip"], port)

    return probe


def dns_works(pod_app: str = "frontend", **extra: Any) -> Probe:
    def probe(lab: Lab) -> bool:
        return bool(lab.dns(lab.pod(app=pod_app), "api.shop.svc.cluster.local", timeout=1.0, **extra)["ok"])

    return probe


def agent_answers(node: str) -> Probe:
    def probe(lab: Lab) -> bool:
        state = load_state(lab.prefix)
        assert state is not None
        host, port = state.agents[node].split(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1.0):
                return True
        except OSError:
            return False

    return probe


def conntrack_has_room(node: str) -> Probe:
    def probe(lab: Lab) -> bool:
        netns = lab.node(node)["netns"]
        count = int(
            subprocess.run(["ip", "netns", "exec", netns, "conntrack", "-C"], capture_output=True, text=True, check=True).stdout
        )
        limit = int(subprocess.run(["ip", "netns", "exec", netns, "cat", "/proc/sys/net/netfilter/nf_conntrack_max"],
                                   capture_output=True, text=True, check=True).stdout)  # fmt: skip
        return count < limit and to_service(node, "shop", "frontend", 80)(lab)

    return probe


@dataclass(frozen=True)
class Case:
    fault: str
    args: tuple[str, ...]
    works: Probe
    """The path the fault breaks."""
    unaffected: Probe | None = None
    """A path the fault must leave working (the fault is precise, not a sledgehammer)."""


def _pod_name(app: str, node: str) -> Callable[[Lab], str]:
    return lambda lab: f"{app_pod(lab, node, app)['namespace']}/{app_pod(lab, node, app)['name']}"


CASES = [
    Case("node-route-missing", ("--node", "node-1"), cross_node("node-1", "node-2"), cross_node("node-2", "node-3")),
    Case("node-route-wrong", ("--node", "node-1"), cross_node("node-1", "node-2"), cross_node("node-3", "node-2")),
    Case("ip-forward-off", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case("forward-drop", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case("nft-forward-drop", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case("forward-rule-drop", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case("legacy-forward-drop", ("--node", "node-3"), cross_node("node-1", "node-3"), cross_node("node-1", "node-2")),
    Case("input-drop", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case("overlay-down", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case("overlay-fdb-missing", ("--node", "node-1"), cross_node("node-1", "node-2"), cross_node("node-1", "node-3")),
    Case(
        "conntrack-full",
        ("--node", "node-1"),
        conntrack_has_room("node-1"),
        to_service("node-3", "monitoring", "prometheus", 9090),
    ),
    Case("agent-down", ("--node", "node-1"), agent_answers("node-1"), agent_answers("node-2")),
    Case(
        "not-listening",
        ("--pod", "shop/redis-0"),
        from_pod("frontend", "shop", "redis", 6379),
        from_pod("frontend", "shop", "api", 8080),
    ),
    Case(
        "selector-mismatch",
        ("--service", "shop/api"),
        from_pod("frontend", "shop", "api", 8080),
        from_pod("frontend", "shop", "redis", 6379),
    ),
    Case(
        "endpoints-not-ready",
        ("--service", "shop/api"),
        from_pod("frontend", "shop", "api", 8080),
        from_pod("frontend", "shop", "redis", 6379),
    ),
    Case(
        "target-port-mismatch",
        ("--service", "shop/api"),
        from_pod("frontend", "shop", "api", 8080),
        from_pod("frontend", "shop", "redis", 6379),
    ),
    Case(
        "policy-deny-ingress",
        ("--service", "shop/api"),
        from_pod("frontend", "shop", "api", 8080),
        from_pod("frontend", "shop", "redis", 6379),
    ),
    Case("policy-deny-egress", (), from_pod("frontend", "shop", "api", 8080), dns_works("frontend")),
    Case("dns-down", (), dns_works("api"), from_pod("frontend", "shop", "api", 8080)),
    Case(
        "kube-proxy-rules-missing",
        ("--node", "node-1", "--service", "shop/api"),
        to_service("node-1", "shop", "api", 8080),
        to_service("node-2", "shop", "api", 8080),
    ),
    Case(
        "kube-proxy-stale",
        ("--node", "node-3", "--service", "shop/redis"),
        to_service("node-3", "shop", "redis", 6379),
        to_service("node-1", "shop", "redis", 6379),
    ),
    Case(
        "conntrack-stale",
        ("--service", "kube-system/kube-dns"),
        dns_works("frontend", sport=5353),
        dns_works("frontend", sport=5354),
    ),
]


def _run_case(lab: Lab, case: Case, extra: tuple[str, ...] = ()) -> None:
    lab.refresh()
    assert eventually(lambda: case.works(lab), bool, what=f"healthy path before {case.fault}")
    lab.cli("fault", case.fault, *case.args, *extra)
    try:
        lab.refresh()
        eventually(lambda: case.works(lab), lambda ok: not ok, what=f"{case.fault} breaking the path")
        if case.unaffected is not None:
            assert case.unaffected(lab), f"{case.fault} broke more than it should"
    finally:
        lab.cli("heal")
        lab.refresh()
    eventually(lambda: case.works(lab), bool, what=f"the path after healing {case.fault}")


@pytest.mark.parametrize("case", CASES, ids=[c.fault for c in CASES])
def test_fault_breaks_the_path_and_heal_restores_it(lab: Lab, case: Case) -> None:
    _run_case(lab, case)


def test_pod_level_faults_break_only_that_pod(lab: Lab) -> None:
    for fault in ("veth-down", "veth-off-bridge"):
        lab.refresh()
        victim = app_pod(lab, "node-2", "api")
        works = lambda lab, v=victim: tcp_ok(lab, app_pod(lab, "node-1"), v["ip"], 8080)  # noqa: E731
        _run_case(lab, Case(fault, ("--pod", f"shop/{victim['name']}"), works, cross_node("node-1", "node-3")))
    lab.refresh()
    victim = app_pod(lab, "node-1", "frontend")
    _run_case(lab, Case("pod-route-missing", ("--pod", f"shop/{victim['name']}"),
                        lambda lab, v=victim: tcp_ok(lab, v, lab.service("shop", "api")["cluster_ip"], 8080),
                        to_service("node-2", "shop", "api", 8080)))  # fmt: skip


def test_pod_crashloop_and_missing_ip_show_in_the_kernel_and_the_api(lab: Lab) -> None:
    state = load_state(lab.prefix)
    assert state is not None
    api = LabApi.from_files(state.api_url, state.token_file, state.ca_file)
    lab.refresh()
    victim = app_pod(lab, "node-1", "frontend")
    path = f"/api/v1/namespaces/shop/pods/{victim['name']}"
    serving = lambda lab, v=victim: tcp_ok(lab, app_pod(lab, "node-2"), v["ip"], 8080)  # noqa: E731
    assert serving(lab)
    lab.cli("fault", "pod-crashloop", "--pod", f"shop/{victim['name']}")
    try:
        assert not serving(lab)
        waiting = api.get(path)["status"]["containerStatuses"][0]["state"]["waiting"]
        assert waiting["reason"] == "CrashLoopBackOff"
    finally:
        lab.cli("heal")
    assert eventually(lambda: serving(lab), bool) and api.get(path)["status"]["containerStatuses"][0]["ready"] is True

    lab.cli("fault", "pod-no-ip", "--pod", f"shop/{victim['name']}")
    try:
        addrs = json.loads(subprocess.run(["ip", "-n", victim["netns"], "-j", "-4", "addr", "show", "dev", "eth0"],
                                          capture_output=True, text=True, check=True).stdout)  # fmt: skip
        assert all(not a.get("addr_info") for a in addrs)
        assert not api.get(path)["status"].get("podIP")
        assert not serving(lab)
    finally:
        lab.cli("heal")
    assert eventually(lambda: serving(lab), bool) and api.get(path)["status"]["podIP"] == victim["ip"]


def test_mtu_mismatch_drops_only_large_packets(lab: Lab) -> None:
    lab.refresh()
    src = app_pod(lab, "node-1", "frontend")
    dns_pod = next(p for p in lab.status["pods"] if p["labels"].get("k8s-app") == "kube-dns" and p["node"] != "node-1")

    def answers(pad: int) -> bool:
        return bool(lab.dns(src, "api.shop.svc.cluster.local", server=dns_pod["ip"], pad=pad, timeout=1.0)["ok"])

    assert answers(1460) and answers(0)
    lab.cli("fault", "mtu-mismatch", "--pod", f"shop/{src['name']}")
    try:
        assert answers(0), "small packets still pass"
        assert not answers(1460), "a full-size packet is dropped at the host-side veth"
    finally:
        lab.cli("heal")
    assert answers(1460)


def test_rp_filter_strict_drops_only_the_asymmetric_source(lab: Lab) -> None:
    lab.refresh()
    src = app_pod(lab, "node-1", "frontend")
    other = next(p for p in lab.status["pods"] if p["node"] == "node-1" and p["labels"].get("app") == "api")
    dst = app_pod(lab, "node-2", "api")
    works = lambda lab, s=src: tcp_ok(lab, s, dst["ip"], 8080)  # noqa: E731
    _run_case(lab, Case("rp-filter-strict", ("--node", "node-2", "--pod", f"shop/{src['name']}"), works,
                        lambda lab, o=other: tcp_ok(lab, o, dst["ip"], 8080)))  # fmt: skip


def test_calico_and_nftables_faults(calico_lab: Lab) -> None:
    lab = calico_lab
    _run_case(lab, Case("overlay-down", ("--node", "node-2"), cross_node("node-1", "node-2"), cross_node("node-2", "node-2")))
    _run_case(lab, Case("kube-proxy-rules-missing", ("--node", "node-1", "--service", "shop/api"),
                        to_service("node-1", "shop", "api", 8080), to_service("node-2", "shop", "api", 8080)))  # fmt: skip
    _run_case(lab, Case("kube-proxy-stale", ("--node", "node-1", "--service", "shop/redis"),
                        to_service("node-1", "shop", "redis", 6379), to_service("node-2", "shop", "redis", 6379)))  # fmt: skip
    lab.refresh()
    victim = app_pod(lab, "node-2", "api")
    _run_case(lab, Case("veth-down", ("--pod", f"shop/{victim['name']}"),
                        lambda lab, v=victim: tcp_ok(lab, app_pod(lab, "node-1"), v["ip"], 8080), None))  # fmt: skip
    refused = lab.cli("fault", "veth-off-bridge", "--pod", f"shop/{victim['name']}", check=False)
    assert refused.returncode == 2 and "calico has no bridge" in refused.stderr
    # Calico's default route goes via 169.254.1.1 on its own link route: heal puts both back
    _run_case(lab, Case("pod-no-ip", ("--pod", f"shop/{victim['name']}"),
                        lambda lab, v=victim: tcp_ok(lab, app_pod(lab, "node-1"), v["ip"], 8080), None))  # fmt: skip


def test_the_nodes_kube_proxy_writes_the_layout_the_lab_was_brought_up_with(calico_lab: Lab) -> None:
    # The layout chosen with `lab up --kube-proxy-layout` (default 1.36; CI may pick another through
    # KUBEREACH_LAB_KUBE_PROXY_LAYOUT) reaches every node's kube-proxy through the lab's state.
    layout = calico_lab.status["kube_proxy_layout"]
    state = load_state(calico_lab.prefix)
    assert state is not None and state.kube_proxy_layout == layout
    for node in ("node-1", "node-2"):
        netns = calico_lab.node(node)["netns"]
        table = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "ip", "kube-proxy"],
                               capture_output=True, text=True, check=True, timeout=30).stdout  # fmt: skip
        redis = table[table.index("chain service-V3KEXTKG-shop/redis/tcp/redis {") :].split("}", 1)[0]
        if layout == "endpoint-chains":
            assert "chain mark-for-masquerade" in table and "numgen random mod 1 vmap" in redis
        else:
            assert "chain mark-for-masquerade" not in table and "set hairpin-connections" in table
            single = "dnat to 10.244." in redis and "numgen" not in redis
            assert single == (layout == "single-endpoint"), redis
