"""The lab's kube-proxy writes, structurally, what upstream kube-proxy v1.36.2 wrote for the same inputs.

The recordings (tests/unit/fixtures/kube-proxy-v1.36.2/, see its README) come from the real kube-proxy on node-1
of a lab built from the default spec; `recorded_inputs()` rebuilds the Services and EndpointSlices
it saw from the lab's own plan. The comparison is on structure (tables, sets and maps with their
types, comments and elements, chains with their hooks and rules in order), not on text; where the
real output is not deterministic it is compared as a set (nft set elements, the service rules of
iptables' KUBE-SERVICES). tests/lab/test_kubeproxy_recorded_lab.py checks the same with the
kernel's own listing after applying the rules.
"""

from __future__ import annotations

import dataclasses

from lab.kubeproxy.iptables import render_iptables
from lab.kubeproxy.nftables import render_nftables

from .kubeproxy_recording import (
    RECORDINGS,
    NftTable,
    diff_iptables,
    kernel_view,
    parse_iptables,
    parse_nft_listing,
    parse_nft_script,
    recorded_inputs,
)


def recorded_nft() -> dict[str, NftTable]:
    tables = parse_nft_listing((RECORDINGS / "node-1.ip-kube-proxy.nft").read_text())
    tables.update(parse_nft_listing((RECORDINGS / "node-1.ip6-kube-proxy.nft").read_text()))
    return tables


def nft_differences(ours: dict[str, NftTable], real: dict[str, NftTable]) -> list[str]:
    problems = []
    if set(ours) != set(real):
        problems.append(f"tables: ours {sorted(ours)}, real {sorted(real)}")
    for name in sorted(set(ours) & set(real)):
        a, b = ours[name], real[name]
        if a.comment != b.comment:
            problems.append(f"{name} comment: {a.comment!r} != {b.comment!r}")
        for key in sorted(set(a.containers) | set(b.containers)):
            if a.containers.get(key) != b.containers.get(key):
                problems.append(f"{name} set/map {key}:\n  ours {a.containers.get(key)}\n  real {b.containers.get(key)}")
        for key in sorted(set(a.chains) | set(b.chains)):
            if a.chains.get(key) != b.chains.get(key):
                problems.append(f"{name} chain {key}:\n  ours {a.chains.get(key)}\n  real {b.chains.get(key)}")
    return problems


def test_the_recorded_inputs_are_the_labs_default_plan() -> None:
    services, slices, node = recorded_inputs()
    assert node.node_ip == "10.240.0.11" and node.cluster_cidr == "10.244.0.0/16"
    vips = {s["metadata"]["name"]: s["spec"]["clusterIP"] for s in services}
    assert vips == {
        "kube-dns": "10.96.0.10",
        "api": "10.107.25.64",
        "frontend": "10.106.173.119",
        "redis": "10.111.113.82",
        "ledger": "10.101.187.151",
        "prometheus": "10.106.36.145",
    }
    local = {e["addresses"][0] for s in slices for e in s["endpoints"] if e.get("nodeName") == "node-1"}
    assert local == {"10.244.1.2", "10.244.1.3", "10.244.1.4", "10.244.1.5"}


def test_nftables_136_layout_matches_the_recording_in_both_tables() -> None:
    services, slices, node = recorded_inputs()
    ours = parse_nft_script(render_nftables(services, slices, node).script)
    real = recorded_nft()
    assert nft_differences(ours, real) == []
    # The comparison covers what matters: the dnat maps, the hairpin set, nodeport-ips, the ip6 table.
    assert real["ip kube-proxy"].chains["service-WEZGB4Y6-shop/api/tcp/http"].rules == [
        "meta l4proto tcp dnat ip to numgen random mod 3 map { 0 : 10.244.1.4 . 8080, 1 : 10.244.2.3 . 8080, "
        "2 : 10.244.3.3 . 8080 }"
    ]
    assert len(real["ip kube-proxy"].containers["hairpin-connections"].elements) == 7
    assert real["ip kube-proxy"].containers["nodeport-ips"].elements == {"10.240.0.11"}
    assert "services" in real["ip6 kube-proxy"].chains


