"""The agent's egress NAT walk over nat POSTROUTING, pure: iptables-save text and `nft -j` documents
in, "translated" / "untranslated" / "unknown" with the deciding rules out.

Layouts: upstream kube-proxy v1.36's own postrouting rules (recorded, tests/unit/fixtures/
kube-proxy-v1.36.2, see its README), with the CNI masquerade written the way flannel (iptables and
nftables) and Calico (iptables, with its IPAM-pool ipsets) write theirs, and the lab's own shapes
(lab/outside.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nodeagent.checks.egress import (
    TRANSLATED,
    UNKNOWN,
    UNTRANSLATED,
    EgressFlow,
    combine,
    nft_egress,
    parse_nft_ruleset,
    sets_matched,
    walk_iptables,
)
from nodeagent.checks.iptables_save import parse_iptables_save

FIXTURES = Path(__file__).parent / "fixtures" / "kube-proxy-v1.36.2"
POD, OUTSIDE = "10.244.1.5", "203.0.113.10"
FLOW = EgressFlow(POD, OUTSIDE, "TCP", 80, "eth0")

FLANNEL = """\
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
"""
CALICO_IPSETS = "\n".join(
    (
        ":cali-POSTROUTING - [0:0]",
        ":cali-fip-snat - [0:0]",
        ":cali-nat-outgoing - [0:0]",
        '-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING',
        '-A cali-POSTROUTING -m comment --comment "cali:Z-c7XtVd2Bq7s_hA" -j cali-fip-snat',
        '-A cali-POSTROUTING -m comment --comment "cali:nYKhEzDlr11Jccal" -j cali-nat-outgoing',
        '-A cali-POSTROUTING -o vxlan.calico -m comment --comment "cali:e9dnSgSVNmIcpVhP" -m addrtype ! --src-type LOCAL'
        " --limit-iface-out -m addrtype --src-type LOCAL -j MASQUERADE --random-fully",
        '-A cali-nat-outgoing -m comment --comment "cali:flqWnvo8yq4ULQLa" -m set --match-set cali40masq-ipam-pools src'
        " -m set ! --match-set cali40all-ipam-pools dst -j MASQUERADE --random-fully",
    )
)
CALICO_LAB = """\
:cali-POSTROUTING - [0:0]
:cali-nat-outgoing - [0:0]
-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING
-A cali-POSTROUTING -j cali-nat-outgoing
-A cali-nat-outgoing -s 10.244.0.0/16 ! -d 10.244.0.0/16 -m comment --comment "cali:nat-outgoing" -j MASQUERADE --random-fully
"""
PLAIN_SNAT = """\
-A POSTROUTING -s 10.244.0.0/16 -o eth1 -j SNAT --to-source 192.0.2.7
"""


def kube_proxy_nat(extra: str) -> str:
    """Upstream kube-proxy's recorded nat table with a CNI's chains and rules added before COMMIT."""
    text = (FIXTURES / "node-1.nat.iptables-save.txt").read_text()
    declarations = "".join(line + "\n" for line in extra.splitlines() if line.startswith(":"))
    rules = "".join(line + "\n" for line in extra.splitlines() if line.startswith("-A"))
    head, _, tail = text.partition(":KUBE-POSTROUTING")
    text = head + declarations + ":KUBE-POSTROUTING" + tail
    return text.replace("\nCOMMIT", "\n" + rules.rstrip("\n") + "\nCOMMIT", 1)


def iptables(extra: str, flow: EgressFlow = FLOW) -> tuple[str, Any]:
    walk, decided = walk_iptables(parse_iptables_save(kube_proxy_nat(extra)), flow)
    found = combine(walk, decided, None, None, flow.out_interface or "")
    return found.verdict, found


def test_flannel_masquerades_a_pod_packet_to_the_outside() -> None:
    verdict, found = iptables(FLANNEL)
    assert verdict == TRANSLATED
    assert found.rules[-1].chain == "FLANNEL-POSTRTG" and "! -d 224.0.0.0/4" in found.rules[-1].rule
    assert "nat/KUBE-POSTROUTING" in found.chains, "kube-proxy's chain is walked too (and returns: no mark)"


def test_flannel_leaves_pod_to_pod_traffic_alone() -> None:
    verdict, found = iptables(FLANNEL, EgressFlow(POD, "10.244.2.7", "TCP", 8080, "flannel.1"))
    assert verdict == UNTRANSLATED
    assert found.rules[-1].target == "RETURN" and "-d 10.244.0.0/16" in found.rules[-1].rule


def test_a_flushed_flannel_chain_leaves_the_pod_address() -> None:
    flushed = "\n".join(line for line in FLANNEL.splitlines() if not line.startswith("-A FLANNEL-POSTRTG"))
    verdict, found = iptables(flushed)
    assert verdict == UNTRANSLATED and not found.possible
    assert found.chains == ("nat/POSTROUTING", "nat/KUBE-POSTROUTING", "nat/FLANNEL-POSTRTG")


def test_kube_proxy_alone_masquerades_only_marked_service_traffic() -> None:
    assert iptables("")[0] == UNTRANSLATED


def test_calico_ipset_masquerade_cannot_be_settled_from_the_flow() -> None:
    verdict, found = iptables(CALICO_IPSETS)
    assert verdict == UNKNOWN
    assert [r.chain for r in found.possible] == ["cali-nat-outgoing"], "the vxlan.calico rule needs -o vxlan.calico"


def test_calico_ipset_masquerade_decides_once_the_sets_members_are_known() -> None:
    pools = {"cali40masq-ipam-pools": ("10.244.0.0/16",), "cali40all-ipam-pools": ("10.244.0.0/16",)}
    verdict, found = iptables(CALICO_IPSETS, EgressFlow(POD, OUTSIDE, "TCP", 80, "eth0", pools))
    assert verdict == TRANSLATED and found.rules[-1].chain == "cali-nat-outgoing"
    assert iptables(CALICO_IPSETS, EgressFlow(POD, "10.244.2.7", "TCP", 80, "vxlan.calico", pools))[0] == UNTRANSLATED
    no_nat_pool = {**pools, "cali40masq-ipam-pools": ()}  # an IP pool with natOutgoing: false
    assert iptables(CALICO_IPSETS, EgressFlow(POD, OUTSIDE, "TCP", 80, "eth0", no_nat_pool))[0] == UNTRANSLATED


def test_the_sets_the_nat_rules_match_on_are_named_for_reading() -> None:
    assert sets_matched(parse_iptables_save(kube_proxy_nat(CALICO_IPSETS))) == ("cali40masq-ipam-pools", "cali40all-ipam-pools")


def test_calico_lab_layout_masquerades() -> None:
    verdict, found = iptables(CALICO_LAB)
    assert verdict == TRANSLATED and found.rules[-1].chain == "cali-nat-outgoing"


def test_an_out_interface_match_uses_the_route_out() -> None:
    assert iptables(PLAIN_SNAT, EgressFlow(POD, OUTSIDE, "TCP", 80, "eth1"))[0] == TRANSLATED
    assert iptables(PLAIN_SNAT, EgressFlow(POD, OUTSIDE, "TCP", 80, "eth0"))[0] == UNTRANSLATED
    assert iptables(PLAIN_SNAT, EgressFlow(POD, OUTSIDE, "TCP", 80, None))[0] == UNKNOWN


# ------------------------------------------------------------------ nftables


def _chain(table: str, name: str, **base: Any) -> dict[str, Any]:
    return {"chain": {"family": "ip", "table": table, "name": name, **base}}


def _rule(table: str, chain: str, *expr: dict[str, Any]) -> dict[str, Any]:
    return {"rule": {"family": "ip", "table": table, "chain": chain, "expr": list(expr)}}


def _match(field: str, op: str, right: Any) -> dict[str, Any]:
    return {"match": {"op": op, "left": {"payload": {"protocol": "ip", "field": field}}, "right": right}}


def _prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def flannel_nft(*, flushed: bool = False) -> list[dict[str, Any]]:
    """flannel's nftables mode: table `ip flannel-ipv4`, chain postrtg on the srcnat hook."""
    t = "flannel-ipv4"
    items = [_chain(t, "postrtg", type="nat", hook="postrouting", prio=100, policy="accept")]
    if flushed:
        return items
    mark = {"match": {"op": "==", "left": {"meta": {"key": "mark"}}, "right": 16384}}
    cluster, node = _prefix("10.244.0.0", 16), _prefix("10.244.1.0", 24)
    return [
        *items,
        _rule(t, "postrtg", mark, {"counter": None}, {"return": None}),
        _rule(t, "postrtg", _match("saddr", "==", node), _match("daddr", "==", cluster), {"return": None}),
        _rule(t, "postrtg", _match("saddr", "==", cluster), _match("daddr", "==", node), {"return": None}),
        _rule(t, "postrtg", _match("saddr", "!=", cluster), _match("daddr", "==", node), {"return": None}),
        _rule(
            t,
            "postrtg",
            _match("saddr", "==", cluster),
            _match("daddr", "!=", _prefix("224.0.0.0", 4)),
            {"masquerade": {"flags": "fully-random"}},
        ),
    ]


