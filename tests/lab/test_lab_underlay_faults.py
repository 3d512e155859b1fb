"""The faults only packets reveal, in every CNI mode, through `kubereach lab …` as a process: a firewall
and a lossy, narrower link in the node network, and a node's host firewall on the overlay. Each breaks
the path it names (in the direction it names) and leaves the others working; `lab heal` puts the
fabric and the nodes back exactly as they were; `lab down` removes them with the lab."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.flood import udp_flood
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

# One lab per CNI mode, each with a different node pair broken: (cni, proxy, from, to, the third node).
MODES = {
    "flannel-vxlan": ("iptables", "node-3", "node-2", "node-1"),
    "host-gw": ("nftables", "node-1", "node-3", "node-2"),
    "calico": ("iptables", "node-2", "node-1", "node-3"),
}
DNS_NODES = ("node-1", "node-2")
"""Where the default spec's CoreDNS pods run on 3 nodes."""


@pytest.fixture(scope="module", params=list(MODES))
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    cni: str = request.param
    prefix = unique_prefix("u" + cni[0])
    with running_lab(prefix, "--nodes", "3", "--cni", cni, "--proxy", MODES[cni][0]) as running:
        yield running
        # Left in place on purpose: `lab down` must take them away with the lab.
        running.cli("fault", "underlay-drop")
        running.cli("fault", "node-firewall-overlay", "--node", "node-1")
    assert not [p.name for p in Path("/var/run/netns").glob(f"{prefix}-*")], "lab down left namespaces behind"


def pair(lab: Lab) -> tuple[str, str, str]:
    """(from, to, third) for this lab's mode."""
    _, src, dst, third = MODES[lab.status["cni"]]
    return src, dst, third


def api_pod(lab: Lab, node: str) -> dict[str, Any]:
    return next(p for p in lab.status["pods"] if p["node"] == node and p["labels"].get("app") == "api")


def dns_pod(lab: Lab, node: str) -> dict[str, Any]:
    return next(p for p in lab.status["pods"] if p["node"] == node and p["labels"].get("k8s-app") == "kube-dns")


def connects(lab: Lab, src_node: str, dst_node: str, count: int = 1, timeout: float = 1.0) -> int:
    """How many of `count` concurrent TCP connects from an api pod on one node to one on another succeed."""
    src, dst = api_pod(lab, src_node), api_pod(lab, dst_node)
    probes = [{"kind": "tcp", "host": dst["ip"], "port": 8080, "timeout": timeout}] * count
    return sum(bool(r["ok"]) for r in lab.probe(src["netns"], probes))


def delivered(lab: Lab, src_node: str, dst_node: str) -> float:
    """The share of a 2-second, 500-datagram/s UDP flood from a pod on one node that reaches a pod on another."""
    src, dst = api_pod(lab, src_node), api_pod(lab, dst_node)
    with udp_flood(src["netns"], dst["netns"], dst["ip"], pps=500, seconds=2) as flood:
        flood.wait()
    assert flood.result.sent >= 900, flood.result
    return flood.result.received / flood.result.sent


def matrix(lab: Lab) -> dict[tuple[str, str], bool]:
    """Whether an api pod on each node connects to the api pod on every other node (one probe process per node)."""
    nodes = [n["name"] for n in lab.status["nodes"]]
    result = {}
    for a in nodes:
        others = [b for b in nodes if b != a]
        probes = [{"kind": "tcp", "host": api_pod(lab, b)["ip"], "port": 8080, "timeout": 1.0} for b in others]
        for b, r in zip(others, lab.probe(api_pod(lab, a)["netns"], probes), strict=True):
            result[(a, b)] = bool(r["ok"])
    return result


def answers(lab: Lab, src_node: str, dns_node: str, pad: int = 0) -> bool:
    """Whether a CoreDNS pod on `dns_node` answers a query (padded to `pad` bytes) from a pod on `src_node`."""
    src, server = api_pod(lab, src_node), dns_pod(lab, dns_node)
    return bool(lab.dns(src, "api.shop.svc.cluster.local", server=server["ip"], pad=pad, timeout=1.0)["ok"])


def run(netns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=True, timeout=30).stdout


def kernel_state(lab: Lab) -> dict[str, str]:
    """What the faults change: the fabric's nftables and links, each node's iptables (without counters)."""
    fabric = f"{lab.prefix}-fabric"
    state = {"fabric nft": run(fabric, "nft", "list", "ruleset"), "fabric links": run(fabric, "ip", "-o", "link")}
    for node in lab.status["nodes"]:
        for table in ("filter", "raw"):
            state[f"{node['name']} {table}"] = run(node["netns"], "iptables-save", "-t", table).split("\n", 1)[1]
    return {k: "\n".join(line for line in v.splitlines() if not line.startswith("#")) for k, v in state.items()}


