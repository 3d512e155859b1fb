"""The nftables renderer writes what kube-proxy's nftables mode writes.

Quoted lines come from kube-proxy's pkg/proxy/nftables/proxier_test.go (baseRules and
TestOverallNFTablesRules): pod CIDR 10.0.0.0/8, ClusterIPs 172.30.0.4N, endpoints 10.180.0.N:80.
"""

from __future__ import annotations

from lab.kubeproxy.model import NodeContext
from lab.kubeproxy.nftables import render_nftables

from .test_kubeproxy_objects import endpoint, endpoint_slice, service

UPSTREAM_NODE = NodeContext(node_name="test-node", node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8",
                            service_cidrs=("172.30.0.0/16",))


def lines(script: str) -> list[str]:
    return script.splitlines()


def test_base_objects_are_kube_proxys() -> None:
    out = lines(render_nftables([], [], UPSTREAM_NODE).script)
    for upstream in [
        'add table ip kube-proxy { comment "rules for kube-proxy" ; }',
        'add set ip kube-proxy cluster-ips { type ipv4_addr ; comment "Active ClusterIPs" ; }',
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
        "add rule ip kube-proxy filter-forward ct state new jump service-endpoints-check",
        "add rule ip kube-proxy filter-forward ct state new jump cluster-ips-check",
        "add rule ip kube-proxy filter-input ct state new jump nodeport-endpoints-check",
        "add rule ip kube-proxy filter-input ct state new jump service-endpoints-check",
        "add rule ip kube-proxy filter-output ct state new jump service-endpoints-check",
        "add rule ip kube-proxy filter-output-pre-dnat ct state new jump firewall-check",
        "add rule ip kube-proxy filter-output ct state new jump cluster-ips-check",
        "add rule ip kube-proxy firewall-check ip daddr . meta l4proto . th dport vmap @firewall-ips",
        "add rule ip kube-proxy mark-for-masquerade mark set mark or 0x4000",
        "add rule ip kube-proxy masquerading mark and 0x4000 == 0 return",
        "add rule ip kube-proxy masquerading mark set mark xor 0x4000",
        "add rule ip kube-proxy masquerading masquerade fully-random",
        "add rule ip kube-proxy nat-output jump services",
        "add rule ip kube-proxy nat-postrouting jump masquerading",
        "add rule ip kube-proxy nat-prerouting jump services",
        "add rule ip kube-proxy reject-chain reject",
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips",
        "add rule ip kube-proxy service-endpoints-check ip daddr . meta l4proto . th dport vmap @no-endpoint-services",
    ]:
        assert upstream in out, upstream
    # All NodePort addresses accepted (kube-proxy's default): the fib local match, no nodeport-ips set.
    assert ("add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport "
            "vmap @service-nodeports") in out
    assert not any("nodeport-ips" in ln for ln in out)


def test_the_table_is_recreated_in_one_transaction() -> None:
    out = lines(render_nftables([], [], UPSTREAM_NODE).script)
    assert out[0].startswith("add table ip kube-proxy")
    assert out[1] == "delete table ip kube-proxy"
    assert out[2].startswith("add table ip kube-proxy")


def test_cluster_ip_service_is_written_as_upstream() -> None:
    out = lines(render_nftables(
        [service("ns1", "svc1", "172.30.0.41")],
        [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])],
        UPSTREAM_NODE,
    ).script)
    for upstream in [
        "add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 "
        "jump mark-for-masquerade",
        "add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto "
        "endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }",
        "add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80",
        "add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 "
        "jump mark-for-masquerade",
        "add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp "
        "dnat to 10.180.0.1:80",
        "add element ip kube-proxy cluster-ips { 172.30.0.41 }",
        "add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }",
    ]:
        assert upstream in out, upstream


def test_two_endpoints_share_one_numgen_vmap_as_upstream() -> None:
    out = lines(render_nftables(
        [service("ns4", "svc4", "172.30.0.44")],
        [endpoint_slice("ns4", "svc4", [endpoint("10.180.0.5", node="test-node"), endpoint("10.180.0.4")])],
        UPSTREAM_NODE,
    ).script)
    assert (
        "add rule ip kube-proxy service-LAUZTJTB-ns4/svc4/tcp/p80 numgen random mod 2 vmap { 0 : goto "
        "endpoint-UNZV3OEC-ns4/svc4/tcp/p80__10.180.0.4/80 , 1 : goto "
        "endpoint-5RFCDDV7-ns4/svc4/tcp/p80__10.180.0.5/80 }"
    ) in out


def test_node_port_service_is_written_as_upstream() -> None:
    out = lines(render_nftables(
        [service("ns3", "svc3", "172.30.0.43", node_port=3003)],
        [endpoint_slice("ns3", "svc3", [endpoint("10.180.0.3")])],
        UPSTREAM_NODE,
    ).script)
    for upstream in [
        "add chain ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80",
        "add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 jump mark-for-masquerade",
        "add rule ip kube-proxy external-4AT6LBPK-ns3/svc3/tcp/p80 goto service-4AT6LBPK-ns3/svc3/tcp/p80",
        "add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-4AT6LBPK-ns3/svc3/tcp/p80 }",
    ]:
        assert upstream in out, upstream


def test_client_ip_affinity_is_written_as_upstream() -> None:
    out = lines(render_nftables(
        [service("ns5", "svc5", "172.30.0.45", affinity_seconds=10800)],
        [endpoint_slice("ns5", "svc5", [endpoint("10.180.0.3")])],
        UPSTREAM_NODE,
    ).script)
    for upstream in [
        "add set ip kube-proxy affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { type ipv4_addr ; "
        "flags dynamic,timeout ; timeout 10800s ; }",
        "add rule ip kube-proxy service-HVFWP5L3-ns5/svc5/tcp/p80 ip saddr "
        "@affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 goto endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80",
        "add rule ip kube-proxy endpoint-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 update "
        "@affinity-GTK6MW7G-ns5/svc5/tcp/p80__10.180.0.3/80 { ip saddr }",
    ]:
        assert upstream in out, upstream


def test_service_without_endpoints_goes_to_the_reject_chain_as_upstream() -> None:
    ruleset = render_nftables([service("ns6", "svc6", "172.30.0.46")], [], UPSTREAM_NODE)
    out = lines(ruleset.script)
    assert "add element ip kube-proxy cluster-ips { 172.30.0.46 }" in out
    assert ('add element ip kube-proxy no-endpoint-services { 172.30.0.46 . tcp . 80 comment "ns6/svc6:p80" : '
            "goto reject-chain }") in out
    assert ruleset.service_chains == ()
