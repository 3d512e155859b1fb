"""The lab's real node agents, called over mTLS, against what the plain tools print — in every mode.

For each CNI mode (flannel-vxlan, host-gw, calico) and each kube-proxy mode (iptables, nftables) a
two-node lab comes up; every RPC of its agents is compared with what `ip`, `bridge`, `iptables-save`,
`nft -j`, `conntrack`, `ss` and `/proc/sys` print for the same namespace. Then kernel-level faults of
the catalog are injected one at a time: each must show in the RPC that should reveal it (and that
RPC must still agree with the tools), and after `lab heal` the RPC reads healthy again.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from bot.settings import load_settings
from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from nodeagent.checks.nat import KubeProxyTables
from nodeagent.netns import netns_path
from tests.lab.labkit import Lab, eventually, running_lab, unique_prefix

pytestmark = pytest.mark.lab

Obj = dict[str, Any]
PROTOCOLS = {"TCP": pb.PROTOCOL_TCP, "UDP": pb.PROTOCOL_UDP, "SCTP": pb.PROTOCOL_SCTP}
OVERLAY = {"flannel-vxlan": "flannel.1", "calico": "vxlan.calico"}
APP_PORT = {"frontend": 8080, "api": 8080, "redis": 6379, "prometheus": 9090}
NO_ROUTE_TYPES = (pb.ROUTE_TYPE_NO_ROUTE, pb.ROUTE_TYPE_UNREACHABLE, pb.ROUTE_TYPE_BLACKHOLE, pb.ROUTE_TYPE_PROHIBIT)


# ----------------------------------------------------------------------------- the plain tools


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """One tool run with a fixed argument vector."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=check)


def ipj(ns: str, *args: str) -> Any:
    """`ip -n NS -j ARGS…` parsed."""
    out = run("ip", "-n", ns, "-j", *args).stdout.strip()
    return json.loads(out) if out else []


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A tool run inside namespace `ns`."""
    return run("ip", "netns", "exec", ns, *argv, check=check)


def sysctl(ns: str, path: str) -> int:
    """An integer sysctl as the namespace's /proc/sys shows it."""
    return int(in_ns(ns, "cat", f"/proc/sys/{path}").stdout.strip())


def conntrack_count(ns: str) -> int:
    """`conntrack -C` in the namespace."""
    return int(in_ns(ns, "conntrack", "-C").stdout.strip())


def link_by_index(ns: str, index: int) -> Obj:
    """The link with ifindex `index` in `ns`, from `ip -d -j link`."""
    links: list[Obj] = ipj(ns, "-d", "link")
    return next(link for link in links if link["ifindex"] == index)


def link_by_name(ns: str, name: str) -> Obj:
    """One link of `ns` by name, from `ip -d -j link show NAME`."""
    found: list[Obj] = ipj(ns, "-d", "link", "show", "dev", name)
    return found[0]


def kind_of(link: Obj) -> str:
    return str(link.get("linkinfo", {}).get("info_kind", ""))


def route_dst(dst: str) -> str:
    """`ip -j route` destinations in CIDR form."""
    if dst == "default":
        return "0.0.0.0/0"
    return dst if "/" in dst else f"{dst}/32"


@dataclass(frozen=True)
class ConntrackFlow:
    """One conntrack entry as `conntrack -L` prints it: both tuples."""

    orig_src: str
    orig_sport: int
    reply_src: str
    reply_sport: int


def conntrack_list(ns: str, *filters: str) -> set[ConntrackFlow]:
    """`conntrack -L FILTERS…` in the namespace, as a set of flows."""
    flows = set()
    for line in in_ns(ns, "conntrack", "-L", *filters).stdout.splitlines():
        pairs = [tok.split("=", 1) for tok in line.split() if "=" in tok]
        src = [v for k, v in pairs if k == "src"]
        sport = [int(v) for k, v in pairs if k == "sport"]
        if len(src) >= 2 and len(sport) >= 2:
            flows.add(ConntrackFlow(src[0], sport[0], src[1], sport[1]))
    return flows


@dataclass(frozen=True)
class NatPath:
    """A service port's NAT as read from the tools: service chain, endpoint chains and DNAT targets."""

    programmed: bool
    service_chain: str = ""
    endpoint_chains: tuple[str, ...] = ()
    targets: tuple[tuple[str, int], ...] = ()


