"""The iptables renderer writes what kube-proxy writes.

Lines quoted from kube-proxy's pkg/proxy/iptables/proxier_test.go use its conventions: pod CIDR
10.0.0.0/8, ClusterIPs 172.30.0.4N, endpoints 10.180.0.N:80, masquerade mark 0x4000.
"""

from __future__ import annotations

import dataclasses

from lab.kubeproxy.iptables import JUMPS, nat_chains_from_save, probability, render_iptables
from lab.kubeproxy.model import NodeContext

from .kubeproxy_objects import endpoint, endpoint_slice, service

UPSTREAM_NODE = NodeContext(node_name="test-node", node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8")


def tables(text: str) -> dict[str, list[str]]:
    """Split restore input into {"filter": lines, "nat": lines} (without the *table / COMMIT lines)."""
    out: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line.startswith("*"):
            current = out.setdefault(line[1:], [])
        elif line != "COMMIT":
            current.append(line)
    return out


def test_single_endpoint_cluster_ip_service_is_written_as_upstream() -> None:
    text = render_iptables(
        [service("ns1", "svc1", "172.30.0.41")],
        [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])],
        UPSTREAM_NODE,
    ).restore_input
    nat = tables(text)["nat"]
    for upstream in [
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 '
        "--dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O",
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ",
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ',
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ",
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
    ]:
        assert upstream in nat
    assert ":KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]" in nat
    assert ":KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]" in nat
    # The NodePort tail-call must stay the last rule of KUBE-SERVICES.
    services_rules = [ln for ln in nat if ln.startswith("-A KUBE-SERVICES")]
    assert "must be the last rule in this chain" in services_rules[-1]
    # kube-proxy's default --iptables-localhost-nodeports: NodePorts also answer on 127.0.0.1.
    assert services_rules[-1].endswith("-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS")


def test_three_endpoints_get_kube_proxys_probabilities_and_none_on_the_last() -> None:
    text = render_iptables(
        [service("ns1", "web", "10.96.0.20", port=8080, port_name="http")],
        [
            endpoint_slice(
                "ns1",
                "web",
                [endpoint("10.244.1.4"), endpoint("10.244.1.2"), endpoint("10.244.1.3")],
                port=8080,
                port_name="http",
            )
        ],
        UPSTREAM_NODE,
    ).restore_input
    svc_rules = [ln for ln in tables(text)["nat"] if ln.startswith("-A KUBE-SVC-") and "->" in ln]
    assert len(svc_rules) == 3
    # Endpoints are ordered by their "ip:port" string, as kube-proxy sorts them.
    assert "10.244.1.2:8080" in svc_rules[0] and "--probability 0.3333333333 " in svc_rules[0]
    assert "10.244.1.3:8080" in svc_rules[1] and "--probability 0.5000000000 " in svc_rules[1]
    assert "10.244.1.4:8080" in svc_rules[2] and "statistic" not in svc_rules[2]
    assert probability(3) == "0.3333333333"
    assert probability(2) == "0.5000000000"


def test_two_endpoints_match_upstream_statistic_line() -> None:
    text = render_iptables(
        [service("ns4", "svc4", "172.30.0.44")],
        [endpoint_slice("ns4", "svc4", [endpoint("10.180.0.4"), endpoint("10.180.0.5", node="test-node")])],
        UPSTREAM_NODE,
    ).restore_input
    nat = tables(text)["nat"]
    assert (
        '-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic '
        "--mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC"
    ) in nat
    assert '-A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ' in nat


def test_service_without_ready_endpoints_is_rejected_in_the_filter_table() -> None:
    text = render_iptables(
        [service("ns6", "svc6", "172.30.0.46")],
        [endpoint_slice("ns6", "svc6", [endpoint("10.180.0.9", ready=False, serving=False)])],
        UPSTREAM_NODE,
    ).restore_input
    parsed = tables(text)
    assert (
        '-A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT'
    ) in parsed["filter"]
    assert not any("172.30.0.46" in ln for ln in parsed["nat"])
    assert not any(ln.startswith(":KUBE-SEP-") for ln in parsed["nat"])


def test_filter_table_has_kube_proxys_fixed_chains_and_forward_rules() -> None:
    filt = tables(render_iptables([], [], UPSTREAM_NODE).restore_input)["filter"]
    for chain in ("KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"):
        assert f":{chain} - [0:0]" in filt
    assert filt[-3:] == [
        "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT',
        '-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack '
        "--ctstate RELATED,ESTABLISHED -j ACCEPT",
    ]


