"""Build the lab's data plane in the kernel: fabric, nodes, CNI wiring and pod namespaces.

Layout per CNI mode (LAB.md):
- fabric: namespace PREFIX-fabric with bridge fabric0; each node's eth0 is a veth port on it.
- host-gw: bridge cni0 per node, routes to other nodes' pod CIDRs via their fabric IPs.
- flannel-vxlan: cni0 as host-gw, remote pod CIDRs via flannel.1 (VNI 1, UDP 8472, MTU 1450) with the
  static neighbour and FDB entries flanneld programs.
- calico: no bridge; cali* veths with proxy_arp, a /32 route per local pod, a blackhole for the
  node's own block, pods' default route via 169.254.1.1, remote blocks via vxlan.calico (UDP 4789).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from lab import kernel
from lab.outside import UPSTREAM_DNS_IP
from lab.plan import (
    CALICO_DEVICE,
    CALICO_GATEWAY,
    CALICO_PORT,
    CALICO_VNI,
    CLUSTER_DOMAIN,
    FABRIC_CIDR,
    FLANNEL_DEVICE,
    FLANNEL_PORT,
    FLANNEL_VNI,
    OVERLAY_MTU,
    SERVICE_CIDR,
    LabPlan,
    NodePlan,
    PodPlan,
)

ETC_NETNS = Path("/etc/netns")
DNS_SERVICE_IP = "10.96.0.10"
FABRIC_ROUTER = FABRIC_CIDR.network_address + 1
CALICO_HOST_MAC = "ee:ee:ee:ee:ee:ee"


def overlay_device(plan: LabPlan) -> str | None:
    """The CNI's VXLAN device (flannel.1, vxlan.calico), or None for host-gw."""
    return {"flannel-vxlan": FLANNEL_DEVICE, "calico": CALICO_DEVICE}.get(plan.options.cni)


def remote_pod_routes(plan: LabPlan, node: NodePlan, verb: str) -> tuple[list[str], list[str]]:
    """How `node` reaches other nodes' pods: `ip` commands (routes, overlay neighbours) and `bridge`
    commands (overlay FDB entries). `verb` is "add" when building, "replace" when re-converging."""
    others = [n for n in plan.nodes if n.name != node.name]
    device = overlay_device(plan)
    if device is None:
        return [f"route {verb} {o.pod_cidr} via {o.ip} dev eth0" for o in others], []
    cmds: list[str] = []
    fdb: list[str] = []
    for o in others:
        remote_tunnel = o.pod_cidr.replace(".0/24", ".0")
        cmds += [
            f"neigh {verb} {remote_tunnel} lladdr {o.vtep_mac} dev {device} nud permanent",
            f"route {verb} {o.pod_cidr} via {remote_tunnel} dev {device} onlink",
        ]
        fdb.append(f"fdb {verb} {o.vtep_mac} dev {device} dst {o.ip} self permanent")
    return cmds, fdb


def build_fabric(plan: LabPlan) -> None:
    """Create every lab namespace's node side: fabric bridge, node eth0s, CNI devices and routes."""
    kernel.ip_batch(None, [f"netns add {plan.fabric_netns}", *[f"netns add {n.netns}" for n in plan.nodes]])
    fabric = ["link set lo up", "link add fabric0 type bridge", "link set fabric0 up"]
    for node in plan.nodes:
        fabric += [
            f"link add {node.fabric_port} type veth peer name eth0 netns {node.netns}",
            f"link set {node.fabric_port} master fabric0",
            f"link set {node.fabric_port} up",
        ]
    kernel.ip_batch(plan.fabric_netns, fabric)
    kernel.write_sysctls(plan.fabric_netns, {"net.bridge.bridge-nf-call-iptables": 0})
    for node in plan.nodes:
        build_node(plan, node)


def build_node(plan: LabPlan, node: NodePlan) -> None:
    """Wire one node namespace: eth0 on the fabric, forwarding, the CNI's devices and routes."""
    prefixlen = FABRIC_CIDR.prefixlen
    cmds = [
        "link set lo up",
        f"addr add {node.ip}/{prefixlen} dev eth0",
        "link set eth0 up",
        # Real nodes send ClusterIP traffic kube-proxy did not translate to their default gateway; the
        # lab's stand-in is the fabric's router address, which nobody holds: such packets die on the
        # fabric, and a REJECT in FORWARD (services without endpoints) is reached as on a real node.
        f"route add {SERVICE_CIDR} via {FABRIC_ROUTER} dev eth0",
    ]
    cni = plan.options.cni
    if cni in ("host-gw", "flannel-vxlan"):
        mtu = OVERLAY_MTU if cni == "flannel-vxlan" else 1500
        cmds += [
            "link add cni0 type bridge",
            f"link set cni0 mtu {mtu}",
            f"addr add {node.gateway}/24 dev cni0",
            "link set cni0 up",
        ]
    device = overlay_device(plan)
    if device is not None:
        vni, port = (FLANNEL_VNI, FLANNEL_PORT) if cni == "flannel-vxlan" else (CALICO_VNI, CALICO_PORT)
        tunnel_ip = node.pod_cidr.replace(".0/24", ".0")
        cmds += [
            f"link add {device} type vxlan id {vni} local {node.ip} dev eth0 dstport {port} nolearning",
            f"link set {device} address {node.vtep_mac} mtu {OVERLAY_MTU}",
            f"addr add {tunnel_ip}/32 dev {device}",
            f"link set {device} up",
        ]
    routes, fdb = remote_pod_routes(plan, node, "add")
    cmds += routes
    if cni == "calico":
        cmds.append(f"route add blackhole {node.pod_cidr}")
    kernel.ip_batch(node.netns, cmds)
    kernel.bridge_batch(node.netns, fdb)
    kernel.write_sysctls(
        node.netns, {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}
    )
    etc = ETC_NETNS / node.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(node_resolv_conf())