def iptables_nat_path(ns: str, vip: str, port: int, protocol: str) -> NatPath:
    """Follow KUBE-SERVICES → KUBE-SVC → KUBE-SEP in `iptables-save -t nat` by hand."""
    rules: list[list[str]] = [
        shlex.split(line) for line in in_ns(ns, "iptables-save", "-t", "nat").stdout.splitlines() if line.startswith("-A ")
    ]

    def target(rule: list[str]) -> str:
        return rule[rule.index("-j") + 1] if "-j" in rule else ""

    def opt(rule: list[str], name: str) -> str:
        return rule[rule.index(name) + 1] if name in rule else ""

    dispatch = [
        r for r in rules
        if r[1] == "KUBE-SERVICES" and opt(r, "-d") == f"{vip}/32" and opt(r, "-p") == protocol.lower()
        and opt(r, "--dport") == str(port) and target(r).startswith("KUBE-")
    ]  # fmt: skip
    if not dispatch:
        return NatPath(programmed=False)
    svc = target(dispatch[0])
    seps = tuple(target(r) for r in rules if r[1] == svc and target(r).startswith("KUBE-SEP-"))
    targets = []
    for sep in seps:
        dnat = next(r for r in rules if r[1] == sep and target(r) == "DNAT")
        ip, _, dport = opt(dnat, "--to-destination").rpartition(":")
        targets.append((ip, int(dport)))
    return NatPath(True, svc, seps, tuple(targets))


def nft_nat_path(ns: str, vip: str, port: int, protocol: str) -> NatPath:
    """Follow service-ips → service chain → its dnat (a numgen map, a plain dnat or endpoint chains) in
    `nft -j list table ip kube-proxy` by hand."""
    doc: list[Obj] = json.loads(in_ns(ns, "nft", "-j", "list", "table", "ip", "kube-proxy").stdout)["nftables"]
    svc = ""
    for item in doc:
        if item.get("map", {}).get("name") == "service-ips":
            for key, verdict in item["map"].get("elem", []):
                if key.get("concat") == [vip, protocol.lower(), port]:
                    svc = verdict["goto"]["target"]
    if not svc:
        return NatPath(programmed=False)
    rules = [item["rule"] for item in doc if "rule" in item]
    eps: list[str] = []
    targets = []
    for rule in rules:
        if rule["chain"] == svc:
            for expr in rule["expr"]:
                if "vmap" in expr:  # per-endpoint chains
                    eps += [v["goto"]["target"] for _, v in expr["vmap"]["data"]["set"]]
                elif "dnat" in expr and isinstance(expr["dnat"]["addr"], dict):  # 1.36: numgen dnat map
                    slots = expr["dnat"]["addr"]["map"]["data"]["set"]
                    targets += [(str(t["concat"][0]), int(t["concat"][1])) for _, t in sorted(slots, key=lambda kv: kv[0])]
                elif "dnat" in expr:  # one endpoint, plain dnat
                    targets.append((str(expr["dnat"]["addr"]), int(expr["dnat"]["port"])))
    chains = ("",) * len(targets)  # a dnat in the service chain itself: no endpoint chain
    for ep in eps:
        dnat = next(e["dnat"] for r in rules if r["chain"] == ep for e in r["expr"] if "dnat" in e)
        targets.append((str(dnat["addr"]), int(dnat["port"])))
    return NatPath(True, svc, chains + tuple(eps), tuple(targets))


def listening(ns: str) -> set[tuple[str, str, int]]:
    """`ss -ltnuH` in the namespace as (protocol, address, port)."""
    found = set()
    for line in in_ns(ns, "ss", "-ltnuH").stdout.splitlines():
        netid, _state, _rq, _sq, local, *_ = line.split()
        address, _, port = local.rpartition(":")
        address = address.split("%", 1)[0].strip("[]")
        found.add((netid.upper(), "0.0.0.0" if address == "*" else address, int(port)))
    return found


# ------------------------------------------------------------------------------ the agents


@dataclass
class Agents:
    """Synchronous mTLS stubs for the lab's agents, built from the lab's own config and PKI."""

    lab: Lab
    channels: dict[str, grpc.Channel] = field(default_factory=dict)

    def __call__(self, node: str) -> pb_grpc.NodeAgentServiceStub:
        if node not in self.channels:
            settings = load_settings(Path(self.lab.status["config"]))
            tls = settings.agents.tls
            assert tls is not None, "the lab's config must carry the agents' mTLS files"
            creds = grpc.ssl_channel_credentials(tls.ca.read_bytes(), tls.key.read_bytes(), tls.cert.read_bytes())
            self.channels[node] = grpc.secure_channel(
                settings.agents.nodes[node], creds, options=[("grpc.ssl_target_name_override", f"kubereach-agent.{node}")]
            )
        return pb_grpc.NodeAgentServiceStub(self.channels[node])

    def close(self) -> None:
        for channel in self.channels.values():
            channel.close()
        self.channels.clear()


@contextmanager
def agents_of(lab: Lab) -> Iterator[Agents]:
    agents = Agents(lab)
    try:
        yield agents
    finally:
        agents.close()