def test_localhost_nodeports_bring_the_kube_firewall_martian_drop_and_route_localnet() -> None:
    ruleset = render_iptables([], [], UPSTREAM_NODE)
    filt = tables(ruleset.restore_input)["filter"]
    assert ":KUBE-FIREWALL - [0:0]" in filt
    assert (
        '-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 '
        "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
    ) in filt
    assert ruleset.sysctls == (("net.ipv4.conf.all.route_localnet", "1"),)
    # Inserted last at the top of INPUT and OUTPUT, the KUBE-FIREWALL jumps end up first there.
    assert [(j.chain, j.rule) for j in ruleset.jumps[-2:]] == [("INPUT", ("-j", "KUBE-FIREWALL")),
                                                              ("OUTPUT", ("-j", "KUBE-FIREWALL"))]  # fmt: skip
    assert ruleset.canary_tables == ("mangle", "nat", "filter")
    without = render_iptables([], [], dataclasses.replace(UPSTREAM_NODE, localhost_nodeports=False))
    assert not any(ln.startswith("-A KUBE-FIREWALL") for ln in tables(without.restore_input)["filter"])
    assert without.sysctls == ()
    assert tables(without.restore_input)["nat"][-1].endswith("--dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS")


def test_the_invalid_state_drop_is_counted_when_the_kernel_has_nfacct() -> None:
    node = dataclasses.replace(UPSTREAM_NODE, nfacct=True)
    ruleset = render_iptables([], [], node)
    drop = "-A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP"
    assert drop in tables(ruleset.restore_input)["filter"]
    assert ruleset.restore_input6 is not None and drop in tables(ruleset.restore_input6)["filter"]


def test_the_ipv6_side_is_the_skeleton_with_nodeports_never_on_loopback() -> None:
    ruleset = render_iptables([service("ns1", "svc1", "172.30.0.41")], [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])],
                              UPSTREAM_NODE)  # fmt: skip
    assert ruleset.restore_input6 is not None
    six = tables(ruleset.restore_input6)
    assert [ln for ln in six["nat"] if ln.startswith("-A KUBE-SERVICES")] == [
        '-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this '
        'chain" -m addrtype --dst-type LOCAL ! -d ::1/128 -j KUBE-NODEPORTS'
    ]
    assert ":KUBE-FIREWALL - [0:0]" in six["filter"] and not any(ln.startswith("-A KUBE-FIREWALL") for ln in six["filter"])
    assert not any("KUBE-SVC-" in ln or "KUBE-SEP-" in ln for ln in ruleset.restore_input6.splitlines())
    assert render_iptables([], [], dataclasses.replace(UPSTREAM_NODE, ipv6=False)).restore_input6 is None


def test_node_port_service_goes_through_the_ext_chain_as_upstream() -> None:
    text = render_iptables(
        [service("ns3", "svc3", "172.30.0.43", node_port=3003)],
        [endpoint_slice("ns3", "svc3", [endpoint("10.180.0.3")])],
        UPSTREAM_NODE,
    ).restore_input
    nat = tables(text)["nat"]
    for upstream in [
        "-A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK",
        '-A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external '
        'destinations" -j KUBE-MARK-MASQ',
        "-A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK",
        '-A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP',
    ]:
        assert upstream in nat


def test_node_port_without_endpoints_is_rejected_for_local_destinations() -> None:
    filt = tables(render_iptables([service("ns3", "svc3", "172.30.0.43", node_port=3003)], [], UPSTREAM_NODE).restore_input)[
        "filter"
    ]
    assert (
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns3/svc3:p80 has no endpoints" -m addrtype '
        "--dst-type LOCAL -m tcp -p tcp --dport 3003 -j REJECT"
    ) in filt


def test_client_ip_affinity_uses_recent_match_per_endpoint() -> None:
    text = render_iptables(
        [service("ns5", "svc5", "172.30.0.45", affinity_seconds=10800)],
        [endpoint_slice("ns5", "svc5", [endpoint("10.180.0.3")])],
        UPSTREAM_NODE,
    ).restore_input
    nat = tables(text)["nat"]
    sep = "KUBE-SEP-I77PXRDZVX7PMWMN"
    assert (
        f'-A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent '
        f"--name {sep} --rcheck --seconds 10800 --reap -j {sep}"
    ) in nat
    assert (
        f"-A {sep} -m comment --comment ns5/svc5:p80 -m recent --name {sep} --set -m tcp -p tcp -j DNAT "
        "--to-destination 10.180.0.3:80"
    ) in nat
    # The affinity check comes before the load-balancing rule.
    svc_rules = [ln for ln in nat if ln.startswith("-A KUBE-SVC-NUKIZ6OKUXPJNT4C") and "->" in ln]
    assert "--rcheck" in svc_rules[0] and "--rcheck" not in svc_rules[1]