def nft(items: list[dict[str, Any]], flow: EgressFlow = FLOW) -> Any:
    kube_proxy = json.loads((FIXTURES / "node-1.ip-kube-proxy.json").read_text())["nftables"]
    ruleset = parse_nft_ruleset({"nftables": [*kube_proxy, *items]})
    walk, decided = nft_egress(ruleset, flow)
    return combine(None, None, walk, decided, flow.out_interface or "")


def test_nft_flannel_masquerades_a_pod_packet_to_the_outside() -> None:
    found = nft(flannel_nft())
    assert found.verdict == TRANSLATED
    assert found.rules[-1].table == "ip flannel-ipv4" and "masquerade" in found.rules[-1].rule


def test_nft_flannel_returns_pod_to_pod_traffic() -> None:
    assert nft(flannel_nft(), EgressFlow(POD, "10.244.2.7", "TCP", 8080, "flannel.1")).verdict == UNTRANSLATED


def test_nft_without_the_cni_chain_rules_nothing_translates() -> None:
    found = nft(flannel_nft(flushed=True))
    assert found.verdict == UNTRANSLATED and not found.possible
    assert "ip kube-proxy/masquerading" in found.chains, "kube-proxy's nat-postrouting is walked (no mark: no masquerade)"


def test_nft_named_sets_are_looked_up() -> None:
    t = "masq"
    items = [
        {
            "set": {
                "family": "ip",
                "table": t,
                "name": "pods",
                "type": "ipv4_addr",
                "flags": ["interval"],
                "elem": [_prefix("10.244.0.0", 16)],
            }
        },
        _chain(t, "post", type="nat", hook="postrouting", prio=110),
        _rule(t, "post", _match("saddr", "==", "@pods"), {"masquerade": None}),
    ]
    assert nft(items).verdict == TRANSLATED
    assert nft(items, EgressFlow("192.168.9.9", OUTSIDE, "TCP", 80, "eth0")).verdict == UNTRANSLATED


def test_nft_tables_iptables_nft_owns_are_left_to_iptables_save() -> None:
    items = [
        _chain("nat", "POSTROUTING", type="nat", hook="postrouting", prio=100),
        _rule("nat", "POSTROUTING", {"xt": {"type": "target", "name": "MASQUERADE"}}),
    ]
    ruleset = parse_nft_ruleset({"nftables": items})
    assert nft_egress(ruleset, FLOW, frozenset({"nat"}))[0].chains == []
    walk, _ = nft_egress(ruleset, FLOW)
    assert walk.chains == ["ip nat/POSTROUTING"]
