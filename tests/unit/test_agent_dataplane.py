"""Naming a node's service dataplane from recorded signs (`nodeagent.checks.dataplane.classify`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nodeagent.checks.dataplane import DataplaneSigns, classify, parse_ip_vs, pinned_lb_maps

# /proc/net/ip_vs of a kube-proxy IPVS node (two virtual servers, three real servers), as `ipvsadm -Ln`
# reads it from the kernel.
PROC_IP_VS = """IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  0A600001:01BB rr
  -> 0AF0000B:192B      Masq    1      0          0
UDP  0A60000A:0035 rr
  -> 0AF40102:0035      Masq    1      0          0
  -> 0AF40203:0035      Masq    1      0          0
"""
CILIUM_NODE_LINKS = ("lo", "eth0", "cilium_net", "cilium_host", "cilium_vxlan", "lxc_health", "lxc9a1b2c3d4e5f")


@pytest.mark.parametrize(
    ("signs", "name"),
    [
        (DataplaneSigns("iptables", ("lo", "eth0", "cni0", "flannel.1")), "kube-proxy-iptables"),
        (DataplaneSigns("nftables", ("lo", "eth0", "cni0")), "kube-proxy-nftables"),
        # IPVS mode keeps a KUBE-SERVICES chain (ipset matches), so kube-proxy's mode reads "iptables".
        (DataplaneSigns("iptables", ("lo", "eth0", "kube-ipvs0"), ipvs_services=2), "ipvs"),
        (DataplaneSigns("none", CILIUM_NODE_LINKS), "cilium-ebpf"),
        (DataplaneSigns("none", ("lo", "eth0"), pinned_maps=("cilium_lb4_services_v2",)), "cilium-ebpf"),
        (DataplaneSigns("none", ("lo", "eth0"), bpf_programs=("eth0: xdp prog 42",)), "ebpf"),
        (DataplaneSigns("none", ("lo", "eth0")), "none"),
        (DataplaneSigns(None, CILIUM_NODE_LINKS), ""),
    ],
)
def test_each_dataplane_is_named_from_what_the_node_shows(signs: DataplaneSigns, name: str) -> None:
    found = classify(signs)
    assert found.name == name
    assert found.evidence


def test_kube_proxys_rules_are_what_is_read_even_beside_cilium_links() -> None:
    assert classify(DataplaneSigns("iptables", CILIUM_NODE_LINKS)).name == "kube-proxy-iptables"


def test_cilium_evidence_names_its_links_and_says_kube_proxys_rules_are_absent() -> None:
    found = classify(DataplaneSigns("none", CILIUM_NODE_LINKS, pinned_maps=("cilium_lb4_services_v2",)))
    assert found.evidence[:4] == ("link cilium_host", "link cilium_net", "link cilium_vxlan", "pinned map cilium_lb4_services_v2")
    assert found.evidence[-1].startswith("no kube-proxy rules")


def test_proc_ip_vs_counts_virtual_servers_not_real_servers() -> None:
    assert parse_ip_vs(PROC_IP_VS) == 2
    assert parse_ip_vs(PROC_IP_VS.split("TCP", maxsplit=1)[0]) == 0


def test_only_ciliums_load_balancer_maps_are_listed(tmp_path: Path) -> None:
    maps = tmp_path / "tc" / "globals"
    maps.mkdir(parents=True)
    for name in ("cilium_lb4_services_v2", "cilium_lb4_backends_v3", "cilium_ct4_global", "other"):
        (maps / name).touch()
    assert pinned_lb_maps(tmp_path) == ("cilium_lb4_backends_v3", "cilium_lb4_services_v2")
    assert pinned_lb_maps(tmp_path / "absent") == ()
    assert pinned_lb_maps(None) == ()
