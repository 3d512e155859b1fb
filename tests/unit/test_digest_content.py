"""Building a digest from hand-made sweeps and diffing it against the previous digest's stored JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.digest.content import build_digest, service_states
from bot.digest.models import (
    Change,
    ConntrackUsage,
    Digest,
    HistorySummary,
    LinkMtu,
    NodeSweep,
    PodMtuSample,
    ProgrammedServicePort,
    Recurrence,
    SectionName,
    ServicePortState,
    ServiceState,
    Sweep,
    UnresolvedInvestigation,
)

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
FLANNEL = (LinkMtu("flannel.1", 1450, "vxlan"),)
CNI0 = (LinkMtu("cni0", 1450, "bridge"),)
API = ServiceState(
    "shop", "api", "10.96.0.20", "ClusterIP", {"app": "api"}, (ServicePortState("http", 80, "TCP", ("10.244.1.5:8080",)),)
)
API_NAT = ProgrammedServicePort("10.96.0.20", 80, "TCP", "shop/api:http", ("10.244.1.5:8080",))


def node(name: str, count: int = 100, limit: int = 262144, **changes: Any) -> NodeSweep:
    fields: dict[str, Any] = {
        "conntrack": ConntrackUsage(count, limit),
        "ip_forward": True,
        "forward_policy": "ACCEPT",
        "proxy_mode": "iptables",
        "bridges": CNI0,
        "bridge_ports": (LinkMtu("veth1", 1450, "veth", "cni0"),),
        "overlays": FLANNEL,
        "nat": (API_NAT,),
    }
    fields.update(changes)
    return NodeSweep(name, True, **fields)


def sweep(
    *nodes: NodeSweep, services: tuple[ServiceState, ...] = (API,), pods: tuple[PodMtuSample, ...] = (), at: datetime = T0
) -> Sweep:
    return Sweep("lab", at, nodes, services, pods, pods_total=len(pods))


def stored(digest: Digest) -> dict[str, Any]:
    """What DigestRun.content holds after a JSON round trip through the database."""
    loaded: dict[str, Any] = json.loads(json.dumps(digest.as_json()))
    return loaded


def problems(digest: Digest, name: SectionName) -> dict[str, Change | None]:
    return {item.key: item.change for item in digest.section(name).problems}


def gone(digest: Digest, name: SectionName) -> set[str]:
    return {item.key for item in digest.section(name).gone}


def test_healthy_cluster_has_no_problems() -> None:
    digest = build_digest(sweep(node("node-1"), node("node-2")), None, None)
    assert digest.problem_count == 0
    assert digest.section(SectionName.AGENTS).summary == "2 of 2 agents answered"
    assert "consistent" in digest.section(SectionName.MTU).summary
    assert digest.section(SectionName.KUBE_PROXY).summary.startswith("rules match the API on 2 nodes")


def test_conntrack_is_listed_worst_first_and_a_full_table_is_a_new_problem() -> None:
    digest = build_digest(sweep(node("node-1", 5000), node("node-2", 262144), node("node-3", 220000)), None, None)
    items = digest.section(SectionName.CONNTRACK).items
    assert [i.data["node"] for i in items] == ["node-2", "node-3", "node-1"]
    assert items[0].problem and items[0].change == Change.NEW and items[0].data["at_limit"]
    assert "at the limit" in items[0].text and "262,144/262,144 (100%)" in items[0].text
    assert items[1].problem and "near the limit" in items[1].text
    assert not items[2].problem and items[2].change is None


def test_conntrack_drops_since_the_previous_digest_are_a_problem_with_the_increase() -> None:
    first = build_digest(sweep(node("node-1", conntrack=ConntrackUsage(10, 1000, insert_failed=3, drop=7))), None, None)
    assert not first.section(SectionName.CONNTRACK).items[0].problem
    second = build_digest(
        sweep(node("node-1", conntrack=ConntrackUsage(10, 1000, insert_failed=3, drop=50))), None, stored(first)
    )
    item = second.section(SectionName.CONNTRACK).items[0]
    assert item.problem and item.change == Change.NEW
    assert "drop 50 (+43)" in item.text and "insert_failed 3" in item.text


def test_forwarding_off_and_forward_drop_are_problems_per_node() -> None:
    digest = build_digest(
        sweep(node("node-1", ip_forward=False), node("node-2", forward_policy="DROP"), node("node-3")), None, None
    )
    assert set(problems(digest, SectionName.FORWARDING)) == {"forwarding:node-1:ip_forward", "forwarding:node-2:forward_policy"}


def test_unreachable_agent_is_a_problem_and_its_old_problems_are_not_reported_gone() -> None:
    first = build_digest(sweep(node("node-1", 262144), node("node-2")), None, None)
    second = build_digest(sweep(NodeSweep("node-1", False, "deadline exceeded"), node("node-2")), None, stored(first))
    assert problems(second, SectionName.AGENTS) == {"agent:node-1": Change.NEW}
    assert gone(second, SectionName.CONNTRACK) == set()
    carried = second.section(SectionName.CONNTRACK).problems
    assert [i.key for i in carried] == ["conntrack:node-1"]
    assert carried[0].change == Change.STILL and carried[0].data["unchecked"]
    assert carried[0].text.startswith("not checked this time")


def test_mtu_inconsistencies_between_overlays_veths_and_pods() -> None:
    pods = (
        PodMtuSample("shop", "web-1", "node-1", "10.244.1.5", 1450, "veth1", 1450),
        PodMtuSample("shop", "frontend-1", "node-2", "10.244.2.5", 9000, "veth2", 1450),
    )
    digest = build_digest(
        sweep(
            node("node-1"),
            node(
                "node-2", overlays=(LinkMtu("flannel.1", 1400, "vxlan"),), bridge_ports=(LinkMtu("veth9", 1500, "veth", "cni0"),)
            ),
            pods=pods,
        ),
        None,
        None,
    )
    keys = set(problems(digest, SectionName.MTU))
    assert keys == {
        "mtu:overlay:flannel.1",
        "mtu:node:node-2:bridge:cni0",
        "mtu:node:node-2:veths",
        "mtu:pod:shop/frontend-1",
        "mtu:pods:mixed",
    }
    pod_item = next(i for i in digest.section(SectionName.MTU).items if i.key == "mtu:pod:shop/frontend-1")
    assert "9000" in pod_item.text and "flannel.1 1400" in pod_item.text


def test_services_without_ready_endpoints_in_scope() -> None:
    services = (
        API,
        ServiceState("shop", "cart", "10.96.0.21", "ClusterIP", {"app": "cart"}, (ServicePortState(None, 80, "TCP"),)),
        ServiceState(
            "shop",
            "redis",
            "10.96.0.22",
            "ClusterIP",
            {"app": "redis"},
            (ServicePortState(None, 6379, "TCP", (), ("10.244.1.9:6379",)),),
        ),
        ServiceState("ops", "grafana", "10.96.0.30", "ClusterIP", {"app": "grafana"}, (ServicePortState(None, 3000, "TCP"),)),
        ServiceState("shop", "ext", None, "ExternalName", None, (ServicePortState(None, 443, "TCP"),)),
    )
    digest = build_digest(sweep(node("node-1", nat=()), services=services), None, None, namespaces=("shop",))
    items = {i.key: i.text for i in digest.section(SectionName.ENDPOINTS).problems}
    assert set(items) == {"endpoints:shop/cart", "endpoints:shop/redis"}
    assert "selector app=cart matches no ready pod" in items["endpoints:shop/cart"]
    assert "1 endpoint, none ready" in items["endpoints:shop/redis"]


def test_kube_proxy_stale_and_missing_rules_per_node() -> None:
    stale = ProgrammedServicePort("10.96.0.20", 80, "TCP", "shop/api:http", ("10.244.9.9:8080",))
    digest = build_digest(sweep(node("node-1"), node("node-2", nat=(stale,)), node("node-3", nat=())), None, None)
    found = {i.key: i for i in digest.section(SectionName.KUBE_PROXY).problems}
    assert set(found) == {"kube_proxy:node-2:shop/api:80/TCP", "kube_proxy:node-3:shop/api:80/TCP"}
    assert found["kube_proxy:node-2:shop/api:80/TCP"].data["kind"] == "stale"
    assert "sends to 10.244.9.9:8080; the API has 10.244.1.5:8080 ready" in found["kube_proxy:node-2:shop/api:80/TCP"].text
    assert found["kube_proxy:node-3:shop/api:80/TCP"].data["kind"] == "missing"


def test_kube_proxy_in_a_mode_we_cannot_read_is_not_compared() -> None:
    digest = build_digest(sweep(node("node-1", nat=(), proxy_mode="ipvs")), None, None)
    section = digest.section(SectionName.KUBE_PROXY)
    assert section.problems == ()
    assert "not compared: node-1 (kube-proxy mode ipvs)" in section.summary


def test_new_still_and_gone_across_three_digests() -> None:
    broken = ServiceState("shop", "api", "10.96.0.20", "ClusterIP", {"app": "api"}, (ServicePortState("http", 80, "TCP"),))
    rejecting = ProgrammedServicePort("10.96.0.20", 80, "TCP", "shop/api:http", (), "REJECT")
    first = build_digest(sweep(node("node-1", 262144, nat=(rejecting,)), services=(broken,)), None, None)
    assert problems(first, SectionName.CONNTRACK) == {"conntrack:node-1": Change.NEW}
    assert problems(first, SectionName.ENDPOINTS) == {"endpoints:shop/api": Change.NEW}
    assert first.since is None
    second = build_digest(
        sweep(node("node-1", 262144, nat=(rejecting,)), services=(broken,), at=T0 + timedelta(days=1)), None, stored(first)
    )
    assert problems(second, SectionName.CONNTRACK) == {"conntrack:node-1": Change.STILL}
    assert problems(second, SectionName.ENDPOINTS) == {"endpoints:shop/api": Change.STILL}
    assert second.since == T0
    third = build_digest(sweep(node("node-1", 120), at=T0 + timedelta(days=2)), None, stored(second))
    assert third.problem_count == 0
    assert gone(third, SectionName.CONNTRACK) == {"conntrack:node-1"}
    assert gone(third, SectionName.ENDPOINTS) == {"endpoints:shop/api"}
    assert third.gone_count == 2
    assert "262,144/262,144" in third.section(SectionName.CONNTRACK).gone[0].text


def _history(recurring: tuple[Recurrence, ...], unresolved: tuple[UnresolvedInvestigation, ...]) -> HistorySummary:
    return HistorySummary(T0 - timedelta(days=1), T0, 4, (), recurring, unresolved, len(unresolved))


def test_history_recurring_and_unresolved_are_diffed_too() -> None:
    repeat = Recurrence("verdict-node", "CONNTRACK_TABLE_FULL on node-2", 3, T0, "inv_3", "CONNTRACK_TABLE_FULL")
    open_one = UnresolvedInvestigation("inv_3", "why can't web reach api", "CONNTRACK_TABLE_FULL", "node-2", T0, "ana")
    first = build_digest(sweep(node("node-1")), _history((repeat,), (open_one,)), None)
    assert problems(first, SectionName.RECURRING) == {"recurring:verdict-node:CONNTRACK_TABLE_FULL on node-2": Change.NEW}
    assert problems(first, SectionName.UNRESOLVED) == {"unresolved:inv_3": Change.NEW}
    second = build_digest(sweep(node("node-1")), _history((repeat,), ()), stored(first))
    assert problems(second, SectionName.RECURRING) == {"recurring:verdict-node:CONNTRACK_TABLE_FULL on node-2": Change.STILL}
    assert gone(second, SectionName.UNRESOLVED) == {"unresolved:inv_3"}


def test_without_history_its_sections_say_so_and_nothing_is_gone() -> None:
    open_one = UnresolvedInvestigation("inv_3", "q", "MTU_MISMATCH", None, T0, "ana")
    first = build_digest(sweep(node("node-1")), _history((), (open_one,)), None)
    second = build_digest(sweep(node("node-1")), None, stored(first))
    assert second.section(SectionName.UNRESOLVED).summary == "history not available"
    assert gone(second, SectionName.UNRESOLVED) == set()


def test_service_states_match_endpoint_ports_by_name_and_protocol() -> None:
    states = service_states(
        [("shop", "api", "10.96.0.20", "ClusterIP", {"app": "api"}, [("http", 80, "TCP"), ("grpc", 9090, "TCP")])],
        {
            "shop/api": [
                ("10.244.1.5", True, [("http", 8080, "TCP"), ("grpc", 9000, "TCP")], False),
                ("10.244.2.5", False, [("http", 8080, "TCP"), ("grpc", 9000, "TCP")], False),
            ]
        },
    )
    (api,) = states
    http, grpc = api.ports
    assert http.ready == ("10.244.1.5:8080",) and http.not_ready == ("10.244.2.5:8080",)
    assert grpc.ready == ("10.244.1.5:9000",)


def test_serving_terminating_endpoints_count_when_no_endpoint_is_ready() -> None:
    """A rolling update's last moment: the only endpoints are terminating but serving, and kube-proxy
    routes to them (it falls back to serving terminating endpoints when none is ready)."""
    (draining,) = service_states(
        [("shop", "api", "10.96.0.20", "ClusterIP", {"app": "api"}, [("http", 80, "TCP")])],
        {
            "shop/api": [
                ("10.244.1.5", False, [("http", 8080, "TCP")], True),
                ("10.244.2.5", False, [("http", 8080, "TCP")], False),
            ]
        },
    )
    (port,) = draining.ports
    assert port.ready == () and port.terminating == ("10.244.1.5:8080",) and port.routed == ("10.244.1.5:8080",)
    to_terminating = ProgrammedServicePort("10.96.0.20", 80, "TCP", "shop/api:http", ("10.244.1.5:8080",))
    digest = build_digest(sweep(node("node-1", nat=(to_terminating,)), services=(draining,)), None, None)
    assert digest.section(SectionName.ENDPOINTS).problems == ()
    assert digest.section(SectionName.KUBE_PROXY).problems == ()
    to_nothing = ProgrammedServicePort("10.96.0.20", 80, "TCP", "shop/api:http", ("10.244.2.5:8080",))
    stale = build_digest(sweep(node("node-1", nat=(to_nothing,)), services=(draining,)), None, None)
    (item,) = stale.section(SectionName.KUBE_PROXY).problems
    assert "the API has 10.244.1.5:8080 serving (terminating)" in item.text


def test_terminating_endpoints_are_not_routed_while_a_ready_one_exists() -> None:
    (mixed,) = service_states(
        [("shop", "api", "10.96.0.20", "ClusterIP", {"app": "api"}, [("http", 80, "TCP")])],
        {
            "shop/api": [
                ("10.244.1.5", False, [("http", 8080, "TCP")], True),
                ("10.244.2.5", True, [("http", 8080, "TCP")], False),
            ]
        },
    )
    (port,) = mixed.ports
    assert port.routed == ("10.244.2.5:8080",)
    both = ProgrammedServicePort("10.96.0.20", 80, "TCP", "shop/api:http", ("10.244.1.5:8080", "10.244.2.5:8080"))
    digest = build_digest(sweep(node("node-1", nat=(both,)), services=(mixed,)), None, None)
    assert [i.data["kind"] for i in digest.section(SectionName.KUBE_PROXY).problems] == ["stale"]
