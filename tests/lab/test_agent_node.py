"""The agent against a real small node built from namespaces, compared with what iproute2 and ss print.

Topology (every object inside namespaces prefixed `ka`):
  ka-node: bridge cni0 10.91.1.1/24 with host veths kav1 (pod1) and kav2 (pod2); ip_forward=1;
           flannel.1 (VXLAN id 1, UDP 8472, MTU 1450, local 10.92.0.1 over kaul0) with a route to
           10.91.2.0/24 via 10.91.2.0 onlink, a permanent neighbour and an FDB entry to 10.92.0.2.
  ka-pod1: eth0 10.91.1.11/24, default via 10.91.1.1, a blackhole 10.93.0.0/16; a server on TCP 8080
           and UDP 5353 (echo); /etc/netns/ka-pod1/resolv.conf -> 10.91.1.12 with a search path.
  ka-pod2: eth0 10.91.1.12/24, default via 10.91.1.1; a DNS responder on UDP 53; nft drops TCP 9999.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from kubereach.agent.v1 import agent_pb2 as pb
from kubereach.agent.v1 import agent_pb2_grpc as pb_grpc
from tests.polling import eventually
from tests.unit.agent_support import Pki, client_channel, make_pki, running_agent, tls_settings

pytestmark = pytest.mark.lab

NODE, POD1, POD2, POD3 = "ka-node", "ka-pod1", "ka-pod2", "ka-pod3"
POD1_IP, POD2_IP, NODE_IP, POD3_IP = "10.91.1.11", "10.91.1.12", "10.91.1.1", "10.91.3.5"
REMOTE_GW, REMOTE_MAC, REMOTE_VTEP = "10.91.2.0", "02:aa:bb:cc:dd:02", "10.92.0.2"
ROOT = Path(__file__).resolve().parents[2]
ETC_NETNS = Path("/etc/netns")
RESOLV_DIR = ETC_NETNS / POD1


def run(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=30).stdout


def ip(ns: str, *args: str) -> str:
    return run("ip", "-n", ns, *args)


def ipj(ns: str, *args: str) -> Any:
    return json.loads(run("ip", "-n", ns, "-j", *args) or "[]")


def in_ns(ns: str, *argv: str) -> str:
    return run("ip", "netns", "exec", ns, *argv)


def teardown_names() -> None:
    for ns in (POD1, POD2, POD3, NODE):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False, timeout=30)
    shutil.rmtree(RESOLV_DIR, ignore_errors=True)


def start_server(ns: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.lab.agent_pod_servers", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    if not ready or proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise RuntimeError(f"server {args} did not start: {proc.stderr.read() if proc.stderr else ''}")
    return proc


@dataclass
class Lab:
    stub: pb_grpc.NodeAgentServiceStub
    pki: Pki
    echo: subprocess.Popen[str]
    dns: subprocess.Popen[str]


def build_node() -> None:
    for ns in (NODE, POD1, POD2, POD3):
        run("ip", "netns", "add", ns)
        ip(ns, "link", "set", "lo", "up")
    in_ns(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    ip(NODE, "link", "add", "cni0", "type", "bridge")
    ip(NODE, "addr", "add", f"{NODE_IP}/24", "dev", "cni0")
    ip(NODE, "link", "set", "cni0", "up")
    for host, pod, pod_ip in (("kav1", POD1, POD1_IP), ("kav2", POD2, POD2_IP)):
        ip(NODE, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", pod)
        ip(NODE, "link", "set", host, "master", "cni0", "up")
        ip(pod, "addr", "add", f"{pod_ip}/24", "dev", "eth0")
        ip(pod, "link", "set", "eth0", "up")
        ip(pod, "route", "add", "default", "via", NODE_IP)
    ip(POD1, "route", "add", "blackhole", "10.93.0.0/16")
    # a Calico-style pod: no bridge, proxy_arp on the host veth, a /32 route, default via 169.254.1.1
    ip(NODE, "link", "add", "calika3", "type", "veth", "peer", "name", "eth0", "netns", POD3)
    ip(NODE, "link", "set", "calika3", "up")
    in_ns(NODE, "sysctl", "-qw", "net.ipv4.conf.calika3.proxy_arp=1")
    ip(NODE, "route", "add", f"{POD3_IP}/32", "dev", "calika3", "scope", "link")
    ip(POD3, "addr", "add", f"{POD3_IP}/32", "dev", "eth0")
    ip(POD3, "link", "set", "eth0", "up")
    ip(POD3, "route", "add", "169.254.1.1", "dev", "eth0", "scope", "link")
    ip(POD3, "route", "add", "default", "via", "169.254.1.1", "dev", "eth0")
    ip(NODE, "link", "add", "kaul0", "type", "veth", "peer", "name", "kaul1")
    ip(NODE, "addr", "add", "10.92.0.1/24", "dev", "kaul0")
    ip(NODE, "link", "set", "kaul0", "up")
    ip(NODE, "link", "set", "kaul1", "up")
    ip(
        NODE,
        "link",
        "add",
        "flannel.1",
        "type",
        "vxlan",
        "id",
        "1",
        "dstport",
        "8472",
        "local",
        "10.92.0.1",
        "dev",
        "kaul0",
        "nolearning",
    )
    ip(NODE, "link", "set", "flannel.1", "mtu", "1450", "up")
    ip(NODE, "addr", "add", "10.91.1.0/32", "dev", "flannel.1")
    ip(NODE, "route", "add", "10.91.2.0/24", "via", REMOTE_GW, "dev", "flannel.1", "onlink")
    ip(NODE, "neigh", "add", REMOTE_GW, "lladdr", REMOTE_MAC, "dev", "flannel.1", "nud", "permanent")
    run("bridge", "-n", NODE, "fdb", "append", REMOTE_MAC, "dev", "flannel.1", "dst", REMOTE_VTEP)
    in_ns(POD2, "nft", "add", "table", "inet", "ka_filter")
    in_ns(POD2, "nft", "add", "chain", "inet", "ka_filter", "input", "{ type filter hook input priority 0 ; }")
    in_ns(POD2, "nft", "add", "rule", "inet", "ka_filter", "input", "tcp", "dport", "9999", "drop")
    RESOLV_DIR.mkdir(parents=True)
    (RESOLV_DIR / "resolv.conf").write_text(
        f"nameserver {POD2_IP}\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    teardown_names()
    made_etc_netns = not ETC_NETNS.exists()
    servers: list[subprocess.Popen[str]] = []
    try:
        build_node()
        servers.append(start_server(POD1, "echo", "8080", "5353"))
        servers.append(
            start_server(POD2, "dns", "53", f"web.shop.svc.cluster.local.={POD1_IP}", f"~flaky.shop.svc.cluster.local.={POD1_IP}")
        )
        pki = make_pki(tmp_path_factory.mktemp("ka-pki"))
        with (
            running_agent(tls_settings(pki, node="ka-node-1", host_netns=NODE)) as agent,
            client_channel(pki, agent.port) as channel,
        ):
            yield Lab(pb_grpc.NodeAgentServiceStub(channel), pki, servers[0], servers[1])
    finally:
        for proc in servers:
            proc.kill()
            proc.wait(10)
        teardown_names()
        if made_etc_netns and ETC_NETNS.is_dir() and not any(ETC_NETNS.iterdir()):
            ETC_NETNS.rmdir()


def _link(ns: str, name: str) -> Any:
    return ipj(ns, "-d", "link", "show", name)[0]


def test_node_info_reports_bridge_ports_overlay_and_ip_forward(lab: Lab) -> None:
    info = lab.stub.GetNodeInfo(pb.GetNodeInfoRequest(), timeout=10)
    assert info.node_name == "ka-node-1"
    assert info.netns_name == NODE
    assert info.netns_inode == os.stat(f"/var/run/netns/{NODE}").st_ino
    assert info.kernel_release == os.uname().release
    assert info.ip_forward is True
    bridges = {b.link.name: b for b in info.cni.bridges}
    assert set(bridges) == {"cni0"}
    assert {p.name for p in bridges["cni0"].ports} == {"kav1", "kav2"}
    assert all(p.master == "cni0" for p in bridges["cni0"].ports)
    (overlay,) = info.cni.overlays
    kernel = _link(NODE, "flannel.1")
    vxlan = kernel["linkinfo"]["info_data"]
    assert overlay.link.name == "flannel.1"
    assert (overlay.vni, overlay.udp_port, overlay.local_ip) == (vxlan["id"], vxlan["port"], vxlan["local"])
    assert overlay.link.mtu == kernel["mtu"] == 1450
    assert overlay.link.oper_state == kernel["operstate"]
    assert overlay.underlay_device == "kaul0"
    assert [link.name for link in info.cni.calico_interfaces] == ["calika3"]
    max_in_node = int(in_ns(NODE, "cat", "/proc/sys/net/netfilter/nf_conntrack_max"))
    assert info.conntrack.max == max_in_node
    assert info.proxy_mode == "none"
    # no kube-proxy table, IPVS, Cilium link or BPF program here: the service dataplane is "none"
    assert info.dataplane == "none"
    assert info.dataplane_evidence[0].startswith("no kube-proxy rules")


def test_locate_pod_finds_its_namespace_eth0_and_bridge_peer(lab: Lab) -> None:
    pod = lab.stub.LocatePod(pb.LocatePodRequest(pod_ip=POD1_IP), timeout=10).pod
    eth0 = _link(POD1, "eth0")
    peer = _link(NODE, "kav1")
    assert pod.netns_name == POD1
    assert pod.netns_inode == os.stat(f"/var/run/netns/{POD1}").st_ino
    assert os.stat(f"/proc/{pod.pid}/ns/net").st_ino == pod.netns_inode
    assert (pod.interface.name, pod.interface.index) == ("eth0", eth0["ifindex"])
    assert (pod.interface.mac, pod.interface.mtu, pod.interface.oper_state) == (eth0["address"], eth0["mtu"], eth0["operstate"])
    assert f"{POD1_IP}/24" in pod.interface.addresses
    assert pod.interface.link_index == peer["ifindex"]
    assert (pod.host_peer.link.name, pod.host_peer.link.index) == ("kav1", peer["ifindex"])
    assert pod.host_peer.link.master == peer["master"] == "cni0"
    assert pod.host_peer.link.oper_state == peer["operstate"]
    assert pod.host_peer.link.admin_up is True
    assert not pod.host_peer.HasField("route_to_pod")
    assert pod.host_peer.proxy_arp is False
    routes = {(r.destination, r.gateway, r.device) for r in pod.routes}

    def prefix(dst: str) -> str:
        return "0.0.0.0/0" if dst == "default" else dst if "/" in dst else f"{dst}/32"

    shown = ipj(POD1, "route", "show") + ipj(POD1, "-6", "route", "show")
    kernel_routes = {(prefix(r["dst"]), r.get("gateway", ""), r.get("dev", "")) for r in shown}
    assert ("0.0.0.0/0", NODE_IP, "eth0") in routes
    assert routes == kernel_routes


def test_locate_calico_style_pod_shows_host_route_and_proxy_arp(lab: Lab) -> None:
    pod = lab.stub.LocatePod(pb.LocatePodRequest(pod_ip=POD3_IP), timeout=10).pod
    assert pod.netns_name == POD3
    assert pod.pid == 0
    assert pod.host_peer.link.name == "calika3"
    assert pod.host_peer.link.master == ""
    assert pod.host_peer.proxy_arp is True
    (kernel,) = ipj(NODE, "route", "show", f"{POD3_IP}/32")
    route = pod.host_peer.route_to_pod
    assert (route.destination, route.device, route.scope) == (f"{POD3_IP}/32", kernel["dev"], kernel["scope"])
    assert ("0.0.0.0/0", "169.254.1.1", "eth0") in {(r.destination, r.gateway, r.device) for r in pod.routes}


def test_locate_pod_answers_not_found_for_an_ip_that_is_no_pod_here(lab: Lab) -> None:
    for address in ("10.91.1.99", NODE_IP):
        with pytest.raises(grpc.RpcError) as caught:
            lab.stub.LocatePod(pb.LocatePodRequest(pod_ip=address), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_lookup_route_on_the_node_equals_ip_route_get(lab: Lab) -> None:
    answer = lab.stub.LookupRoute(pb.LookupRouteRequest(destination=POD1_IP), timeout=10)
    (kernel,) = ipj(NODE, "route", "get", POD1_IP)
    (fib,) = ipj(NODE, "route", "get", "fibmatch", POD1_IP)
    assert (answer.route.device, answer.route.source, answer.route.gateway) == (kernel["dev"], kernel["prefsrc"], "")
    assert answer.route.destination == fib["dst"] == "10.91.1.0/24"
    assert answer.route.type == pb.ROUTE_TYPE_UNICAST
    assert not answer.HasField("overlay")


def test_lookup_route_with_input_interface_equals_ip_route_get_iif(lab: Lab) -> None:
    answer = lab.stub.LookupRoute(pb.LookupRouteRequest(destination=POD2_IP, source=POD1_IP, input_interface="cni0"), timeout=10)
    (kernel,) = ipj(NODE, "route", "get", POD2_IP, "from", POD1_IP, "iif", "cni0")
    assert answer.route.device == kernel["dev"] == "cni0"


def test_lookup_route_over_the_overlay_shows_neighbour_and_fdb(lab: Lab) -> None:
    answer = lab.stub.LookupRoute(pb.LookupRouteRequest(destination="10.91.2.5"), timeout=10)
    (kernel,) = ipj(NODE, "route", "get", "10.91.2.5")
    assert (answer.route.device, answer.route.gateway) == (kernel["dev"], kernel["gateway"])
    assert answer.route.destination == "10.91.2.0/24"
    assert answer.route.onlink is True
    overlay = answer.overlay
    assert overlay.device.vni == 1 and overlay.device.udp_port == 8472
    assert overlay.next_hop == REMOTE_GW
    (neigh,) = [n for n in ipj(NODE, "neigh", "show", "dev", "flannel.1") if n["dst"] == REMOTE_GW]
    assert (overlay.neighbour.ip, overlay.neighbour.mac) == (neigh["dst"], neigh["lladdr"])
    assert list(overlay.neighbour.state) == neigh["state"]
    fdb = [e for e in json.loads(run("bridge", "-n", NODE, "-j", "fdb", "show", "dev", "flannel.1")) if e["mac"] == REMOTE_MAC]
    assert (overlay.fdb.mac, overlay.fdb.remote_ip) == (REMOTE_MAC, fdb[0]["dst"])


def test_lookup_route_in_a_pod_surfaces_a_blackhole(lab: Lab) -> None:
    answer = lab.stub.LookupRoute(pb.LookupRouteRequest(destination="10.93.1.1", pod_ip=POD1_IP), timeout=10)
    (fib,) = [r for r in ipj(POD1, "route", "show", "table", "all") if r.get("type") == "blackhole"]
    assert answer.route.type == pb.ROUTE_TYPE_BLACKHOLE
    assert answer.route.destination == fib["dst"] == "10.93.0.0/16"
    assert answer.error == "Invalid argument"
    pod_route = lab.stub.LookupRoute(pb.LookupRouteRequest(destination=POD2_IP, pod_ip=POD1_IP), timeout=10)
    (kernel,) = ipj(POD1, "route", "get", POD2_IP)
    assert (pod_route.route.device, pod_route.route.source) == (kernel["dev"], kernel["prefsrc"])


def test_lookup_route_without_any_route_says_no_route(lab: Lab) -> None:
    answer = lab.stub.LookupRoute(pb.LookupRouteRequest(destination="10.99.1.1"), timeout=10)
    assert answer.route.type == pb.ROUTE_TYPE_NO_ROUTE
    assert answer.error == "Network is unreachable"


def test_list_sockets_sees_the_pod_listeners_as_ss_does(lab: Lab) -> None:
    answer = lab.stub.ListSockets(pb.ListSocketsRequest(pod_ip=POD1_IP), timeout=10)
    got = {(s.protocol, s.local_address, s.local_port) for s in answer.sockets}

    def ss(flags: str, protocol: int) -> set[tuple[int, str, int]]:
        local = [line.split()[3] for line in in_ns(POD1, "ss", "-H", flags).splitlines()]
        return {(protocol, a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in local}

    assert got == ss("-ltn", pb.PROTOCOL_TCP) | ss("-lun", pb.PROTOCOL_UDP)
    assert (pb.PROTOCOL_TCP, "0.0.0.0", 8080) in got
    assert (pb.PROTOCOL_UDP, "0.0.0.0", 5353) in got
    owners = {s.local_port: (s.pid, s.process_name) for s in answer.sockets}
    assert owners[8080][0] > 0 and owners[8080][1].startswith("python")
    only = lab.stub.ListSockets(pb.ListSocketsRequest(pod_ip=POD1_IP, port=8080), timeout=10)
    assert [(s.protocol, s.local_port) for s in only.sockets] == [(pb.PROTOCOL_TCP, 8080)]


def test_probes_from_a_pod_report_connected_refused_timed_out_unreachable(lab: Lab) -> None:
    def tcp(target: str, port: int, timeout_ms: int = 2000) -> pb.ProbeResult:
        return lab.stub.ProbeTcp(
            pb.ProbeTcpRequest(pod_ip=POD2_IP, target_ip=target, port=port, timeout_ms=timeout_ms), timeout=15
        ).result

    assert tcp(POD1_IP, 8080).outcome == pb.PROBE_OUTCOME_CONNECTED
    refused = tcp(POD1_IP, 8081)
    assert refused.outcome == pb.PROBE_OUTCOME_REFUSED
    assert "ECONNREFUSED" in refused.error
    from_pod1 = lab.stub.ProbeTcp(
        pb.ProbeTcpRequest(pod_ip=POD1_IP, target_ip=POD2_IP, port=9999, timeout_ms=500), timeout=15
    ).result
    assert from_pod1.outcome == pb.PROBE_OUTCOME_TIMED_OUT
    blackholed = lab.stub.ProbeTcp(
        pb.ProbeTcpRequest(pod_ip=POD1_IP, target_ip="10.93.1.1", port=80, timeout_ms=500), timeout=15
    ).result
    assert blackholed.outcome == pb.PROBE_OUTCOME_UNREACHABLE
    assert from_pod1.netns_inode == os.stat(f"/var/run/netns/{POD1}").st_ino


def test_udp_probe_gets_a_reply_or_port_unreachable(lab: Lab) -> None:
    echo = lab.stub.ProbeUdp(pb.ProbeUdpRequest(pod_ip=POD2_IP, target_ip=POD1_IP, port=5353, payload=b"hello"), timeout=15)
    assert echo.result.outcome == pb.PROBE_OUTCOME_CONNECTED
    assert echo.reply_bytes == 5
    closed = lab.stub.ProbeUdp(pb.ProbeUdpRequest(pod_ip=POD2_IP, target_ip=POD1_IP, port=5354), timeout=15)
    assert closed.result.outcome == pb.PROBE_OUTCOME_REFUSED


def test_dns_probe_uses_the_pod_resolv_conf_search_and_ndots(lab: Lab) -> None:
    answer = lab.stub.ProbeDns(pb.ProbeDnsRequest(pod_ip=POD1_IP, name="web"), timeout=15)
    assert answer.result.outcome == pb.PROBE_OUTCOME_CONNECTED
    assert answer.resolv_conf == str(RESOLV_DIR / "resolv.conf")
    assert answer.server == POD2_IP
    assert answer.ndots == 5
    assert list(answer.search) == ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert list(answer.queried_names) == ["web.shop.svc.cluster.local."]
    assert (answer.rcode, list(answer.answers), answer.answered_name) == ("NOERROR", [POD1_IP], "web.shop.svc.cluster.local.")


def test_dns_probe_sends_an_unanswered_query_again_and_says_so(lab: Lab) -> None:
    """As glibc (attempts:2): the first query for this name is dropped, its resend is answered."""
    answer = lab.stub.ProbeDns(pb.ProbeDnsRequest(pod_ip=POD1_IP, name="flaky", timeout_ms=1000), timeout=15)
    assert answer.result.outcome == pb.PROBE_OUTCOME_CONNECTED
    assert (answer.rcode, list(answer.answers), answer.retries) == ("NOERROR", [POD1_IP], 1)
    plain = lab.stub.ProbeDns(pb.ProbeDnsRequest(pod_ip=POD1_IP, name="web"), timeout=15)
    assert plain.retries == 0


def test_dns_probe_for_an_unknown_name_tries_every_search_domain(lab: Lab) -> None:
    answer = lab.stub.ProbeDns(pb.ProbeDnsRequest(pod_ip=POD1_IP, name="nothere"), timeout=15)
    assert answer.result.outcome == pb.PROBE_OUTCOME_CONNECTED
    assert answer.rcode == "NXDOMAIN"
    assert list(answer.queried_names) == [
        "nothere.shop.svc.cluster.local.",
        "nothere.svc.cluster.local.",
        "nothere.cluster.local.",
        "nothere.",
    ]
    assert answer.answered_name == ""


def test_dns_probe_to_a_given_server_and_to_a_silent_one(lab: Lab) -> None:
    direct = lab.stub.ProbeDns(pb.ProbeDnsRequest(pod_ip=POD2_IP, name="web.shop.svc.cluster.local", server=POD2_IP), timeout=15)
    assert (direct.rcode, list(direct.answers)) == ("NOERROR", [POD1_IP])
    assert direct.resolv_conf == ""
    silent = lab.stub.ProbeDns(
        pb.ProbeDnsRequest(pod_ip=POD2_IP, name="web.shop.svc.cluster.local", server=POD1_IP, timeout_ms=500), timeout=15
    )
    assert silent.result.outcome == pb.PROBE_OUTCOME_REFUSED
    assert silent.rcode == ""
    blackholed = lab.stub.ProbeDns(pb.ProbeDnsRequest(pod_ip=POD1_IP, name="web", server="10.93.0.53"), timeout=15)
    assert blackholed.result.outcome == pb.PROBE_OUTCOME_UNREACHABLE


def test_faults_are_visible_veth_down_off_bridge_route_deleted(lab: Lab) -> None:
    try:
        ip(NODE, "link", "set", "kav2", "down")
        down = lab.stub.LocatePod(pb.LocatePodRequest(pod_ip=POD2_IP), timeout=10).pod
        assert down.host_peer.link.admin_up is False
        assert down.host_peer.link.oper_state == _link(NODE, "kav2")["operstate"] == "DOWN"
        assert down.interface.oper_state == _link(POD2, "eth0")["operstate"]
    finally:
        ip(NODE, "link", "set", "kav2", "up")
    try:
        ip(NODE, "link", "set", "kav2", "nomaster")
        loose = lab.stub.LocatePod(pb.LocatePodRequest(pod_ip=POD2_IP), timeout=10).pod
        assert loose.host_peer.link.master == ""
        info = lab.stub.GetNodeInfo(pb.GetNodeInfoRequest(), timeout=10)
        assert {p.name for p in info.cni.bridges[0].ports} == {"kav1"}
    finally:
        ip(NODE, "link", "set", "kav2", "master", "cni0")
    try:
        ip(NODE, "route", "del", "10.91.2.0/24")
        gone = lab.stub.LookupRoute(pb.LookupRouteRequest(destination="10.91.2.5"), timeout=10)
        assert gone.route.type == pb.ROUTE_TYPE_NO_ROUTE
        assert not gone.HasField("overlay")
    finally:
        ip(NODE, "route", "add", "10.91.2.0/24", "via", REMOTE_GW, "dev", "flannel.1", "onlink")


def test_conntrack_and_nat_answers_map_through(lab: Lab) -> None:
    stats = lab.stub.GetConntrackStats(pb.GetConntrackStatsRequest(), timeout=10).stats
    assert stats.max > 0
    found = lab.stub.QueryConntrack(pb.QueryConntrackRequest(orig_dst="10.91.250.1", limit=5), timeout=10)
    assert (found.total_matched, list(found.entries), found.truncated) == (0, [], False)
    nat = lab.stub.GetServiceNat(pb.GetServiceNatRequest(vip="10.96.0.10", port=53, protocol=pb.PROTOCOL_UDP), timeout=10).service
    assert (nat.vip, nat.port, nat.protocol, nat.programmed) == ("10.96.0.10", 53, "UDP", False)
    assert list(lab.stub.ListServiceNat(pb.ListServiceNatRequest(), timeout=10).services) == []
    flt = lab.stub.GetFilterState(
        pb.GetFilterStateRequest(src=POD1_IP, dst="10.91.2.5", protocol=pb.PROTOCOL_TCP, dport=80, interfaces=["cni0"]),
        timeout=10,
    )
    assert flt.forward_policy == "ACCEPT"
    assert flt.ip_forward is True
    assert "cni0" in flt.rp_filter


def test_filter_state_over_grpc_names_the_nftables_rule_its_hook_and_handle(lab: Lab) -> None:
    ruleset = (
        "table inet filter {\n"
        " chain input { type filter hook input priority 0; policy accept;\n  tcp dport 30080 counter drop\n }\n"
        " chain forward { type filter hook forward priority 0; policy accept;\n  ip daddr 10.91.2.0/24 counter drop\n }\n"
        "}\n"
    )
    subprocess.run(["ip", "netns", "exec", NODE, "nft", "-f", "-"], input=ruleset, text=True, check=True, capture_output=True)
    try:
        forwarded = lab.stub.GetFilterState(
            pb.GetFilterStateRequest(src=POD1_IP, dst="10.91.2.5", protocol=pb.PROTOCOL_TCP, dport=80), timeout=10
        )
        to_node = lab.stub.GetFilterState(
            pb.GetFilterStateRequest(src=POD1_IP, dst=NODE_IP, protocol=pb.PROTOCOL_TCP, dport=30080), timeout=10
        )
    finally:
        subprocess.run(["ip", "netns", "exec", NODE, "nft", "delete", "table", "inet", "filter"], check=False)
    assert list(forwarded.hooks) == ["prerouting", "forward", "postrouting"] and not forwarded.local_destination
    hit = forwarded.drops[0]
    assert (hit.backend, hit.table, hit.chain, hit.hook, hit.rule) == (
        "nftables",
        "inet filter",
        "forward",
        "forward",
        "ip daddr 10.91.2.0/24 drop",
    )
    assert hit.HasField("handle") and hit.HasField("packets")
    assert to_node.local_destination and list(to_node.hooks) == ["prerouting", "input"]
    assert [(d.chain, d.hook) for d in to_node.drops] == [("input", "input")]


def test_agent_subprocess_serves_mtls_writes_port_file_and_drains_on_sigterm(lab: Lab, tmp_path: Path) -> None:
    port_file = tmp_path / "ka-agent.port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nodeagent",
            "--node",
            "ka-node-1",
            "--listen",
            "127.0.0.1:0",
            "--host-netns",
            NODE,
            "--tls-cert",
            str(lab.pki.server_cert_file),
            "--tls-key",
            str(lab.pki.server_key_file),
            "--tls-client-ca",
            str(lab.pki.ca_file),
            "--port-file",
            str(port_file),
            "--log-format",
            "json",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(lambda: port_file.exists() or proc.poll() is not None, deadline_s=30, what="the agent's port file")
        assert port_file.exists(), proc.stderr.read() if proc.poll() is not None and proc.stderr else "no port file"
        port = int(port_file.read_text())
        with client_channel(lab.pki, port) as channel:
            info = pb_grpc.NodeAgentServiceStub(channel).GetNodeInfo(pb.GetNodeInfoRequest(), timeout=10)
        assert info.node_name == "ka-node-1"
        assert info.netns_name == NODE
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0
        lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
        assert any(line.get("rpc", "").endswith("/GetNodeInfo") and line.get("code") == "OK" for line in lines)
        assert any(line["message"] == "stopped" for line in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_named_namespace_selector_matches_the_pod_ip_selector(lab: Lab) -> None:
    by_ip = lab.stub.ListSockets(pb.ListSocketsRequest(pod_ip=POD1_IP), timeout=10)
    by_name = lab.stub.ListSockets(pb.ListSocketsRequest(netns_name=POD1), timeout=10)
    assert list(by_name.sockets) == list(by_ip.sockets)
    with pytest.raises(grpc.RpcError) as caught:
        lab.stub.ListSockets(pb.ListSocketsRequest(netns_name="ka-missing"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    node = lab.stub.ListSockets(pb.ListSocketsRequest(), timeout=10)
    # the node's only bound socket is the kernel's VXLAN socket: no process owns it
    assert [(s.protocol, s.local_address, s.local_port, s.pid) for s in node.sockets] == [(pb.PROTOCOL_UDP, "0.0.0.0", 8472, 0)]
    assert in_ns(NODE, "ss", "-H", "-lun").split()[3] == "0.0.0.0:8472"