def node_resolv_conf() -> str:
    """A node's own /etc/resolv.conf: its network's resolver (the outside world's, 203.0.113.53), not the
    cluster DNS, as on a real node. What a node, and a host-network pod with dnsPolicy ClusterFirst or
    Default, resolves with; kubelet's --resolv-conf hands the same file to dnsPolicy Default pods. Without
    it a node namespace would read the machine's own resolv.conf, which names a server outside the lab."""
    return f"nameserver {UPSTREAM_DNS_IP}\n"


def resolv_conf(namespace: str, role: str = "app") -> str:
    """The resolv.conf a kubelet writes for a ClusterFirst pod in `namespace`; for a DNS pod
    (`dnsPolicy: Default`, as CoreDNS's Deployment sets) the node's own resolver, kubelet's
    --resolv-conf: the upstream its `forward . /etc/resolv.conf` sends names outside the cluster to."""
    if role == "dns":
        return node_resolv_conf()
    search = f"{namespace}.svc.{CLUSTER_DOMAIN} svc.{CLUSTER_DOMAIN} {CLUSTER_DOMAIN}"
    return f"search {search}\nnameserver {DNS_SERVICE_IP}\noptions ndots:5\n"


def build_pod(plan: LabPlan, pod: PodPlan) -> None:
    """Create a pod's namespace and wire its eth0 to its node as the CNI plugin would."""
    node = plan.node(pod.node)
    kernel.ip_batch(None, [f"netns add {pod.netns}"])
    host = [f"link add {pod.host_veth} mtu {pod.mtu} type veth peer name eth0 mtu {pod.mtu} netns {pod.netns}"]
    if plan.bridge_cni:
        host += [
            f"link set {pod.host_veth} master cni0",
            f"link set {pod.host_veth} type bridge_slave hairpin on",
            f"link set {pod.host_veth} up",
        ]
        inside = [
            "link set lo up",
            f"addr add {pod.ip}/24 dev eth0",
            "link set eth0 up",
            f"route add default via {node.gateway} dev eth0",
        ]
    else:
        host += [
            f"link set {pod.host_veth} address {CALICO_HOST_MAC}",
            f"link set {pod.host_veth} up",
            f"route add {pod.ip}/32 dev {pod.host_veth} scope link",
        ]
        inside = [
            "link set lo up",
            f"addr add {pod.ip}/32 dev eth0",
            "link set eth0 up",
            f"route add {CALICO_GATEWAY} dev eth0 scope link",
            f"route add default via {CALICO_GATEWAY} dev eth0",
            # Calico answers ARP for its gateway from the host side by proxy ARP, which needs a host
            # default route; lab nodes have none (nothing may leave the lab), so pin the neighbour.
            f"neigh replace {CALICO_GATEWAY} lladdr {CALICO_HOST_MAC} dev eth0 nud permanent",
        ]
    kernel.ip_batch(node.netns, host)
    if not plan.bridge_cni:
        kernel.write_sysctls(
            node.netns, {f"net.ipv4.conf.{pod.host_veth}.proxy_arp": 1, f"net.ipv4.neigh.{pod.host_veth}.proxy_delay": 0}
        )
    kernel.ip_batch(pod.netns, inside)
    etc = ETC_NETNS / pod.netns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(resolv_conf(pod.namespace, pod.role))


def remove_pod(plan: LabPlan, pod: PodPlan) -> None:
    """Delete a pod's namespace (its veth pair goes with it) and its /etc/netns entry."""
    if kernel.netns_exists(pod.netns):
        kernel.ip_batch(None, [f"netns del {pod.netns}"])
    if plan.options.cni == "calico":
        kernel.run(["ip", "-n", plan.node(pod.node).netns, "route", "del", f"{pod.ip}/32"], check=False)
    shutil.rmtree(ETC_NETNS / pod.netns, ignore_errors=True)


def teardown_network(prefix: str) -> list[str]:
    """Remove every namespace and /etc/netns entry carrying the prefix. Safe to run twice."""
    names = kernel.list_netns(prefix)
    if names:
        kernel.run(["ip", "-batch", "-", "-force"], stdin="".join(f"netns del {n}\n" for n in names), check=False)
    for name in kernel.list_netns(prefix):  # anything the batch could not remove
        kernel.run(["ip", "netns", "del", name], check=False)
    if ETC_NETNS.is_dir():
        for entry in ETC_NETNS.iterdir():
            if entry.name.startswith(f"{prefix}-"):
                shutil.rmtree(entry, ignore_errors=True)
    return names