@dataclass
class Mode:
    """One running lab under test with its agents."""

    lab: Lab
    agents: Agents
    cni: str
    proxy: str

    def netns(self, node: str) -> str:
        return str(self.lab.node(node)["netns"])

    @property
    def nodes(self) -> list[str]:
        return [n["name"] for n in self.lab.status["nodes"]]

    def app_pod(self, node: str, app: str) -> Obj:
        return next(p for p in self.lab.status["pods"] if p["node"] == node and p["labels"].get("app") == app)

    def fault(self, name: str, *, node: str = "", pod: Obj | None = None, service: str = "") -> None:
        args = ["fault", name]
        args += ["--node", node] if node else []
        args += ["--pod", f"{pod['namespace']}/{pod['name']}"] if pod else []
        args += ["--service", service] if service else []
        self.lab.cli(*args)

    def heal(self) -> None:
        self.lab.cli("heal")
        self.lab.refresh()


# -------------------------------------------------------------- RPC vs tool, one check per RPC


def check_node_info(m: Mode, node: str) -> pb.GetNodeInfoResponse:
    """GetNodeInfo against `ip -d -j link`, /proc/sys and `conntrack -C`; returns the answer."""
    ns = m.netns(node)

    def sandwich() -> tuple[int, pb.GetNodeInfoResponse, int]:
        before = conntrack_count(ns)
        info = m.agents(node).GetNodeInfo(pb.GetNodeInfoRequest(), timeout=10)
        return before, info, conntrack_count(ns)

    # Entries only expire in a quiet lab, but allow for a stray one: the answer must lie between two reads.
    _, info, _ = eventually(
        sandwich, lambda r: min(r[0], r[2]) <= r[1].conntrack.count <= max(r[0], r[2]), deadline_s=10, what="conntrack count"
    )
    links: list[Obj] = ipj(ns, "-d", "link")
    bridges = {link["ifname"]: link for link in links if kind_of(link) == "bridge"}
    assert {b.link.name for b in info.cni.bridges} == set(bridges)
    for bridge in info.cni.bridges:
        ports = {link["ifname"]: link for link in links if link.get("master") == bridge.link.name}
        assert {p.name for p in bridge.ports} == set(ports), f"ports of {bridge.link.name}"
        for port in bridge.ports:
            assert (port.mtu, port.oper_state) == (ports[port.name]["mtu"], ports[port.name]["operstate"])
    assert {c.name for c in info.cni.calico_interfaces} == {link["ifname"] for link in links if link["ifname"].startswith("cali")}
    vxlans = {link["ifname"]: link for link in links if kind_of(link) == "vxlan"}
    assert {o.link.name for o in info.cni.overlays} == set(vxlans)
    for overlay in info.cni.overlays:
        kernel = vxlans[overlay.link.name]
        data = kernel["linkinfo"]["info_data"]
        assert (overlay.vni, overlay.udp_port, overlay.link.mtu, overlay.local_ip) == (
            data["id"], data["port"], kernel["mtu"], data.get("local", "")
        )  # fmt: skip
        assert overlay.link.admin_up == ("UP" in kernel["flags"])
    assert info.ip_forward == bool(sysctl(ns, "net/ipv4/ip_forward"))
    assert info.conntrack.max == sysctl(ns, "net/netfilter/nf_conntrack_max")
    assert info.proxy_mode == m.proxy
    assert info.netns_name == ns
    assert info.netns_inode == os.stat(f"/var/run/netns/{ns}").st_ino
    return info


def check_locate_pod(m: Mode, pod: Obj) -> pb.PodNetwork:
    """LocatePod against `ip -j addr/link/route` in the pod and the host veth in its node."""
    ns, node_ns = pod["netns"], m.netns(pod["node"])
    located = m.agents(pod["node"]).LocatePod(pb.LocatePodRequest(pod_ip=pod["ip"]), timeout=10).pod
    assert (located.netns_name, located.netns_inode) == (ns, os.stat(f"/var/run/netns/{ns}").st_ino)
    eth0: Obj = ipj(ns, "addr", "show", "dev", "eth0")[0]
    iface = located.interface
    assert (iface.name, iface.index, iface.mtu, iface.oper_state, iface.mac, iface.admin_up) == (
        "eth0", eth0["ifindex"], eth0["mtu"], eth0["operstate"], eth0["address"], "UP" in eth0["flags"]
    )  # fmt: skip
    assert set(iface.addresses) == {f"{a['local']}/{a['prefixlen']}" for a in eth0["addr_info"]}
    kernel_routes = {
        (route_dst(r["dst"]), r.get("gateway", ""), r.get("dev", "")) for r in ipj(ns, "route", "show", "table", "main")
    }
    agent_routes = {(r.destination, r.gateway, r.device) for r in located.routes if ":" not in r.destination}
    assert agent_routes == kernel_routes
    peer = link_by_index(node_ns, eth0["link_index"])
    host = located.host_peer.link
    assert (host.index, host.name, host.mtu, host.oper_state, host.master, host.admin_up) == (
        peer["ifindex"], peer["ifname"], peer["mtu"], peer["operstate"], peer.get("master", ""), "UP" in peer["flags"]
    )  # fmt: skip
    host_routes: list[Obj] = ipj(node_ns, "route", "show", "exact", f"{pod['ip']}/32")
    if host_routes:
        assert located.host_peer.HasField("route_to_pod")
        assert located.host_peer.route_to_pod.device == host_routes[0]["dev"]
    else:
        assert not located.host_peer.HasField("route_to_pod")
    assert located.host_peer.proxy_arp == bool(sysctl(node_ns, f"net/ipv4/conf/{peer['ifname']}/proxy_arp"))
    return located


