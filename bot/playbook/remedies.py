"""Remediation a person can paste, per verdict. Pure string building from what was observed."""

from __future__ import annotations

from bot.playbook.models import VerdictCode as C

PROXY_LOGS = "kubectl -n kube-system logs -l k8s-app=kube-proxy --field-selector spec.nodeName={node} --tail=100"
PROXY_RESTART = "kubectl -n kube-system delete pod -l k8s-app=kube-proxy --field-selector spec.nodeName={node}"


def node_shell(node: str) -> str:
    """How to get a root shell on a node."""
    return f"kubectl debug node/{node} -it --image=busybox -- chroot /host   # then run the commands below"


def firewall_commands(facts: dict[str, str]) -> tuple[str, ...]:
    """The commands that show and remove one dropping rule or policy, in its own backend's tool.

    `facts`: backend ("nftables", "iptables-nft", "iptables-legacy", "iptables"), table ("filter",
    "inet filter"), chain, rule (as the tool prints it; a policy reads `-P CHAIN DROP` / `policy
    drop`) and, for nftables, handle.
    """
    backend, table, chain, rule = facts.get("backend", ""), facts.get("table", ""), facts.get("chain", ""), facts.get("rule", "")
    if backend == "nftables":
        if rule == "policy drop":
            return (
                f"nft list chain {table} {chain}   # policy drop",
                f"nft chain {table} {chain} '{{ policy accept; }}'   # or add an accept rule for the pod traffic",
            )
        handle = facts.get("handle", "")
        shown = f"nft -a list chain {table} {chain}   # the rule: {rule}"
        return (shown, f"nft delete rule {table} {chain} handle {handle}") if handle else (shown,)
    tool = "iptables-legacy" if backend == "iptables-legacy" else "iptables"
    if rule.startswith("-P "):
        return (f"{tool} -t {table} -S {chain}", f"{tool} -t {table} -P {chain} ACCEPT")
    return (f"{tool} -t {table} -S {chain}   # the rule: {rule}", f"{tool} -t {table} -D " + rule.removeprefix("-A "))