def test_with_service_cidrs_only_the_unallocated_clusterip_drop_is_added() -> None:
    services, slices, node = recorded_inputs()
    ours = parse_nft_script(render_nftables(services, slices, dataclasses.replace(node, service_cidrs=("10.96.0.0/12",))).script)
    problems = nft_differences(ours, recorded_nft())
    assert len(problems) == 1 and "chain cluster-ips-check" in problems[0]
    assert ours["ip kube-proxy"].chains["cluster-ips-check"].rules[-1] == (
        'ip daddr { 10.96.0.0/12 } drop comment "Drop traffic to unallocated ClusterIPs"'
    )


def test_the_other_layouts_differ_from_the_recording_exactly_where_they_should() -> None:
    services, slices, node = recorded_inputs()
    real = recorded_nft()
    single = parse_nft_script(render_nftables(services, slices, dataclasses.replace(node, nft_layout="single-endpoint")).script)
    problems = nft_differences(single, real)
    # redis and prometheus have one endpoint each: a plain dnat instead of a one-entry map.
    assert len(problems) == 2
    assert single["ip kube-proxy"].chains["service-V3KEXTKG-shop/redis/tcp/redis"].rules == [
        "meta l4proto tcp dnat to 10.244.2.4:6379"
    ]
    old = parse_nft_script(render_nftables(services, slices, dataclasses.replace(node, nft_layout="endpoint-chains")).script)
    old_ip = old["ip kube-proxy"]
    assert "mark-for-masquerade" in old_ip.chains and "hairpin-connections" not in old_ip.containers
    # One endpoint chain per (service port, endpoint), as iptables mode has one KUBE-SEP chain each.
    recorded_nat = parse_iptables((RECORDINGS / "node-1.nat.iptables-save.txt").read_text())["nat"]
    assert sum(name.startswith("endpoint-") for name in old_ip.chains) == sum(
        name.startswith("KUBE-SEP-") for name in recorded_nat.chains
    )
    assert nft_differences(old, real) != []


def test_iptables_matches_the_recording_in_both_families() -> None:
    services, slices, node = recorded_inputs()
    # The recording's kernel supports nfacct in a namespace; apply_iptables finds that out itself.
    ruleset = render_iptables(services, slices, dataclasses.replace(node, nfacct=True))
    real = parse_iptables(
        "\n".join((RECORDINGS / f"node-1.{table}.iptables-save.txt").read_text() for table in ("nat", "filter", "mangle"))
    )
    assert diff_iptables(kernel_view(ruleset, ruleset.restore_input), real, ("nat", "filter", "mangle")) == []
    assert ruleset.restore_input6 is not None
    real6 = parse_iptables((RECORDINGS / "node-1.ip6tables-save.txt").read_text())
    assert diff_iptables(kernel_view(ruleset, ruleset.restore_input6), real6, ("nat", "filter", "mangle")) == []
    assert ruleset.sysctls == (("net.ipv4.conf.all.route_localnet", "1"),)


def test_the_iptables_comparison_sees_each_fidelity_fix() -> None:
    services, slices, node = recorded_inputs()
    real = parse_iptables(
        "\n".join((RECORDINGS / f"node-1.{table}.iptables-save.txt").read_text() for table in ("nat", "filter", "mangle"))
    )
    without_counter = render_iptables(services, slices, node)
    problems = diff_iptables(kernel_view(without_counter, without_counter.restore_input), real, ("filter",))
    assert len(problems) == 1 and "KUBE-FORWARD" in problems[0]
    no_localhost = render_iptables(services, slices, dataclasses.replace(node, nfacct=True, localhost_nodeports=False))
    problems = diff_iptables(kernel_view(no_localhost, no_localhost.restore_input), real, ("nat", "filter"))
    assert [p.split(":")[0] for p in problems] == ["nat KUBE-SERVICES", "filter KUBE-FIREWALL"]
    assert no_localhost.sysctls == ()
