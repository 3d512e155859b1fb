"""The egress NAT walk on the kernel, in one throwaway namespace (no lab): Calico's masquerade as its
iptables dataplane writes it, matching on its IPAM-pool ipsets, which the agent reads over netlink.
Without the sets' members the walk could only say "unknown"; with them it decides."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest
from pyroute2.ipset import IPSet

from nodeagent.checks.egress import TRANSLATED, UNTRANSLATED, EgressFlow, egress_nat, read_ipsets
from nodeagent.checks.nat import KubeProxyTables
from nodeagent.netns import netns_path, run_in_netns

pytestmark = pytest.mark.lab

NS = f"tegn{os.getpid() % 10000:04d}"
CALICO_NAT = """*nat
:POSTROUTING ACCEPT [0:0]
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -j cali-nat-outgoing
-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src \
-m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully
COMMIT
"""


def _make_sets() -> None:
    ipset = IPSet()
    try:
        for name in ("cali40masq-ipam-pools", "cali40all-ipam-pools"):
            ipset.create(name, stype="hash:net")
            ipset.add(name, "10.244.0.0/16", etype="net")
    finally:
        ipset.close()


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False, timeout=30)
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True, timeout=30)
    try:
        path = netns_path(NS)
        run_in_netns(path, _make_sets)
        subprocess.run(
            ["ip", "netns", "exec", NS, "iptables-restore", "-w"], input=CALICO_NAT, text=True, check=True, capture_output=True
        )
        yield path
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False, timeout=30)


def test_the_sets_members_are_read_over_netlink(netns: str) -> None:
    found = read_ipsets(netns, ("cali40masq-ipam-pools", "cali40all-ipam-pools", "no-such-set"))
    assert found == {"cali40masq-ipam-pools": ("10.244.0.0/16",), "cali40all-ipam-pools": ("10.244.0.0/16",)}


def test_calico_masquerades_a_pod_to_the_outside_and_not_to_another_pod(netns: str) -> None:
    tables = KubeProxyTables()
    out = egress_nat(tables, netns, EgressFlow("10.244.1.5", "203.0.113.10", "TCP", 80, "eth0"))
    assert out.verdict == TRANSLATED and out.rules[-1].chain == "cali-nat-outgoing", out
    inside = egress_nat(tables, netns, EgressFlow("10.244.1.5", "10.244.2.7", "TCP", 8080, "vxlan.calico"))
    assert inside.verdict == UNTRANSLATED and not inside.possible, inside
