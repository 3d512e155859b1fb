"""kube-proxy's NAT for one service, read from the node's real rules (iptables, nftables or IPVS).

`KubeProxyTables().service_nat(netns, name, vip, port, protocol)` answers: is VIP:port/proto in
kube-proxy's service dispatch, which chain handles it, which endpoints it DNATs to and with what
probability, and whether kube-proxy rejects or drops it for lack of endpoints. The raw rules that
decided are returned as evidence.

- `model`: the result types (`ServiceNat`, `NatEndpoint`, `NatStateError`);
- `iptables`: the walk over `iptables-save` output, KUBE-SERVICES → KUBE-SVC/SVL/EXT → KUBE-SEP;
- `nftables`: `nft -j list table ip kube-proxy` parsed and walked, service-ips → service-* → the
  endpoints in whichever layout kube-proxy wrote them; a layout it does not read is answered as such
  (`layout` "unknown", `unreadable`), never as "not programmed";
- `nft_netlink`: the same table's parts read straight over nf_tables netlink (cold lookups);
- `ingress`: traffic from outside the cluster (a NodePort, an external IP, a load balancer IP) walked
  as an outside client meets it, in both modes (`KubeProxyTables.entry_nat`);
- `ipvs`: the virtual server and its real servers, through pyroute2's IPVS client;
- `cache`: `SnapshotCache`, parsed snapshots reused while the nf_tables generation id is unchanged;
- `tables`: `KubeProxyTables`, which detects the mode, reads and caches; the agent's checks own one.
"""

from nodeagent.checks.nat.cache import RulesetVersion, SnapshotCache, ruleset_generation, ruleset_version
from nodeagent.checks.nat.iptables import iptables_list_service_nat, iptables_service_nat
from nodeagent.checks.nat.model import MAX_EVIDENCE_RULES, PROTOCOLS, NatEndpoint, NatStateError, ServiceNat
from nodeagent.checks.nat.tables import KubeProxyTables

__all__ = [
    "MAX_EVIDENCE_RULES",
    "PROTOCOLS",
    "KubeProxyTables",
    "NatEndpoint",
    "NatStateError",
    "RulesetVersion",
    "ServiceNat",
    "SnapshotCache",
    "iptables_list_service_nat",
    "iptables_service_nat",
    "ruleset_generation",
    "ruleset_version",
]