def check_route(m: Mode, node: str, destination: str) -> pb.LookupRouteResponse:
    """LookupRoute against `ip -j route get`, and its overlay hop against `ip -j neigh` / `bridge -j fdb`."""
    ns = m.netns(node)
    answer = m.agents(node).LookupRoute(pb.LookupRouteRequest(destination=destination), timeout=10)
    got = run("ip", "-n", ns, "-j", "route", "get", destination, check=False)
    if got.returncode != 0:
        assert answer.route.type in NO_ROUTE_TYPES or answer.error, f"ip route get failed ({got.stderr.strip()}) but {answer}"
        return answer
    kernel: Obj = json.loads(got.stdout)[0]
    route = answer.route
    assert (route.device, route.gateway, route.source) == (
        kernel.get("dev", ""),
        kernel.get("gateway", ""),
        kernel.get("prefsrc", ""),
    )
    device = link_by_name(ns, kernel["dev"])
    assert answer.HasField("overlay") == (kind_of(device) == "vxlan")
    if answer.HasField("overlay"):
        hop = kernel.get("gateway", destination)
        assert answer.overlay.next_hop == hop
        neigh: list[Obj] = [n for n in ipj(ns, "neigh", "show", hop, "dev", kernel["dev"]) if n.get("lladdr")]
        assert answer.overlay.HasField("neighbour") == bool(neigh)
        if neigh:
            assert answer.overlay.neighbour.mac == neigh[0]["lladdr"]
            fdb = [
                e for e in json.loads(run("bridge", "-n", ns, "-j", "fdb", "show", "dev", kernel["dev"]).stdout or "[]")
                if e["mac"] == neigh[0]["lladdr"]
            ]  # fmt: skip
            assert answer.overlay.HasField("fdb") == bool(fdb)
            if fdb:
                assert answer.overlay.fdb.remote_ip == fdb[0].get("dst", "")
    return answer


def check_service_nat(m: Mode, node: str, vip: str, port: int, protocol: str) -> pb.ServiceNat:
    """GetServiceNat against the chains (or map and chains) read by hand from the dump tool."""
    ns = m.netns(node)
    request = pb.GetServiceNatRequest(vip=vip, port=port, protocol=PROTOCOLS[protocol])
    nat = m.agents(node).GetServiceNat(request, timeout=20).service
    path = iptables_nat_path(ns, vip, port, protocol) if m.proxy == "iptables" else nft_nat_path(ns, vip, port, protocol)
    assert nat.mode == m.proxy
    assert nat.programmed == path.programmed, f"{vip}:{port}/{protocol} on {node}"
    if path.programmed:
        assert nat.service_chain == path.service_chain
        assert tuple(e.chain for e in nat.endpoints) == path.endpoint_chains
        assert tuple((e.ip, e.port) for e in nat.endpoints) == path.targets
    return nat


def check_cold_lookup_matches_snapshot(m: Mode, node: str, vip: str, port: int, protocol: str) -> None:
    """A cold lookup (chains read one by one / over netlink) answers what the full snapshot answers."""
    path = netns_path(m.netns(node))
    tables = KubeProxyTables()  # an empty snapshot cache: the first lookup is cold
    cold = tables.service_nat(path, None, vip, port, protocol)
    from_snapshot = tables.service_nat(path, None, vip, port, protocol)  # waits for the background dump
    tables.clear_cache()
    assert cold == from_snapshot, (cold, from_snapshot)


def check_filter(m: Mode, node: str, flow: tuple[str, str, int], interfaces: list[str]) -> pb.GetFilterStateResponse:
    """GetFilterState against `iptables -S FORWARD` and the rp_filter / ip_forward sysctls."""
    ns = m.netns(node)
    src, dst, dport = flow
    request = pb.GetFilterStateRequest(src=src, dst=dst, protocol=pb.PROTOCOL_TCP, dport=dport, interfaces=interfaces)
    state = m.agents(node).GetFilterState(request, timeout=10)
    policy = next(
        line.split()[2] for line in in_ns(ns, "iptables", "-S", "FORWARD").stdout.splitlines() if line.startswith("-P FORWARD")
    )
    assert state.forward_policy == policy
    assert state.ip_forward == bool(sysctl(ns, "net/ipv4/ip_forward"))
    every = sysctl(ns, "net/ipv4/conf/all/rp_filter")
    for name in interfaces:
        assert state.rp_filter[name] == max(every, sysctl(ns, f"net/ipv4/conf/{name}/rp_filter")), name
    return state