def remediation(code: C, **facts: str) -> tuple[str, ...]:
    """Commands for `code`, filled from the facts the check saw (node, pod, device, …)."""
    node = facts.get("node", "NODE")
    ns, pod = facts.get("namespace", "NS"), facts.get("pod", "POD")
    match code:
        case C.IP_FORWARDING_DISABLED:
            return (
                node_shell(node),
                "sysctl -w net.ipv4.ip_forward=1",
                "echo 'net.ipv4.ip_forward = 1' > /etc/sysctl.d/99-kubernetes.conf   # keep it after reboot",
            )
        case C.FORWARD_CHAIN_DROPS if facts.get("backend"):
            return (node_shell(node), *firewall_commands(facts))
        case C.FORWARD_CHAIN_DROPS:
            rule = facts.get("rule", "")
            if rule.startswith("-P FORWARD DROP") or not rule:
                return (
                    node_shell(node),
                    "iptables -P FORWARD ACCEPT",
                    "# find what set the policy (docker, a firewall service) and stop it doing so",
                )
            return (
                node_shell(node),
                f"iptables -S FORWARD   # the dropping rule: {rule}",
                "iptables -D " + rule.split(": ", 1)[-1].removeprefix("-A "),
            )
        case C.RP_FILTER_DROPS:
            dev = facts.get("device", "DEV").replace(".", "/")
            return (
                node_shell(node),
                "sysctl -w net.ipv4.conf.all.rp_filter=2",
                f"sysctl -w net.ipv4.conf.{dev}.rp_filter=2   # loose mode",
            )
        case C.NODE_ROUTE_MISSING:
            cidr, via, dev = facts.get("cidr", "POD_CIDR"), facts.get("via", "GATEWAY"), facts.get("device", "DEV")
            onlink = " onlink" if facts.get("overlay") else ""
            return (
                node_shell(node),
                f"ip route replace {cidr} via {via} dev {dev}{onlink}",
                "# then restart the CNI agent on the node so it owns the route again (flannel / calico-node)",
            )
        case C.OVERLAY_DEVICE_DOWN:
            dev = facts.get("device", "flannel.1")
            cmds = [node_shell(node), f"ip link set {dev} up"]
            if facts.get("mac") and facts.get("remote"):
                cmds.append(f"bridge fdb replace {facts['mac']} dev {dev} dst {facts['remote']} self permanent")
            cmds.append("# restart the CNI agent on the node (flanneld / calico-node) to reprogram the overlay")
            return tuple(cmds)
        case C.CONNTRACK_TABLE_FULL:
            return (
                node_shell(node),
                "conntrack -S   # insert_failed / drop counters",
                "sysctl -w net.netfilter.nf_conntrack_max=$(( $(cat /proc/sys/net/netfilter/nf_conntrack_max) * 2 ))",
                "conntrack -L -o extended | awk '{print $5}' | sort | uniq -c | sort -rn | head   # top sources",
            )
        case C.CONNTRACK_STALE_ENTRY:
            return (
                node_shell(node),
                f"conntrack -D -p {facts.get('protocol', 'udp').lower()} --orig-dst {facts.get('vip', 'VIP')} --reply-src {facts.get('stale', 'STALE_IP')}",
            )
        case C.KUBE_PROXY_RULES_MISSING | C.KUBE_PROXY_RULES_STALE:
            return (PROXY_LOGS.format(node=node), PROXY_RESTART.format(node=node))
        case C.POD_INTERFACE_DOWN:
            return (
                node_shell(node),
                f"ip link set {facts.get('device', 'VETH')} up",
                f"kubectl -n {ns} delete pod {pod}   # or let the CNI rebuild it",
            )
        case C.VETH_NOT_ON_BRIDGE:
            return (node_shell(node), f"ip link set {facts.get('device', 'VETH')} master {facts.get('bridge', 'cni0')}")
        case C.POD_ROUTE_MISSING:
            return (f"kubectl -n {ns} delete pod {pod}   # the CNI sets up routes when it recreates the pod",)
        case C.MTU_MISMATCH:
            return (
                f"# pod {ns}/{pod}: eth0 MTU {facts.get('pod_mtu', '?')} > {facts.get('path_mtu', '?')} on its path",
                "# set the CNI's MTU (e.g. flannel's net-conf.json / calico's veth_mtu) to the overlay's, then:",
                f"kubectl -n {ns} delete pod {pod}",
            )
        case C.DESTINATION_NOT_LISTENING:
            return (
                f"kubectl -n {ns} logs {pod} --tail=50",
                f"kubectl -n {ns} describe pod {pod}   # is the app listening on {facts.get('port', 'PORT')}?",
            )
        case C.SERVICE_NO_ENDPOINTS:
            svc = facts.get("service", "SVC")
            return (
                f"kubectl -n {ns} get pods -l {facts.get('selector', 'SELECTOR')} --show-labels",
                f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={svc}",
            )
        case C.SERVICE_ENDPOINTS_NOT_READY:
            return (
                f"kubectl -n {ns} get pods -l {facts.get('selector', 'SELECTOR')}",
                f"kubectl -n {ns} describe pod {pod}   # readiness probe events",
            )
        case C.SERVICE_PORT_MISMATCH:
            svc = facts.get("service", "SVC")
            return (
                f"kubectl -n {ns} get svc {svc} -o jsonpath='{{.spec.ports}}'",
                f'kubectl -n {ns} patch svc {svc} --type=json -p \'[{{"op":"replace","path":"/spec/ports/{facts.get("index", "0")}/targetPort","value":{facts.get("suggest", "PORT")}}}]\'',
            )
        case C.DNS_RESOLUTION_FAILED:
            return (
                "kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide",
                "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50",
            )
        case C.NETWORK_POLICY_DENIES_EGRESS | C.NETWORK_POLICY_DENIES_INGRESS:
            policies = facts.get("policies", "")
            return (
                *tuple(
                    f"kubectl -n {p.split('/')[0]} describe networkpolicy {p.split('/')[-1]}" for p in policies.split(",") if p
                ),
                "# add a rule that admits this flow, or confirm the deny is intended",
            )
        case C.SOURCE_POD_NOT_RUNNING:
            return (f"kubectl -n {ns} describe pod {pod}", f"kubectl -n {ns} logs {pod} --previous --tail=50")
        case C.POD_HAS_NO_IP:
            return (
                f"kubectl -n {ns} describe pod {pod}   # CNI / IPAM events",
                f"kubectl -n kube-system logs -l k8s-app=flannel --field-selector spec.nodeName={node} --tail=50",
            )
        case C.UNDERLAY_DROPS:
            src, dst, carried = facts.get("from", "NODE_A"), facts.get("to", "NODE_B"), facts.get("carried", "UDP 8472")
            return (
                f"# allow {carried} from {src} to {dst} (and back) in the firewall / security group / router between the nodes",
                "# e.g. AWS: an inbound rule on the nodes' security group for that protocol and port from the nodes' group",
                f"# check from {src}: tcpdump -ni <underlay NIC> host <{dst} IP> — the packets leave and never arrive",
            )
        case C.NODE_FIREWALL_DROPS if facts.get("backend"):
            return (
                node_shell(node),
                *firewall_commands(facts),
                "# find what installed it (firewalld, ufw, /etc/nftables.conf, a cloud-init rule) so it does not come back",
            )
        case C.NODE_FIREWALL_DROPS:
            carried, dev = facts.get("carried", "UDP 8472"), facts.get("device", "eth0")
            rule = facts.get("rule", "")
            return (
                node_shell(node),
                f"iptables -S INPUT; iptables -t raw -S PREROUTING; nft list ruleset   # the rule that drops {carried} arriving on {dev}"
                + (f" (seen: {rule})" if rule else ""),
                f"# allow {carried} from the other nodes in the host firewall (firewalld, ufw, a cloud-init rule)",
            )
        case C.PACKET_LOSS:
            src, dst = facts.get("from", "NODE_A"), facts.get("to", "NODE_B")
            return (
                f"# loss between {src} and {dst}: check the underlay NICs' error and drop counters",
                node_shell(node),
                "ip -s link; ethtool -S <underlay NIC> | grep -iE 'drop|err|discard'",
                "# then the network between the nodes (switch, router, cloud network limits)",
            )
        case C.NODEPORT_NO_LOCAL_ENDPOINTS:
            svc = facts.get("service", "SVC")
            return (
                f"kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={svc} -o wide   # which nodes run a ready endpoint",
                f"# send clients only to nodes with an endpoint (a load balancer health-checks port {facts.get('health_port', 'HEALTH_CHECK_NODE_PORT')}), or:",
                f'kubectl -n {ns} patch svc {svc} -p \'{{"spec":{{"externalTrafficPolicy":"Cluster"}}}}\'   # any node forwards; the client IP is lost',
            )
        case C.EGRESS_NOT_MASQUERADED:
            return (
                node_shell(node),
                "iptables -t nat -S POSTROUTING; nft list chain ip nat POSTROUTING   # the CNI's masquerade jump and chain",
                "# restart the CNI agent on the node (flanneld / calico-node) so it rewrites its masquerade rules",
            )
        case C.NODE_HAS_NO_ROUTE_OUT:
            return (
                node_shell(node),
                f"ip route get {facts.get('destination', 'DESTINATION')}   # no route",
                f"ip route replace default via {facts.get('gateway', 'GATEWAY')} dev {facts.get('device', 'DEV')}   # and fix the node's network configuration",
            )
        case C.UPSTREAM_DNS_FAILED:
            upstream = facts.get("upstream", "UPSTREAM")
            return (
                "kubectl -n kube-system get configmap coredns -o jsonpath='{.data.Corefile}'   # the forward line",
                node_shell(node),
                f"dig @{upstream} {facts.get('name', 'example.com')}   # from the DNS pod's node",
                "kubectl -n kube-system logs -l k8s-app=kube-dns --tail=50 | grep -i -e timeout -e SERVFAIL",
            )
        case C.HAIRPIN_BROKEN:
            dev = facts.get("device", "VETH")
            return (
                node_shell(node),
                f"ip link set {dev} type bridge_slave hairpin on",
                '# make it last: kubelet --hairpin-mode=hairpin-veth, or the bridge CNI\'s "hairpinMode": true',
            )
        case C.HOST_PORT_CONFLICT:
            port = facts.get("port", "PORT")
            return (
                node_shell(node),
                f"ss -ltnup 'sport = :{port}'   # the process that holds the port",
                f"# stop that process or move the host-network pod {ns}/{pod} to another port or node",
            )
        case C.AGENT_UNREACHABLE:
            return (
                f"kubectl -n kube-system get pods -l app.kubernetes.io/name=kubereach-agent -o wide --field-selector spec.nodeName={node}",
            )
        case _:
            return ()