def test_only_ready_endpoints_with_the_matching_port_name_are_used() -> None:
    slices = [
        endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1"), endpoint("10.180.0.2", ready=False), endpoint("fd00::1")]),
        endpoint_slice("ns1", "svc1", [endpoint("10.180.0.7")], port=9090, port_name="metrics", suffix="x2"),
        endpoint_slice("ns1", "other", [endpoint("10.180.0.8")]),
    ]
    nat = tables(render_iptables([service("ns1", "svc1", "172.30.0.41")], slices, UPSTREAM_NODE).restore_input)["nat"]
    dnat = [ln for ln in nat if "DNAT" in ln]
    assert dnat == [
        "-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80"
    ]


def test_serving_terminating_endpoints_are_the_fallback_when_none_is_ready() -> None:
    slices = [
        endpoint_slice(
            "ns1",
            "svc1",
            [
                endpoint("10.180.0.1", ready=False, serving=True, terminating=True),
                endpoint("10.180.0.2", ready=False, serving=False, terminating=True),
            ],
        )
    ]
    nat = tables(render_iptables([service("ns1", "svc1", "172.30.0.41")], slices, UPSTREAM_NODE).restore_input)["nat"]
    assert [ln.split()[-1] for ln in nat if "DNAT" in ln] == ["10.180.0.1:80"]


def test_headless_services_are_skipped() -> None:
    text = render_iptables(
        [service("ns1", "db", "None")], [endpoint_slice("ns1", "db", [endpoint("10.1.1.1")])], UPSTREAM_NODE
    ).restore_input
    assert "ns1/db" not in text


def test_stale_service_chains_are_flushed_and_deleted_but_foreign_chains_are_kept() -> None:
    ruleset = render_iptables(
        [service("ns1", "svc1", "172.30.0.41")],
        [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])],
        UPSTREAM_NODE,
        existing_nat_chains=[
            "KUBE-SEP-OLDOLDOLDOLDOLD",
            "KUBE-SEP-SXIVWICOYRO3J4NJ",
            "KUBE-SERVICES",
            "CNI-HOSTPORT-DNAT",
            "PREROUTING",
        ],
    )
    nat = tables(ruleset.restore_input)["nat"]
    assert "-X KUBE-SEP-OLDOLDOLDOLDOLD" in nat
    assert ":KUBE-SEP-OLDOLDOLDOLDOLD - [0:0]" in nat
    assert ruleset.deleted_chains == ("KUBE-SEP-OLDOLDOLDOLDOLD",)
    assert not any(ln.startswith("-X") and ("SXIVWICOYRO3J4NJ" in ln or "CNI" in ln or "SERVICES" in ln) for ln in nat)


def test_rendering_twice_gives_the_same_text() -> None:
    args = (
        [service("ns1", "svc1", "172.30.0.41", node_port=30080)],
        [endpoint_slice("ns1", "svc1", [endpoint("10.180.0.2"), endpoint("10.180.0.1")])],
        UPSTREAM_NODE,
    )
    assert render_iptables(*args).restore_input == render_iptables(*args).restore_input


def test_jumps_from_builtin_chains_are_kube_proxys() -> None:
    by_target = {(j.table, j.chain, j.rule[-1]) for j in JUMPS}
    assert ("nat", "PREROUTING", "KUBE-SERVICES") in by_target
    assert ("nat", "OUTPUT", "KUBE-SERVICES") in by_target
    assert ("nat", "POSTROUTING", "KUBE-POSTROUTING") in by_target
    assert ("filter", "FORWARD", "KUBE-FORWARD") in by_target
    assert ("filter", "FORWARD", "KUBE-SERVICES") in by_target
    assert ("filter", "INPUT", "KUBE-EXTERNAL-SERVICES") in by_target
    prerouting = next(j for j in JUMPS if j.chain == "PREROUTING")
    assert prerouting.rule == ("-m", "comment", "--comment", "kubernetes service portals", "-j", "KUBE-SERVICES")


def test_nat_chains_are_read_from_iptables_save_output() -> None:
    save = "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SEP-ABC - [0:0]\n-A PREROUTING -j KUBE-SERVICES\nCOMMIT\n"
    assert nat_chains_from_save(save) == {"PREROUTING", "KUBE-SEP-ABC"}


def test_malformed_objects_get_no_rules_and_do_not_stop_the_others() -> None:
    broken_service = {"metadata": {"namespace": "ns1"}, "spec": {"clusterIP": "172.30.0.49", "ports": [{}]}}
    broken_slice = {
        "metadata": {"namespace": "ns1", "name": "x", "labels": {"kubernetes.io/service-name": "svc1"}},
        "endpoints": "not-a-list",
        "ports": [{"name": "p80", "port": 80}],
    }
    text = render_iptables(
        [broken_service, service("ns1", "svc1", "172.30.0.41")],
        [broken_slice, endpoint_slice("ns1", "svc1", [endpoint("10.180.0.1")])],
        UPSTREAM_NODE,
    ).restore_input
    assert "172.30.0.49" not in text
    assert "--to-destination 10.180.0.1:80" in text
