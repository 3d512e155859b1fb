"""The kernel takes the lab's kube-proxy rules and lists back what upstream kube-proxy v1.36.2 left.

One throwaway namespace (`kp…-rec`) per module; the lab's kube-proxy syncs the recorded spec into it
(tests/unit/lab/kubeproxy_recording.py rebuilds the inputs from the lab's default plan) and the kernel's
own listing (`nft list table`, `iptables-save`, `ip6tables-save`) is compared structurally with the
recordings in tests/unit/fixtures/kube-proxy-v1.36.2/. Every nftables layout must load with `nft -f`.
"""

from __future__ import annotations

import dataclasses
import secrets
import subprocess
from collections.abc import Iterator

import pytest

from lab.kubeproxy.apply import ensure_nfacct_counter, sync_iptables, sync_nftables
from lab.kubeproxy.model import NFT_LAYOUTS
from tests.unit.lab.kubeproxy_recording import (
    RECORDINGS,
    diff_iptables,
    parse_iptables,
    parse_nft_listing,
    parse_nft_script,
    recorded_inputs,
)
from tests.unit.lab.test_kubeproxy_recorded import nft_differences, recorded_nft

pytestmark = pytest.mark.lab


def run(ns: str, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns, *argv], check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    name = f"kp{secrets.token_hex(3)}-rec"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=30)
    try:
        run(name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30, check=False)


def kernel_nft(ns: str) -> str:
    return run(ns, "nft", "list", "table", "ip", "kube-proxy") + run(ns, "nft", "list", "table", "ip6", "kube-proxy")


def test_nftables_136_as_the_kernel_lists_it_matches_the_recording(netns: str) -> None:
    services, slices, node = recorded_inputs()
    sync_nftables(netns, services, slices, node)
    assert nft_differences(parse_nft_listing(kernel_nft(netns)), recorded_nft()) == []


def test_every_nftables_layout_loads_and_lists_back_as_written(netns: str) -> None:
    services, slices, node = recorded_inputs()
    for layout in NFT_LAYOUTS:
        ruleset = sync_nftables(netns, services, slices, dataclasses.replace(node, nft_layout=layout))
        listed = parse_nft_listing(kernel_nft(netns))
        # The script is written in nft's own listing form: what goes in is what the kernel lists.
        assert nft_differences(listed, parse_nft_script(ruleset.script)) == [], layout
    # A sync in one layout leaves nothing of the previous one behind.
    sync_nftables(netns, services, slices, node)
    assert nft_differences(parse_nft_listing(kernel_nft(netns)), recorded_nft()) == []


def test_iptables_as_the_kernel_saves_it_matches_the_recording(netns: str) -> None:
    services, slices, node = recorded_inputs()
    assert ensure_nfacct_counter(netns), "this kernel has nfacct in a namespace, as the recording's had"
    for _ in range(2):  # the second sync must change nothing (jumps are not duplicated)
        sync_iptables(netns, services, slices, node)
    saved = parse_iptables(run(netns, "iptables-save"))
    real = parse_iptables(
        "\n".join((RECORDINGS / f"node-1.{table}.iptables-save.txt").read_text() for table in ("nat", "filter", "mangle"))
    )
    assert diff_iptables(saved, real, ("nat", "filter", "mangle")) == []
    saved6 = parse_iptables(run(netns, "ip6tables-save"))
    real6 = parse_iptables((RECORDINGS / "node-1.ip6tables-save.txt").read_text())
    assert diff_iptables(saved6, real6, ("nat", "filter", "mangle")) == []
    assert run(netns, "sysctl", "-n", "net.ipv4.conf.all.route_localnet").strip() == "1"
