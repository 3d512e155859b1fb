"""The world outside the cluster: a router on the node network and a host behind it.

Layout (all inside lab namespaces; nothing routes out of the lab):
- `<prefix>-router`: `eth0` on the fabric at 10.240.0.254 (the nodes' next hop to the outside
  ranges), `ext0` on the outside segment 203.0.113.0/24 at 203.0.113.1, `ip_forward=1`. It plays the
  cloud's edge too: each load-balancer ingress IP (198.51.100.0/24) is routed to a node's address.
- `<prefix>-outside`: one host at 203.0.113.10 (web: TCP 80 and 443, UDP 5353 echo) and
  203.0.113.53 (the upstream resolver: DNS on port 53 for the `example.com` zone). It knows the way
  back to the node network (10.240.0.0/24) and to the load-balancer range, and nothing else: a pod
  whose egress is not masqueraded gets no answer, as from a real internet host.
- Nodes route 203.0.113.0/24 and 198.51.100.0/24 via the router (their "route out"), and masquerade
  pod traffic leaving the cluster CIDR as the CNI does (flannel's FLANNEL-POSTRTG chain, calico's
  cali-nat-outgoing chain), in the node's iptables nat table.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from lab import kernel
from lab.dnszone import write_zone
from lab.plan import CLUSTER_CIDR, FABRIC_CIDR, LB_CIDR, LabPlan, NodePlan

ROUTER_FABRIC_IP = str(FABRIC_CIDR.network_address + 254)
OUTSIDE_CIDR = ipaddress.IPv4Network("203.0.113.0/24")
ROUTER_OUTSIDE_IP = str(OUTSIDE_CIDR.network_address + 1)
OUTSIDE_HOST_IP = str(OUTSIDE_CIDR.network_address + 10)
UPSTREAM_DNS_IP = str(OUTSIDE_CIDR.network_address + 53)
OUTSIDE_ROUTES = (str(OUTSIDE_CIDR), str(LB_CIDR))
"""What a node reaches through the router: its route out (the lab has no default route)."""
OUTSIDE_DOMAIN = "example.com."
OUTSIDE_PORTS = ("80/TCP", "443/TCP", "5353/UDP", f"{UPSTREAM_DNS_IP}:53/UDP", f"{UPSTREAM_DNS_IP}:53/TCP")
"""The outside host's servers; DNS is bound to the resolver's address so that replies come from it."""
FABRIC_PORT = "router"
MASQ_COMMENT = {"calico": "cali:nat-outgoing", "flannel": "flanneld masq"}


def router_netns(prefix: str) -> str:
    """The router namespace's name."""
    return f"{prefix}-router"


def outside_netns(prefix: str) -> str:
    """The outside host's namespace name."""
    return f"{prefix}-outside"


def outside_zone() -> dict[str, object]:
    """The public-looking zone the upstream resolver serves (same shape as the cluster zone).

    `authoritative` makes every other name NXDOMAIN, as a public resolver answers for names that do
    not exist; the cluster's DNS instead forwards what is not its own to this resolver."""
    a = {
        OUTSIDE_DOMAIN: [OUTSIDE_HOST_IP],
        f"www.{OUTSIDE_DOMAIN}": [OUTSIDE_HOST_IP],
        f"api.{OUTSIDE_DOMAIN}": [OUTSIDE_HOST_IP],
        f"ns.{OUTSIDE_DOMAIN}": [UPSTREAM_DNS_IP],
    }
    ptr = {ipaddress.ip_address(OUTSIDE_HOST_IP).reverse_pointer + ".": f"www.{OUTSIDE_DOMAIN}"}
    return {"domain": OUTSIDE_DOMAIN, "a": a, "srv": {}, "ptr": ptr, "authoritative": True}


def write_outside_zone(state_dir: Path) -> Path:
    """Write the outside resolver's zone file into the lab's state directory."""
    path = state_dir / "outside-zone.json"
    write_zone(path, outside_zone())
    return path


def node_route_commands(verb: str = "add") -> list[str]:
    """`ip` commands giving a node its route out through the router."""
    return [f"route {verb} {cidr} via {ROUTER_FABRIC_IP} dev eth0" for cidr in OUTSIDE_ROUTES]


