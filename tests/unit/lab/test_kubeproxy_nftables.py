"""The nftables renderer writes what kube-proxy's nftables mode writes, layout by layout.

Names and inputs follow kube-proxy's pkg/proxy/nftables/proxier_test.go (pod CIDR 10.0.0.0/8,
ClusterIPs 172.30.0.4N, endpoints 10.180.0.N:80); rules are in the form `nft list` prints them, as
the recorded v1.36.2 dump has them (test_kubeproxy_recorded.py compares a whole sync with it).
"""

from __future__ import annotations

import dataclasses

from lab.kubeproxy.model import NodeContext
from lab.kubeproxy.nftables import render_nftables

from .kubeproxy_objects import endpoint, endpoint_slice, service

UPSTREAM_NODE = NodeContext(
    node_name="test-node", node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8", service_cidrs=("172.30.0.0/16",)
)
OLD_NODE = dataclasses.replace(UPSTREAM_NODE, nft_layout="endpoint-chains")
SINGLE_NODE = dataclasses.replace(UPSTREAM_NODE, nft_layout="single-endpoint")


def lines(script: str) -> list[str]:
    return script.splitlines()


def test_base_objects_are_kube_proxys() -> None:
    out = lines(render_nftables([], [], UPSTREAM_NODE).script)
    for upstream in [
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
        "add set ip kube-proxy hairpin-connections { type ipv4_addr . ipv4_addr . inet_proto . inet_service ; "
        'comment "service hairpin connections" ; }',
        'add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }',
        'add set ip kube-proxy nodeport-ips { type ipv4_addr ; comment "IPs that accept NodePort traffic" ; }',
        "add element ip kube-proxy nodeport-ips { 192.168.0.2 }",
        "add map ip kube-proxy no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        "add map ip kube-proxy service-ips { type ipv4_addr . inet_proto . inet_service : verdict ; "
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        'add map ip kube-proxy service-nodeports { type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }',
        "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }",
        "add chain ip kube-proxy filter-output-pre-dnat { type filter hook output priority -110 ; }",
        "add chain ip kube-proxy filter-forward { type filter hook forward priority 0 ; }",
        "add chain ip kube-proxy filter-input { type filter hook input priority 0 ; }",
        "add chain ip kube-proxy filter-output { type filter hook output priority 0 ; }",
        "add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }",
        "add chain ip kube-proxy nat-postrouting { type nat hook postrouting priority 100 ; }",
        "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }",
        'add chain ip kube-proxy reject-chain { comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }',
        'add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid '
        'ports of ClusterIPs"',
        'add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop comment "Drop traffic to '
        'unallocated ClusterIPs"',
        "add rule ip kube-proxy filter-prerouting-pre-dnat ct state new jump firewall-check",
        "add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check",
        "add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check",
        "add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        "add rule ip kube-proxy nat-postrouting jump masquerading",
        "add rule ip kube-proxy reject-chain reject",
        "add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
        "add rule ip kube-proxy nodeport-endpoints-check ip daddr @nodeport-ips meta l4proto . th dport vmap "
        "@no-endpoint-nodeports",
    ]:
        assert upstream in out, upstream
    # The order of the rules inside each chain is kube-proxy's.
    assert [ln for ln in out if ln.startswith("add rule ip kube-proxy filter-forward ")] == [
        "add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check",
        "add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check",
    ]
    assert [ln for ln in out if ln.startswith("add rule ip kube-proxy services ")] == [
        "add rule ip kube-proxy services ip daddr @cluster-ips ip saddr != 10.0.0.0/8 meta mark set meta mark | "
        '0x00004000 comment "masquerade clusterIP traffic from outside cluster"',
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add rule ip kube-proxy services ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
    ]
    assert [ln for ln in out if ln.startswith("add rule ip kube-proxy masquerading ")] == [
        "add rule ip kube-proxy masquerading meta mark & 0x00004000 != 0x00000000 meta mark set meta mark ^ 0x00004000 "
        "masquerade fully-random",
        "add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr . meta l4proto . th dport "
        "@hairpin-connections masquerade fully-random",
    ]
    # 1.36 has no mark-for-masquerade chain.
    assert not any("mark-for-masquerade" in ln for ln in out)


def test_the_ipv6_table_is_the_skeleton_with_nodeports_on_every_address_but_loopback() -> None:
    out = lines(render_nftables([], [], UPSTREAM_NODE).script)
    assert 'add table ip6 kube-proxy { comment "rules for kube-proxy" ; }' in out
    assert (
        "add rule ip6 kube-proxy services fib daddr type local ip6 daddr != ::1 meta l4proto . th dport vmap @service-nodeports"
    ) in out
    assert (
        "add rule ip6 kube-proxy nodeport-endpoints-check ip6 daddr != ::1 meta l4proto . th dport vmap "
        "@no-endpoint-nodeports" in out
    )
    ip6 = [ln for ln in out if " ip6 " in ln]
    # No IPv6 cluster CIDR, node address or service CIDR: no masquerade rule, no nodeport-ips, no drop.
    assert not any("nodeport-ips" in ln or "saddr !=" in ln or "unallocated" in ln for ln in ip6)
    assert not any(" ip6 " in ln for ln in lines(render_nftables([], [], dataclasses.replace(UPSTREAM_NODE, ipv6=False)).script))


def test_the_tables_are_recreated_in_one_transaction() -> None:
    out = lines(render_nftables([], [], UPSTREAM_NODE).script)
    assert out[0].startswith("add table ip kube-proxy")
    assert out[1] == "delete table ip kube-proxy"
    assert out[2].startswith("add table ip kube-proxy")
    assert "delete table ip6 kube-proxy" in out


def test_nodeports_on_all_addresses_use_fib_instead_of_the_nodeport_ips_set() -> None:
    out = lines(render_nftables([], [], dataclasses.replace(UPSTREAM_NODE, primary_nodeports=False)).script)
    assert (
        "add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
        "vmap @service-nodeports"
    ) in out
    assert not any("nodeport-ips" in ln for ln in out)


def test_136_balances_with_one_dnat_map_and_no_endpoint_chains() -> None:
    ruleset = render_nftables(
        [service("ns4", "svc4", "172.30.0.44")],
        [endpoint_slice("ns4", "svc4", [endpoint("10.180.0.5", node="test-node"), endpoint("10.180.0.4")])],
        UPSTREAM_NODE,
    )
    out = lines(ruleset.script)
    assert [ln for ln in out if ln.startswith("add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 ")] == [
        "add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 2 "
        "map { 0 : 10.180.0.4 . 80, 1 : 10.180.0.5 . 80 }"
    ]
    assert "add element ip kube-proxy service-ips { 172.30.0.44 . tcp . 80 : goto service-LAUZTJTB-ns4/svc4/tcp/p80 }" in out
    assert "add element ip kube-proxy cluster-ips { 172.30.0.44 }" in out
    # Only the endpoint on this node can be hairpinned, so only it is in the set.
    assert [ln for ln in out if ln.startswith("add element ip kube-proxy hairpin-connections")] == [
        "add element ip kube-proxy hairpin-connections { 10.180.0.5 . 10.180.0.5 . tcp . 80 }"
    ]
    assert not any("kube-proxy endpoint-" in ln or "goto endpoint-" in ln for ln in out)
    assert ruleset.service_chains == ("service-LAUZTJTB-ns4/svc4/tcp/p80",)


def test_single_endpoint_layout_drops_the_map_for_one_endpoint_only() -> None:
    out = lines(
        render_nftables(
            [service("ns1", "svc1", "172.30.0.41"), service("ns4", "svc4", "172.30.0.44")],
            [
                endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")]),
                endpoint_slice("ns4", "svc4", [endpoint("10.180.0.5"), endpoint("10.180.0.4")]),
            ],
            SINGLE_NODE,
        ).script
    )
    assert "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat to 10.180.0.1:80" in out
    assert (
        "add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 2 "
        "map { 0 : 10.180.0.4 . 80, 1 : 10.180.0.5 . 80 }"
    ) in out
    # The 1.36 layout keeps the map even for one endpoint.
    assert (
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat ip to numgen random mod 1 "
        "map { 0 : 10.180.0.1 . 80 }"
    ) in lines(
        render_nftables(
            [service("ns1", "svc1", "172.30.0.41")], [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])], UPSTREAM_NODE
        ).script
    )