def check_sockets(m: Mode, pod: Obj) -> set[tuple[str, str, int]]:
    """ListSockets in a pod against `ss -ltnuH` in its namespace; returns the agent's view."""
    answer = m.agents(pod["node"]).ListSockets(pb.ListSocketsRequest(pod_ip=pod["ip"]), timeout=10)
    seen = {(pb.Protocol.Name(s.protocol).removeprefix("PROTOCOL_"), s.local_address, s.local_port) for s in answer.sockets}
    assert seen == listening(pod["netns"]), pod["name"]
    return seen


def check_conntrack(
    m: Mode, node: str, *, protocol: str, src: str = "", dst: str = "", dport: int = 0
) -> pb.QueryConntrackResponse:
    """QueryConntrack against `conntrack -L` with the same filter, read before and after the RPC."""
    ns = m.netns(node)
    filters = ["-p", protocol.lower()] + (["-s", src] if src else []) + (["-d", dst] if dst else [])
    filters += ["--dport", str(dport)] if dport else []
    request = pb.QueryConntrackRequest(protocol=PROTOCOLS[protocol], orig_src=src, orig_dst=dst, orig_dport=dport, limit=1000)
    before = conntrack_list(ns, *filters)
    answer = m.agents(node).QueryConntrack(request, timeout=20)
    after = conntrack_list(ns, *filters)
    seen = {ConntrackFlow(e.orig.src, e.orig.sport, e.reply.src, e.reply.sport) for e in answer.entries}
    # No traffic runs meanwhile, so entries can only expire: the agent saw a set between the two reads.
    assert after <= seen <= before, (before, seen, after)
    assert answer.total_matched == len(answer.entries) and not answer.truncated
    return answer


def probe_tcp(m: Mode, pod: Obj, target: str, port: int) -> int:
    request = pb.ProbeTcpRequest(pod_ip=pod["ip"], target_ip=target, port=port, timeout_ms=2000)
    return int(m.agents(pod["node"]).ProbeTcp(request, timeout=10).result.outcome)


def check_every_rpc(m: Mode) -> None:
    """Every RPC of both agents against the tools on a healthy lab."""
    pods = m.lab.status["pods"]
    for node in m.nodes:
        check_node_info(m, node)
        stats = m.agents(node).GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=10).stats
        assert stats.max == sysctl(m.netns(node), "net/netfilter/nf_conntrack_max")
        for pod in pods:
            answer = check_route(m, node, pod["ip"])
            assert answer.route.type == pb.ROUTE_TYPE_UNICAST
            assert answer.HasField("overlay") == (m.cni in OVERLAY and pod["node"] != node)
        answers: list[pb.ServiceNat] = []
        outside_vips: set[tuple[str, int, int]] = set()
        for svc in m.lab.status["services"]:
            if svc["cluster_ip"] in (None, "None"):
                continue  # headless or ExternalName: nothing for kube-proxy to program
            for port in svc["ports"]:
                service = check_service_nat(m, node, svc["cluster_ip"], port["port"], port["protocol"])
                check_cold_lookup_matches_snapshot(m, node, svc["cluster_ip"], port["port"], port["protocol"])
                answers.append(service)
                # External IPs and load-balancer ingress IPs are programmed (and listed) like the VIP.
                outside_vips |= {(ip, service.port, service.protocol) for ip in svc["external_ips"] + svc["load_balancer_ips"]}
                assert service.programmed
                selected = svc["selector"].items()
                assert {e.ip for e in service.endpoints} == {
                    p["ip"] for p in pods if p["namespace"] == svc["namespace"] and selected <= p["labels"].items()
                }
        listed = m.agents(node).ListServiceNat(pb.ListServiceNatRequest(), timeout=20).services
        # kube-proxy also programs default/kubernetes (10.96.0.1:443), which `lab status` leaves out
        # because nothing in the lab answers at its endpoint.
        api_service = next(s for s in listed if (s.vip, s.port) == ("10.96.0.1", 443))
        assert api_service.programmed
        expected = {(a.vip, a.port, a.protocol) for a in answers} | {(api_service.vip, 443, api_service.protocol)} | outside_vips
        assert {(s.vip, s.port, s.protocol) for s in listed} == expected
    for pod in pods:
        located = check_locate_pod(m, pod)
        assert located.host_peer.link.master == ("cni0" if m.cni != "calico" else "")
        check_sockets(m, pod)
    # Probes: a service VIP connects, a closed port is refused; then conntrack shows the flows.
    src, api = m.app_pod("node-1", "frontend"), m.lab.service("shop", "api")
    for _ in range(3):
        assert probe_tcp(m, src, api["cluster_ip"], 8080) == pb.PROBE_OUTCOME_CONNECTED
    assert probe_tcp(m, src, m.app_pod("node-2", "api")["ip"], 1) == pb.PROBE_OUTCOME_REFUSED
    flows = check_conntrack(m, "node-1", protocol="TCP", dst=api["cluster_ip"])
    assert flows.total_matched >= 3
    api_ips = {p["ip"] for p in m.lab.pods(app="api")}
    assert {e.reply.src for e in flows.entries} <= api_ips
    overlay = [OVERLAY[m.cni]] if m.cni in OVERLAY else []
    bridge_or_veth = ["cni0"] if m.cni != "calico" else [check_locate_pod(m, src).host_peer.link.name]
    state = check_filter(m, "node-1", (src["ip"], m.app_pod("node-2", "api")["ip"], 8080), ["eth0", *overlay, *bridge_or_veth])
    assert state.forward_policy == "ACCEPT" and not state.drops and state.ip_forward


