"""filter_state against real rulesets on every hook and backend, in a throwaway namespace (prefix kt).

Native nftables tables (which iptables-nft's iptables-save does not print), iptables-legacy rules
(which iptables-nft does not see), and flows that end on or start from the namespace's own address
(input and output hooks instead of forward). Each test loads its rules with the real tools.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodeagent.checks.filter import filter_state
from nodeagent.checks.nat import KubeProxyTables
from nodeagent.netns import netns_path

pytestmark = pytest.mark.lab

NODE_IP = "10.240.0.11"


def run(netns: str, *argv: str, stdin: str | None = None) -> None:
    subprocess.run(["ip", "netns", "exec", netns, *argv], input=stdin, capture_output=True, text=True, check=True)


def legacy_available() -> bool:
    """iptables-legacy works on this kernel: a table it loads shows in /proc/net/ip_tables_names."""
    name = f"kt-leg-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", name, "iptables-legacy", "-t", "filter", "-L", "-n"], capture_output=True, check=False
        )
        names = subprocess.run(
            ["ip", "netns", "exec", name, "cat", "/proc/net/ip_tables_names"], capture_output=True, text=True, check=False
        )
        return done.returncode == 0 and "filter" in names.stdout
    except FileNotFoundError:
        return False
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"kt-hook-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        run(name, "ip", "link", "set", "lo", "up")
        run(name, "ip", "link", "add", "kt0", "type", "veth", "peer", "name", "kt1")
        run(name, "ip", "addr", "add", f"{NODE_IP}/24", "dev", "kt0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def state(netns: str, src: str, dst: str, protocol: str = "tcp", dport: int | None = 80):  # type: ignore[no-untyped-def]
    return filter_state(KubeProxyTables(), netns_path(netns), netns, src, dst, protocol, dport, [])


def test_a_native_inet_filter_forward_rule_is_found_with_its_table_and_handle(netns: str) -> None:
    run(
        netns,
        "nft",
        "-f",
        "-",
        stdin="table inet filter { chain forward { type filter hook forward priority filter; policy accept;\n"
        "ip daddr 10.244.2.0/24 counter reject with icmpx admin-prohibited\n}\n}\n",
    )
    found = state(netns, "10.244.1.2", "10.244.2.3")
    assert found.hooks == ("prerouting", "forward", "postrouting")
    assert [(d.backend, d.table, d.chain, d.hook, d.target) for d in found.drops] == [
        ("nftables", "inet filter", "forward", "forward", "REJECT")
    ]
    assert found.drops[0].handle is not None and found.drops[0].rule.startswith("ip daddr 10.244.2.0/24")
    assert state(netns, "10.244.1.2", "10.244.3.3").drops == ()


def test_an_iptables_accept_does_not_hide_a_drop_in_another_base_chain_on_the_hook(netns: str) -> None:
    run(netns, "iptables", "-A", "FORWARD", "-j", "ACCEPT")
    site = "table ip site {\n chain site_forward { type filter hook forward priority 10; policy drop; }\n}\n"
    run(netns, "nft", "-f", "-", stdin=site)
    found = state(netns, "10.244.1.2", "10.244.2.3")
    assert [(d.backend, d.table, d.rule) for d in found.drops] == [("nftables", "ip site", "policy drop")]


def test_iptables_nft_tables_are_walked_from_iptables_save_not_twice_as_nftables(netns: str) -> None:
    run(netns, "iptables", "-N", "HOST-FW")
    run(netns, "iptables", "-A", "FORWARD", "-j", "HOST-FW")
    run(netns, "iptables", "-A", "HOST-FW", "-s", "10.244.1.0/24", "-j", "DROP")
    found = state(netns, "10.244.1.2", "10.244.2.3")
    assert [(d.backend, d.table, d.chain, d.rule) for d in found.drops] == [
        ("iptables-nft", "filter", "HOST-FW", "-A HOST-FW -s 10.244.1.0/24 -j DROP")
    ]
    assert found.possible == () and found.not_checked == ()


def test_a_table_with_a_kube_like_name_is_walked(netns: str) -> None:
    run(
        netns,
        "nft",
        "-f",
        "-",
        stdin="table ip kube-proxy-extras {\n chain f {\n  type filter hook forward priority 0; policy accept;\n"
        "  ip saddr 10.244.1.2 drop\n }\n}\n",
    )
    assert [d.table for d in state(netns, "10.244.1.2", "10.244.2.3").drops] == ["ip kube-proxy-extras"]


def test_traffic_to_the_nodes_own_address_crosses_input_not_forward(netns: str) -> None:
    run(
        netns,
        "nft",
        "-f",
        "-",
        stdin="table inet filter {\n"
        " chain input { type filter hook input priority 0; policy accept;\ntcp dport 30080 counter drop\n}\n"
        " chain forward { type filter hook forward priority 0; policy drop; }\n"
        "}\n",
    )
    found = state(netns, "10.244.1.2", NODE_IP, "tcp", 30080)
    assert (found.local_destination, found.hooks) == (True, ("prerouting", "input"))
    assert [(d.chain, d.hook) for d in found.drops] == [("input", "input")]
    assert state(netns, "10.244.1.2", NODE_IP, "tcp", 22).drops == ()  # the forward policy is not on its way
    assert [(d.chain, d.rule) for d in state(netns, "10.244.1.2", "10.244.2.3").drops] == [("forward", "policy drop")]


def test_traffic_the_node_sends_crosses_output(netns: str) -> None:
    run(netns, "iptables", "-A", "OUTPUT", "-d", "10.244.0.0/16", "-p", "tcp", "-j", "REJECT")
    found = state(netns, NODE_IP, "10.244.2.3")
    assert (found.local_source, found.hooks) == (True, ("output", "postrouting"))
    assert [(d.table, d.chain, d.hook) for d in found.drops] == [("filter", "OUTPUT", "output")]
    assert state(netns, "10.244.1.2", "10.244.2.3").drops == ()


def test_a_raw_prerouting_drop_is_found_before_forward(netns: str) -> None:
    run(netns, "iptables", "-t", "raw", "-A", "PREROUTING", "-d", "10.244.2.0/24", "-j", "DROP")
    found = state(netns, "10.244.1.2", "10.244.2.3")
    assert [(d.table, d.chain, d.hook) for d in found.drops] == [("raw", "PREROUTING", "prerouting")]


@pytest.mark.skipif(not legacy_available(), reason="this kernel has no x_tables (iptables-legacy) support")
def test_an_iptables_legacy_rule_invisible_to_iptables_nft_is_found(netns: str) -> None:
    run(netns, "iptables-legacy", "-N", "HOST-FW")
    run(netns, "iptables-legacy", "-A", "FORWARD", "-j", "HOST-FW")
    run(netns, "iptables-legacy", "-A", "HOST-FW", "-d", "10.244.2.0/24", "-j", "DROP")
    nft_view = subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True, check=True).stdout
    assert "HOST-FW" not in nft_view  # the premise: iptables-nft does not show it
    found = state(netns, "10.244.1.2", "10.244.2.3")
    assert [(d.backend, d.table, d.chain, d.rule) for d in found.drops] == [
        ("iptables-legacy", "filter", "HOST-FW", "-A HOST-FW -d 10.244.2.0/24 -j DROP")
    ]


@pytest.mark.skipif(not legacy_available(), reason="this kernel has no x_tables (iptables-legacy) support")
def test_legacy_tables_that_cannot_be_read_are_named_not_checked(
    netns: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(netns, "iptables-legacy", "-A", "FORWARD", "-d", "10.244.2.0/24", "-j", "DROP")
    # An agent image without iptables-legacy-save: every other tool is where it was.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("nsenter", "iptables-save", "iptables", "nft"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))
    found_state = state(netns, "10.244.1.2", "10.244.2.3")
    assert found_state.drops == ()
    assert len(found_state.not_checked) == 1 and "iptables-legacy" in found_state.not_checked[0]
