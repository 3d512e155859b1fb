"""filter_state against a FORWARD policy, DROP rules and sysctls set in a throwaway namespace (prefix kt)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from nodeagent.checks.filter import filter_state
from nodeagent.checks.nat import KubeProxyTables
from nodeagent.netns import netns_path

pytestmark = pytest.mark.lab

TABLES = KubeProxyTables()


def run(netns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, check=True)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-flt-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run(name, "ip", "link", "add", "kt0", "type", "veth", "peer", "name", "kt1")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_forward_drop_policy_is_reported(netns: str) -> None:
    run(netns, "iptables", "-P", "FORWARD", "DROP")
    state = filter_state(TABLES, netns_path(netns), netns, "10.244.1.2", "10.244.2.3", "tcp", 80, [])
    assert state.forward_policy == "DROP"
    assert [d.rule for d in state.drops] == ["-P FORWARD DROP"]


def test_forward_drop_rule_in_a_policy_chain_is_found(netns: str) -> None:
    run(netns, "iptables", "-N", "KT-POLICY")
    run(netns, "iptables", "-A", "FORWARD", "-j", "KT-POLICY")
    run(
        netns,
        "iptables",
        "-A",
        "KT-POLICY",
        "-s",
        "10.244.1.0/24",
        "-d",
        "10.244.2.3",
        "-p",
        "tcp",
        "--dport",
        "443",
        "-j",
        "DROP",
    )
    path = netns_path(netns)
    state = filter_state(TABLES, path, netns, "10.244.1.2", "10.244.2.3", "tcp", 443, [])
    assert state.forward_policy == "ACCEPT"
    assert [(d.chain, d.target) for d in state.drops] == [("KT-POLICY", "DROP")]
    assert "-d 10.244.2.3/32" in state.drops[0].rule
    assert filter_state(TABLES, path, netns, "10.244.1.2", "10.244.2.3", "tcp", 80, []).drops == ()
    assert filter_state(TABLES, path, netns, "10.244.7.2", "10.244.2.3", "tcp", 443, []).drops == ()


def test_accept_before_the_drop_ends_the_walk(netns: str) -> None:
    run(netns, "iptables", "-A", "FORWARD", "-s", "10.244.1.2", "-j", "ACCEPT")
    run(netns, "iptables", "-A", "FORWARD", "-j", "REJECT")
    path = netns_path(netns)
    assert filter_state(TABLES, path, netns, "10.244.1.2", "10.244.2.3", "udp", 53, []).drops == ()
    assert [d.target for d in filter_state(TABLES, path, netns, "10.244.1.9", "10.244.2.3", "udp", 53, []).drops] == ["REJECT"]


def test_ip_forward_and_effective_rp_filter_are_read_in_the_namespace(netns: str) -> None:
    run(netns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    run(netns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1")
    run(netns, "sysctl", "-qw", "net.ipv4.conf.kt0.rp_filter=2")
    run(netns, "sysctl", "-qw", "net.ipv4.conf.lo.rp_filter=0")
    state = filter_state(TABLES, netns_path(netns), netns, "10.244.1.2", "10.244.2.3", "tcp", 80, ["kt0", "lo", "nope0"])
    assert state.ip_forward
    assert dict(state.rp_filter) == {"kt0": 2, "lo": 1}
    run(netns, "sysctl", "-qw", "net.ipv4.ip_forward=0")
    assert not filter_state(TABLES, netns_path(netns), netns, "10.244.1.2", "10.244.2.3", "tcp", 80, []).ip_forward


def test_interface_names_that_are_paths_are_refused(netns: str) -> None:
    with pytest.raises(ValueError, match="interface"):
        filter_state(TABLES, netns_path(netns), netns, "10.244.1.2", "10.244.2.3", "tcp", 80, ["../../all"])