# ------------------------------------------------------------------------------------ faults

Fault = Callable[[Mode], None]


def node_route_missing(m: Mode) -> None:
    """node-route-missing → LookupRoute on node-1 finds no route to node-2's pods, like `ip route get`."""
    remote = m.app_pod("node-2", "frontend")
    assert check_route(m, "node-1", remote["ip"]).route.type == pb.ROUTE_TYPE_UNICAST
    m.fault("node-route-missing", node="node-1", pod=remote)
    broken = check_route(m, "node-1", remote["ip"])
    assert broken.route.type in NO_ROUTE_TYPES or broken.error, broken
    m.heal()
    assert check_route(m, "node-1", remote["ip"]).route.type == pb.ROUTE_TYPE_UNICAST


def ip_forward_off(m: Mode) -> None:
    """ip-forward-off → GetNodeInfo and GetFilterState report ip_forward off, like /proc/sys."""
    flow = (m.app_pod("node-2", "frontend")["ip"], m.app_pod("node-1", "api")["ip"], 8080)
    m.fault("ip-forward-off", node="node-1")
    assert not check_node_info(m, "node-1").ip_forward
    assert not check_filter(m, "node-1", flow, ["eth0"]).ip_forward
    m.heal()
    assert check_node_info(m, "node-1").ip_forward and check_filter(m, "node-1", flow, ["eth0"]).ip_forward


def forward_drop(m: Mode) -> None:
    """forward-drop → GetFilterState reports the FORWARD policy DROP, like `iptables -S FORWARD`."""
    flow = (m.app_pod("node-2", "frontend")["ip"], m.app_pod("node-1", "api")["ip"], 8080)
    m.fault("forward-drop", node="node-1")
    assert check_filter(m, "node-1", flow, ["eth0"]).forward_policy == "DROP"
    m.heal()
    assert check_filter(m, "node-1", flow, ["eth0"]).forward_policy == "ACCEPT"


def nft_forward_drop(m: Mode) -> None:
    """nft-forward-drop → GetFilterState names the nftables rule and its handle, like `nft -a list table`."""
    flow = (m.app_pod("node-2", "frontend")["ip"], m.app_pod("node-1", "api")["ip"], 8080)
    m.fault("nft-forward-drop", node="node-1")
    listed = in_ns(m.netns("node-1"), "nft", "-a", "list", "table", "inet", "filter").stdout
    hit = check_filter(m, "node-1", flow, ["eth0"]).drops[0]
    assert (hit.backend, hit.table, hit.chain, hit.hook) == ("nftables", "inet filter", "forward", "forward")
    assert f"{hit.rule.split(' reject')[0]}" in listed and f"# handle {hit.handle}" in listed
    m.heal()
    assert list(check_filter(m, "node-1", flow, ["eth0"]).drops) == []


def legacy_forward_drop(m: Mode) -> None:
    """legacy-forward-drop → GetFilterState names the iptables-legacy rule, like `iptables-legacy -S`."""
    flow = (m.app_pod("node-2", "frontend")["ip"], m.app_pod("node-1", "api")["ip"], 8080)
    m.fault("legacy-forward-drop", node="node-1")
    listed = in_ns(m.netns("node-1"), "iptables-legacy", "-S", "HOST-FIREWALL").stdout.splitlines()
    hit = check_filter(m, "node-1", flow, ["eth0"]).drops[0]
    assert (hit.backend, hit.chain, hit.hook) == ("iptables-legacy", "HOST-FIREWALL", "forward")
    assert hit.rule in listed
    m.heal()
    # legacy rule changes do not move the nf_tables generation: the agent's legacy snapshot ages out
    eventually(lambda: list(check_filter(m, "node-1", flow, ["eth0"]).drops), lambda d: d == [], what="legacy rule gone")