def masquerade_rules(plan: LabPlan, node: NodePlan, *, jump: bool = True) -> str:
    """The CNI's egress masquerade for `node`, as `iptables-restore --noflush` input (nat table): pod
    traffic leaving the cluster CIDR takes the node's address. `jump=False` leaves out the jumps from
    POSTROUTING (to refill the CNI's chains after a fault flushed them)."""
    cluster = str(CLUSTER_CIDR)
    if plan.options.cni == "calico":
        comment = MASQ_COMMENT["calico"]
        chains = ":cali-POSTROUTING - [0:0]\n:cali-nat-outgoing - [0:0]\n"
        rules = [
            '-A POSTROUTING -m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING',
            "-A cali-POSTROUTING -j cali-nat-outgoing",
            f'-A cali-nat-outgoing -s {cluster} ! -d {cluster} -m comment --comment "{comment}" -j MASQUERADE --random-fully',
        ]
    else:
        comment = MASQ_COMMENT["flannel"]
        chains = ":FLANNEL-POSTRTG - [0:0]\n"
        rules = [
            f'-A POSTROUTING -m comment --comment "{comment}" -j FLANNEL-POSTRTG',
            f'-A FLANNEL-POSTRTG -s {node.pod_cidr} -d {cluster} -m comment --comment "{comment}" -j RETURN',
            f'-A FLANNEL-POSTRTG -s {cluster} -d {node.pod_cidr} -m comment --comment "{comment}" -j RETURN',
            f'-A FLANNEL-POSTRTG ! -s {cluster} -d {node.pod_cidr} -m comment --comment "{comment}" -j RETURN',
            f'-A FLANNEL-POSTRTG -s {cluster} ! -d 224.0.0.0/4 -m comment --comment "{comment}" -j MASQUERADE --random-fully',
        ]
    if not jump:
        rules = [r for r in rules if not r.startswith(("-A POSTROUTING ", "-A cali-POSTROUTING "))]
        chains = ":cali-nat-outgoing - [0:0]\n" if plan.options.cni == "calico" else chains
    return "*nat\n" + chains + "\n".join(rules) + "\nCOMMIT\n"


def build_outside(plan: LabPlan) -> None:
    """Create the router and the outside host, give every node its route out and its masquerade."""
    prefix = plan.options.prefix
    router, outside = router_netns(prefix), outside_netns(prefix)
    kernel.ip_batch(None, [f"netns add {router}", f"netns add {outside}"])
    kernel.ip_batch(
        plan.fabric_netns,
        [
            f"link add {FABRIC_PORT} type veth peer name eth0 netns {router}",
            f"link set {FABRIC_PORT} master fabric0",
            f"link set {FABRIC_PORT} up",
        ],
    )
    kernel.ip_batch(
        router,
        [
            "link set lo up",
            f"addr add {ROUTER_FABRIC_IP}/{FABRIC_CIDR.prefixlen} dev eth0",
            "link set eth0 up",
            f"link add ext0 type veth peer name eth0 netns {outside}",
            f"addr add {ROUTER_OUTSIDE_IP}/{OUTSIDE_CIDR.prefixlen} dev ext0",
            "link set ext0 up",
        ],
    )
    kernel.write_sysctls(router, {"net.ipv4.ip_forward": 1, "net.ipv4.conf.all.rp_filter": 0})
    kernel.ip_batch(
        outside,
        [
            "link set lo up",
            f"addr add {OUTSIDE_HOST_IP}/{OUTSIDE_CIDR.prefixlen} dev eth0",
            f"addr add {UPSTREAM_DNS_IP}/{OUTSIDE_CIDR.prefixlen} dev eth0",
            "link set eth0 up",
            f"route add {FABRIC_CIDR} via {ROUTER_OUTSIDE_IP} dev eth0",
            f"route add {LB_CIDR} via {ROUTER_OUTSIDE_IP} dev eth0",
        ],
    )
    # The cloud's edge: load-balancer ingress IPs and the services' external IPs reach the first node
    # (a real cloud LB spreads over nodes; one fixed node keeps the lab's paths deterministic).
    edge = edge_node(plan).ip
    ips = sorted({ip for s in plan.services for ip in (*s.external_ips, *([s.load_balancer_ip] if s.load_balancer_ip else []))})
    if ips:
        kernel.ip_batch(router, [f"route replace {ip}/32 via {edge} dev eth0" for ip in ips])
    for node in plan.nodes:
        kernel.ip_batch(node.netns, node_route_commands())
        kernel.exec_in(node.netns, ["iptables-restore", "--noflush", "-w"], stdin=masquerade_rules(plan, node))


def edge_node(plan: LabPlan) -> NodePlan:
    """The node the cloud's edge sends load-balancer ingress IPs and external IPs to: the first."""
    return plan.nodes[0]


def route_lb_ip(prefix: str, ip: str, node_ip: str | None) -> None:
    """Play the cloud load balancer's data path: send `ip` to `node_ip` (None: withdraw it)."""
    if node_ip is None:
        kernel.run(["ip", "-n", router_netns(prefix), "route", "del", f"{ip}/32"], check=False)
        return
    kernel.ip_batch(router_netns(prefix), [f"route replace {ip}/32 via {node_ip} dev eth0"])


def server_argv(prefix: str, python: str, zone: Path) -> list[str]:
    """The outside host's servers: the podserver in the outside namespace, with the public zone."""
    argv = ["ip", "netns", "exec", outside_netns(prefix), python, "-m", "lab.podserver", "--pod", "outside/www"]
    argv += ["--ready-fd", "{ready_fd}", "--dns-zone", str(zone)]
    for port in OUTSIDE_PORTS:
        argv += ["--listen", port]
    return argv
