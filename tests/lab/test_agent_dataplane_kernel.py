"""The agent's dataplane detection on the real kernel, in throwaway namespaces (prefix kt, deleted in
finally): Cilium-shaped links (the cilium_host/cilium_net veth pair and a cilium_vxlan device in
external mode, as Cilium makes it) with no kube-proxy tables are Cilium's eBPF load balancer; no
kube-proxy tables and nothing else is "none"; kube-proxy's nftables table is kube-proxy's; a
kube-ipvs0 link is IPVS; a BPF filter on a link is other eBPF. GetNodeInfo carries it."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.checks import dataplane
from nodeagent.service import KernelChecks
from nodeagent.wire import node_info

pytestmark = pytest.mark.lab


def run(netns: str, *argv: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["ip", "-n", netns, *argv] if argv[0] != "nft" else ["ip", "netns", "exec", netns, *argv],
        input=stdin,
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-dp-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run(name, "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _detected(netns: str, bpffs: Path | None = None) -> dataplane.Dataplane:
    checks = KernelChecks("node-x", netns, bpffs)
    info = checks.node_info()
    reply = node_info(info)
    assert (reply.dataplane, tuple(reply.dataplane_evidence)) == (info.dataplane.name, info.dataplane.evidence)
    return info.dataplane


def test_cilium_shaped_links_without_kube_proxy_tables_are_ciliums_ebpf_load_balancer(netns: str, tmp_path: Path) -> None:
    run(netns, "link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net")
    run(netns, "link", "add", "cilium_vxlan", "type", "vxlan", "external", "dstport", "8472")
    maps = tmp_path / "tc" / "globals"
    maps.mkdir(parents=True)
    (maps / "cilium_lb4_services_v2").touch()
    (maps / "cilium_ct4_global").touch()
    found = _detected(netns, tmp_path)
    assert found.name == dataplane.CILIUM_EBPF
    assert {"link cilium_host", "link cilium_net", "link cilium_vxlan", "pinned map cilium_lb4_services_v2"} <= set(
        found.evidence
    )
    assert "pinned map cilium_ct4_global" not in found.evidence


def test_a_namespace_without_kube_proxy_tables_or_anything_else_is_none(netns: str, tmp_path: Path) -> None:
    run(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    found = _detected(netns, tmp_path / "absent")
    assert found.name == dataplane.NONE
    assert "no kube-proxy rules" in found.evidence[0]


def test_kube_proxys_nftables_table_wins_over_cilium_shaped_links(netns: str) -> None:
    run(netns, "link", "add", "cilium_host", "type", "veth", "peer", "name", "cilium_net")
    run(netns, "nft", "-f", "-", stdin="table ip kube-proxy {\n chain services {\n }\n}\n")
    assert _detected(netns).name == dataplane.KUBE_PROXY_NFTABLES


def test_a_kube_ipvs0_link_is_ipvs(netns: str) -> None:
    # kube-proxy makes it a dummy; this kernel has no dummy driver, and only the name counts
    run(netns, "link", "add", "kube-ipvs0", "type", "veth", "peer", "name", "ipvs-peer")
    found = _detected(netns)
    assert found.name == dataplane.IPVS
    assert "link kube-ipvs0" in found.evidence


def test_a_bpf_filter_on_a_link_without_kube_proxy_tables_is_other_ebpf(netns: str) -> None:
    run(netns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1")
    subprocess.run(["ip", "netns", "exec", netns, "tc", "qdisc", "add", "dev", "eth0", "clsact"], check=True)
    # a classic-BPF classifier (accept everything): what tc can attach without an object file
    tc = ["tc", "filter", "add", "dev", "eth0", "ingress", "bpf", "bytecode", "1,6 0 0 4294967295,"]
    subprocess.run(["ip", "netns", "exec", netns, *tc], check=True)
    found = _detected(netns)
    assert found.name == dataplane.EBPF
    assert found.evidence[0] == "eth0: tc ingress bpf (unnamed)"