def veth_down(m: Mode) -> None:
    """veth-down → LocatePod shows the pod's host-side veth down, like `ip link`."""
    pod = m.app_pod("node-1", "api")
    m.fault("veth-down", pod=pod)
    peer = check_locate_pod(m, pod).host_peer
    assert not peer.link.admin_up and peer.link.oper_state == "DOWN"
    m.heal()
    peer = check_locate_pod(m, pod).host_peer
    assert peer.link.admin_up and peer.link.oper_state == "UP"


def veth_off_bridge(m: Mode) -> None:
    """veth-off-bridge → LocatePod shows the host-side veth without a master, and cni0 without the port."""
    pod = m.app_pod("node-1", "api")
    m.fault("veth-off-bridge", pod=pod)
    assert check_locate_pod(m, pod).host_peer.link.master == ""
    assert check_locate_pod(m, pod).host_peer.link.name not in {p.name for p in check_node_info(m, "node-1").cni.bridges[0].ports}
    m.heal()
    assert check_locate_pod(m, pod).host_peer.link.master == "cni0"


def overlay_down(m: Mode) -> None:
    """overlay-down → GetNodeInfo shows the VXLAN device down; LookupRoute no longer leaves through it."""
    device, remote = OVERLAY[m.cni], m.app_pod("node-2", "frontend")
    m.fault("overlay-down", node="node-1")
    overlay = next(o for o in check_node_info(m, "node-1").cni.overlays if o.link.name == device)
    assert not overlay.link.admin_up
    broken = check_route(m, "node-1", remote["ip"])
    assert not (broken.HasField("overlay") and broken.overlay.device.link.admin_up), broken
    m.heal()
    assert next(o for o in check_node_info(m, "node-1").cni.overlays if o.link.name == device).link.admin_up
    assert check_route(m, "node-1", remote["ip"]).overlay.device.link.admin_up


def overlay_fdb_missing(m: Mode) -> None:
    """overlay-fdb-missing → LookupRoute's overlay hop has its neighbour but no FDB entry, like `bridge fdb`."""
    remote = m.app_pod("node-2", "frontend")
    assert check_route(m, "node-1", remote["ip"]).overlay.HasField("fdb")
    m.fault("overlay-fdb-missing", node="node-1", pod=remote)
    broken = check_route(m, "node-1", remote["ip"])
    assert broken.overlay.HasField("neighbour") and not broken.overlay.HasField("fdb")
    m.heal()
    assert check_route(m, "node-1", remote["ip"]).overlay.fdb.remote_ip == m.lab.node("node-2")["ip"]


def kube_proxy_rules_missing(m: Mode) -> None:
    """kube-proxy-rules-missing → GetServiceNat on node-1 says the VIP is not programmed (node-2 still is)."""
    api = m.lab.service("shop", "api")
    m.fault("kube-proxy-rules-missing", node="node-1", service="shop/api")
    assert not check_service_nat(m, "node-1", api["cluster_ip"], 8080, "TCP").programmed
    check_cold_lookup_matches_snapshot(m, "node-1", api["cluster_ip"], 8080, "TCP")
    assert check_service_nat(m, "node-2", api["cluster_ip"], 8080, "TCP").programmed
    m.heal()
    assert check_service_nat(m, "node-1", api["cluster_ip"], 8080, "TCP").programmed


def kube_proxy_stale(m: Mode) -> None:
    """kube-proxy-stale → GetServiceNat on node-1 still DNATs to the replaced pods' IPs; node-2 to the new ones."""
    api = m.lab.service("shop", "api")
    old = {p["ip"] for p in m.lab.pods(app="api")}
    m.fault("kube-proxy-stale", node="node-1", service="shop/api")
    m.lab.refresh()
    new = {p["ip"] for p in m.lab.pods(app="api")}
    assert new.isdisjoint(old)
    assert {e.ip for e in check_service_nat(m, "node-1", api["cluster_ip"], 8080, "TCP").endpoints} == old
    check_cold_lookup_matches_snapshot(m, "node-1", api["cluster_ip"], 8080, "TCP")
    # node-2's kube-proxy is not hung, but it syncs on its own schedule, as the real one does: wait for
    # its rules (read with the tool), then the agent must read the same.
    nat_path = iptables_nat_path if m.proxy == "iptables" else nft_nat_path
    eventually(
        lambda: {ip for ip, _ in nat_path(m.netns("node-2"), api["cluster_ip"], 8080, "TCP").targets},
        lambda programmed: programmed == new,
        what="node-2's kube-proxy programs the new endpoints",
        interval_s=0.5,
    )
    assert {e.ip for e in check_service_nat(m, "node-2", api["cluster_ip"], 8080, "TCP").endpoints} == new
    m.heal()
    assert {e.ip for e in check_service_nat(m, "node-1", api["cluster_ip"], 8080, "TCP").endpoints} == new