def test_endpoint_chains_layout_is_the_older_upstream_one() -> None:
    out = lines(
        render_nftables(
            [service("ns1", "svc1", "172.30.0.41")],
            [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])],
            OLD_NODE,
        ).script
    )
    for upstream in [
        "add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 "
        "jump mark-for-masquerade",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto "
        "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }",
        "add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
        "add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade",
        "add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80",
        "add rule ip kube-proxy mark-for-masquerade meta mark set meta mark | 0x00004000",
        "add rule ip kube-proxy masquerading meta mark & 0x00004000 == 0x00000000 return",
        "add rule ip kube-proxy masquerading meta mark set meta mark ^ 0x00004000",
        "add rule ip kube-proxy masquerading masquerade fully-random",
        "add element ip kube-proxy cluster-ips { 172.30.0.41 }",
        "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }",
    ]:
        assert upstream in out, upstream
    assert not any("hairpin-connections" in ln for ln in out)
    assert not any("masquerade clusterIP traffic from outside cluster" in ln for ln in out)


def test_endpoint_chains_layout_shares_one_numgen_vmap() -> None:
    out = lines(
        render_nftables(
            [service("ns4", "svc4", "172.30.0.44")],
            [endpoint_slice("ns4", "svc4", [endpoint("10.180.0.5", node="test-node"), endpoint("10.180.0.4")])],
            OLD_NODE,
        ).script
    )
    assert (
        "add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto "
        "endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80, 1 : goto "
        "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }"
    ) in out