@pytest.fixture
def healthy(lab: Lab) -> Iterator[Lab]:
    """The lab with every node pair connected, healed after the test; heal must restore the kernel exactly."""
    lab.refresh()
    assert all(matrix(lab).values()), "the lab was not healthy to start with"
    before = kernel_state(lab)
    try:
        yield lab
    finally:
        lab.cli("heal")
    assert kernel_state(lab) == before, "lab heal did not restore the fabric and the nodes exactly"
    eventually(lambda: matrix(lab), lambda m: all(m.values()), what="every node pair connected after healing")


def test_underlay_drop_breaks_only_its_direction_between_its_two_nodes(healthy: Lab) -> None:
    lab = healthy
    src, dst, third = pair(lab)
    out = lab.cli("fault", "underlay-drop", "--from", src, "--to", dst).stdout
    assert f"from {src}" in out and f"to {dst}" in out
    eventually(lambda: connects(lab, src, dst), lambda ok: ok == 0, what="underlay-drop breaking the path")
    assert connects(lab, third, dst) == 1 and connects(lab, src, third) == 1 and connects(lab, dst, third) == 1
    # The other direction still crosses: a SYN from a pod on `dst` reaches the server on `src`, whose
    # answer is what the fabric drops (the SYN_RECV entry in `src`'s conntrack table shows it).
    client, server = api_pod(lab, dst), api_pod(lab, src)
    assert connects(lab, dst, src) == 0
    entries = run(lab.node(src)["netns"], "conntrack", "-L", "-p", "tcp", "-s", client["ip"], "-d", server["ip"])
    assert "SYN_RECV" in entries, entries


def test_underlay_loss_loses_some_packets_on_its_pair_or_on_every_pair(healthy: Lab) -> None:
    lab = healthy
    src, dst, third = pair(lab)
    lab.cli("fault", "underlay-loss", "--percent", "40", "--from", src, "--to", dst)
    lossy = connects(lab, src, dst, count=30, timeout=0.5)
    assert 0 < lossy < 30, f"{lossy}/30 connects crossed a link losing 40% of the packets"
    assert connects(lab, third, dst, count=30, timeout=0.5) == 30
    # Measured with a steady flood (lab.flood, the benchmarks' traffic): about 60% crosses, all of the rest.
    assert 0.5 < delivered(lab, src, dst) < 0.7
    assert delivered(lab, third, dst) == 1.0
    lab.cli("heal")
    lab.cli("fault", "underlay-loss", "--percent", "40")
    assert 0 < connects(lab, third, dst, count=30, timeout=0.5) < 30
    assert 0 < connects(lab, dst, src, count=30, timeout=0.5) < 30


def test_node_firewall_overlay_cuts_the_node_off_and_leaves_the_others_connected(healthy: Lab) -> None:
    lab = healthy
    src, dst, third = pair(lab)
    lab.cli("fault", "node-firewall-overlay", "--node", dst)
    eventually(lambda: connects(lab, src, dst), lambda ok: ok == 0, what="the host firewall breaking the path")
    assert connects(lab, third, dst) == 0, "every node's traffic to the firewalled node dies there"
    assert connects(lab, src, third) == 1 and connects(lab, third, src) == 1
    rules = run(lab.node(dst)["netns"], "iptables-save")
    assert "-j DROP" in rules


def test_underlay_mtu_drops_full_size_packets_between_nodes_and_lets_small_ones_pass(healthy: Lab) -> None:
    lab = healthy
    a, b = DNS_NODES
    assert answers(lab, a, b, pad=1400)
    out = lab.cli("fault", "underlay-mtu", "--mtu", "1300").stdout
    assert "1300" in out
    assert answers(lab, a, b), "small packets still cross the node network"
    assert not answers(lab, a, b, pad=1400), "a full-size packet is dropped by the narrower link"
    assert answers(lab, b, b, pad=1400), "a pod's traffic within its node does not cross the node network"
    lab.cli("heal")
    lab.cli("fault", "underlay-mtu", "--node", "node-3")  # one node's link only
    assert not answers(lab, "node-3", b, pad=1400)
    assert answers(lab, a, b, pad=1400)
    refused = lab.cli("fault", "underlay-mtu", "--percent", "5", check=False)
    assert refused.returncode == 2 and "does not take --percent" in refused.stderr