def conntrack_full(m: Mode) -> None:
    """conntrack-full → GetConntrackStats shows the table at its limit, like `conntrack -C` and the sysctl."""
    ns = m.netns("node-1")
    m.fault("conntrack-full", node="node-1")
    stats = m.agents("node-1").GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=20).stats
    assert stats.max == sysctl(ns, "net/netfilter/nf_conntrack_max")
    assert stats.count >= stats.max * 0.99, stats
    assert abs(stats.count - conntrack_count(ns)) <= stats.max * 0.01
    m.heal()
    stats = m.agents("node-1").GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=20).stats
    assert stats.count < 1000 and abs(stats.count - conntrack_count(ns)) < 50


def conntrack_stale(m: Mode) -> None:
    """conntrack-stale → QueryConntrack shows the DNS flow's entry to an endpoint that no longer exists."""
    pod = m.app_pod("node-1", "frontend")
    dns_ips = {p["ip"] for p in m.lab.status["pods"] if p["labels"].get("k8s-app") == "kube-dns"}
    m.fault("conntrack-stale", pod=pod, service="kube-system/kube-dns")
    stale = check_conntrack(m, "node-1", protocol="UDP", src=pod["ip"], dst="10.96.0.10", dport=53)
    assert stale.total_matched >= 1 and any(e.reply.src not in dns_ips for e in stale.entries), stale
    m.heal()
    healed = check_conntrack(m, "node-1", protocol="UDP", src=pod["ip"], dst="10.96.0.10", dport=53)
    assert all(e.reply.src in dns_ips for e in healed.entries)


def mtu_mismatch(m: Mode) -> None:
    """mtu-mismatch → LocatePod shows the pod's eth0 MTU above its host-side veth's."""
    pod = m.app_pod("node-1", "frontend")
    m.fault("mtu-mismatch", pod=pod)
    located = check_locate_pod(m, pod)
    assert located.interface.mtu > located.host_peer.link.mtu
    m.heal()
    located = check_locate_pod(m, pod)
    assert located.interface.mtu == located.host_peer.link.mtu


def not_listening(m: Mode) -> None:
    """not-listening → ListSockets in the redis pod no longer shows port 6379, like `ss -ltn`."""
    pod = m.app_pod("node-2", "redis")
    assert ("TCP", "0.0.0.0", 6379) in check_sockets(m, pod)
    m.fault("not-listening", pod=pod)
    assert not any(port == 6379 for _, _, port in check_sockets(m, pod))
    m.heal()
    assert ("TCP", "0.0.0.0", 6379) in check_sockets(m, pod)


def rp_filter_strict(m: Mode) -> None:
    """rp-filter-strict → GetFilterState reports rp_filter 1 on node-1's overlay device, like /proc/sys."""
    device = OVERLAY[m.cni]
    flow = (m.app_pod("node-2", "frontend")["ip"], m.app_pod("node-1", "api")["ip"], 8080)
    m.fault("rp-filter-strict", node="node-1", pod=m.app_pod("node-2", "frontend"))
    assert check_filter(m, "node-1", flow, [device, "eth0"]).rp_filter[device] == 1
    m.heal()
    assert check_filter(m, "node-1", flow, [device, "eth0"]).rp_filter[device] == 0


MODES: list[tuple[str, str, list[Fault]]] = [
    ("flannel-vxlan", "iptables", [node_route_missing, overlay_fdb_missing, veth_off_bridge, kube_proxy_rules_missing]),
    ("flannel-vxlan", "nftables", [overlay_down, mtu_mismatch, ip_forward_off, rp_filter_strict, kube_proxy_stale]),
    (
        "host-gw",
        "iptables",
        [forward_drop, legacy_forward_drop, veth_down, conntrack_full, mtu_mismatch, conntrack_stale, kube_proxy_stale],
    ),
    ("host-gw", "nftables", [kube_proxy_rules_missing, veth_off_bridge, ip_forward_off, not_listening, node_route_missing]),
    ("calico", "iptables", [overlay_fdb_missing, rp_filter_strict, veth_down, forward_drop, kube_proxy_rules_missing]),
    (
        "calico",
        "nftables",
        [overlay_down, nft_forward_drop, node_route_missing, not_listening, mtu_mismatch, conntrack_stale, kube_proxy_stale],
    ),
]


@pytest.mark.parametrize(
    ("tag", "cni", "proxy", "faults"),
    [pytest.param(f"m{i}", cni, proxy, faults, id=f"{cni}-{proxy}") for i, (cni, proxy, faults) in enumerate(MODES)],
)
def test_every_rpc_matches_the_tools_and_each_fault_shows_in_its_rpc(tag: str, cni: str, proxy: str, faults: list[Fault]) -> None:
    with running_lab(unique_prefix(tag), "--nodes", "2", "--cni", cni, "--proxy", proxy) as lab, agents_of(lab) as agents:
        mode = Mode(lab, agents, cni, proxy)
        check_every_rpc(mode)
        for fault in faults:
            fault(mode)  # each injects, checks, heals and checks again; `lab down` cleans up after a failure