def test_node_port_service_is_written_as_upstream() -> None:
    args = ([service("ns3", "svc3", "172.30.0.43", node_port=3003)], [endpoint_slice("ns3", "svc3", [endpoint("10.180.0.3")])])
    out = lines(render_nftables(*args, UPSTREAM_NODE).script)
    for upstream in [
        "add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80",
        "add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 meta mark set meta mark | 0x00004000",
        "add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80",
        "add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }",
    ]:
        assert upstream in out, upstream
    old = lines(render_nftables(*args, OLD_NODE).script)
    assert "add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade" in old


def test_client_ip_affinity_keeps_endpoint_chains_in_every_layout() -> None:
    args = (
        [service("ns5", "svc5", "172.30.0.45", affinity_seconds=10800)],
        [endpoint_slice("ns5", "svc5", [endpoint("10.180.0.3")])],
    )
    for node in (UPSTREAM_NODE, OLD_NODE, SINGLE_NODE):
        out = lines(render_nftables(*args, node).script)
        for upstream in [
            "add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; "
            "flags dynamic,timeout ; timeout 10800s ; }",
            "add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr "
            "@affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80",
            "add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update "
            "@affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }",
            "add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80",
        ]:
            assert upstream in out, (node.nft_layout, upstream)
        hairpin_mark = (
            "add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 "
            "jump mark-for-masquerade"
        )
        # Only the older layout marks hairpin traffic in the endpoint chain; the others use the set.
        assert (hairpin_mark in out) == (node.nft_layout == "endpoint-chains")


def test_service_without_endpoints_goes_to_the_reject_chain_as_upstream() -> None:
    for node in (UPSTREAM_NODE, OLD_NODE, SINGLE_NODE):
        ruleset = render_nftables([service("ns6", "svc6", "172.30.0.46")], [], node)
        out = lines(ruleset.script)
        assert "add element ip kube-proxy cluster-ips { 172.30.0.46 }" in out
        assert (
            'add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : goto reject-chain }'
        ) in out
        assert ruleset.service_chains == ()
